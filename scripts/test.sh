#!/usr/bin/env bash
# The whole test suite from a fresh checkout: set-up, the C++ core under ASan+UBSan, the
# static checks (scripts/lint.sh), pytest. Every part always runs; the script fails if any does.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
san=0
bash scripts/sanitize.sh || san=$?
lint=0
bash scripts/lint.sh || lint=$?
py=0
echo "== pytest"
"$PYBIN" -m pytest "$@" || py=$?
if [ "$san" -ne 0 ] || [ "$lint" -ne 0 ] || [ "$py" -ne 0 ]; then
  echo "scripts/test.sh: sanitizer job exit $san, lint exit $lint, pytest exit $py" >&2
  exit 1
fi
