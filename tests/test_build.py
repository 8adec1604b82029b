"""Facts the compiled module reports about its build."""

from importlib.metadata import version

from gensamp import _core


def test_the_version_is_pyprojects():
    # Written once, in pyproject.toml: the package metadata and the compiled module both take
    # it from there, so they cannot disagree.
    assert _core.__version__ == version("gensamp")
