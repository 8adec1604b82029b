#!/usr/bin/env bash
# The whole test suite from a fresh checkout: set-up, C++ core under ASan+UBSan, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
if [ -x scripts/sanitize.sh ]; then
  bash scripts/sanitize.sh
fi
exec "$PYBIN" -m pytest "$@"
