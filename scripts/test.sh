#!/usr/bin/env bash
# The whole test suite from a fresh checkout: set-up, the C++ core under ASan+UBSan, pytest.
# Both parts always run; the script fails if either does.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
san=0
bash scripts/sanitize.sh || san=$?
py=0
"$PYBIN" -m pytest "$@" || py=$?
if [ "$san" -ne 0 ] || [ "$py" -ne 0 ]; then
  echo "scripts/test.sh: sanitizer job exit $san, pytest exit $py" >&2
  exit 1
fi
