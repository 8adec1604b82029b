#!/usr/bin/env bash
# The main job from a fresh checkout: set-up, then the demo (figures + report in ./gensamp-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec "$PYBIN" -m gensamp demo "$@"
