#!/usr/bin/env bash
# Static checks, each a gate: ruff (lint + format), mypy, the import-linter architecture
# contracts, clang-format and validate-pyproject. Called by scripts/test.sh (so by CI) with
# the venv's tools; also usable alone once scripts/setup.sh has run:
#   bash scripts/lint.sh
# The same checks run as pre-commit hooks (.pre-commit-config.yaml).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${GENSAMP_VENV:-.venv}/bin
failed=()
step() {
  local name=$1
  shift
  echo "== lint: $name"
  if ! "$@"; then failed+=("$name"); fi
}
CPP_FILES=$(git ls-files 'cpp/*.cpp' 'cpp/*.hpp' 'bench/probes/*.cpp' 2>/dev/null ||
            find cpp bench/probes -name '*.[ch]pp')
step "ruff check" "$BIN/ruff" check python tests bench examples
step "ruff format" "$BIN/ruff" format --check python tests bench examples
step "mypy" "$BIN/mypy"
# the source tree, not the installed copy, is what the contracts judge
step "import contracts" env PYTHONPATH=python "$BIN/lint-imports"
# shellcheck disable=SC2086  # one argument per file
step "clang-format" "$BIN/clang-format" --dry-run -Werror $CPP_FILES
step "validate-pyproject" "$BIN/validate-pyproject" pyproject.toml
if [ ${#failed[@]} -ne 0 ]; then
  echo "lint.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "== lint passed"
