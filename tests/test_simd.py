"""One SIMD decision: every kernel family runs at the level simd_level() reports. Each level
gives the same bits (test_threads.py), so a family left below the decided level would only be
slower; this is the check that notices."""

import json
import os
import subprocess
import sys

import pytest
from gensamp import _core

FAMILIES = {"layer", "narrow", "noise", "activations"}
PROBE = (
    "import json; from gensamp import _core; "
    "print(json.dumps([_core.simd_level(), _core.simd_levels()]))"
)


def test_every_family_runs_at_the_decided_level():
    levels = _core.simd_levels()
    assert set(levels) == FAMILIES
    assert set(levels.values()) == {_core.simd_level()}


@pytest.mark.parametrize("cap", ["avx2", "scalar"])
def test_the_override_lowers_every_family(cap):
    # Fresh processes: the level is decided once per process. The reference runs without any
    # override, whatever this process's environment says.
    env = {k: v for k, v in os.environ.items() if k != "GENSAMP_SIMD"}

    def probe(extra):
        out = subprocess.run(
            [sys.executable, "-c", PROBE],
            env={**env, **extra},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return json.loads(out)

    native, _ = probe({})
    level, levels = probe({"GENSAMP_SIMD": cap})
    expected = "scalar" if "scalar" in (cap, native) else "avx2"
    assert level == expected
    assert levels == dict.fromkeys(FAMILIES, expected)
