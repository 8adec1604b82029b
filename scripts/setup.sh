#!/usr/bin/env bash
# Creates ./.venv (once) and installs gensamp into it with the pinned CPU torch.
# Sourced by scripts/test.sh and scripts/demo.sh; safe to run again.
# pip runs quiet; one line per stage says what the minutes are spent on.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${GENSAMP_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating the virtual environment $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi
PYBIN="$VENV/bin/python"
# torch first, pinned: an unpinned torch on a machine without one pulls a multi-GB CUDA build.
echo "== installing torch 2.13.0 (CPU wheel; a minute or more the first time, seconds after)..."
"$PYBIN" -m pip install -q --disable-pip-version-check -c constraints.txt "torch==2.13.0"
# CI builds turn compiler warnings into errors. Set either way: the build directory
# (build/<wheel tag>) keeps CMake's cache from one install to the next.
WERROR=OFF
if [ "${CI:-}" = "true" ]; then WERROR=ON; fi
echo "== building gensamp (C++ extension) and installing it with its test tools (about a minute)..."
"$PYBIN" -m pip install -q --disable-pip-version-check -c constraints.txt \
  -C cmake.define.GENSAMP_WERROR="$WERROR" ".[test,distributed]"
echo "== set-up done: $PYBIN"
export PYBIN
