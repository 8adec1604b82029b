#!/usr/bin/env bash
# Sanitizer job: builds the C++ core and cpp/tests/core_tests.cpp with AddressSanitizer +
# UndefinedBehaviorSanitizer (no Python involved) and runs them under ctest. Fails on a failed
# test and on any sanitizer report, including one printed by a forked child.
#
# Needs only cmake (>= 3.18), a C++17 compiler with OpenMP (g++ or clang++) and, optionally,
# ninja. Called by scripts/test.sh; also usable alone:
#   bash scripts/sanitize.sh                 # build dir: build/sanitize
#   GENSAMP_SANITIZE_DIR=/tmp/asan bash scripts/sanitize.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${GENSAMP_SANITIZE_DIR:-build/sanitize}
JOBS=${GENSAMP_SANITIZE_JOBS:-2}
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"

if ! command -v cmake >/dev/null 2>&1; then
  echo "sanitize.sh: cmake not found on PATH" >&2
  exit 1
fi
GEN_NAME="Unix Makefiles"
if command -v ninja >/dev/null 2>&1; then GEN_NAME=Ninja; fi
CXXFLAGS_SAN="$SAN -O1 -g"  # -O1: -O0 sanitizer builds are needlessly slow; -g: symbolised reports
# Reuse a build dir only if it was configured the same way (generator and flags).
if [ -f "$BUILD/CMakeCache.txt" ] &&
   ! { grep -qx "CMAKE_GENERATOR:INTERNAL=$GEN_NAME" "$BUILD/CMakeCache.txt" &&
       grep -qx "CMAKE_CXX_FLAGS:STRING=$CXXFLAGS_SAN" "$BUILD/CMakeCache.txt"; }; then
  rm -rf "$BUILD"
fi

echo "== sanitizer build ($BUILD): $SAN"
cmake -S . -B "$BUILD" -G "$GEN_NAME" \
  -DGENSAMP_BUILD_PYTHON=OFF -DGENSAMP_BUILD_TESTS=ON -DGENSAMP_WERROR=ON \
  -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS="$CXXFLAGS_SAN" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$BUILD" -j "$JOBS"

LOG="$BUILD/sanitize.log"
# halt_on_error: the first report ends the process with a non-zero status. detect_leaks stays on
# (LeakSanitizer) where the platform supports it.
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:exitcode=23:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=24:${UBSAN_OPTIONS:-}"
echo "== running core tests under ASan+UBSan"
status=0
(cd "$BUILD" && ctest --output-on-failure --timeout 600 -V) >"$LOG" 2>&1 || status=$?
cat "$LOG"
# A report from a forked child (or any process whose status is not checked) still fails the job.
if grep -qE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (AddressSanitizer|UndefinedBehaviorSanitizer)" "$LOG"; then
  echo "sanitize.sh: sanitizer report(s) above" >&2
  if [ "$status" -eq 0 ]; then status=1; fi
fi
if [ "$status" -ne 0 ]; then
  echo "sanitize.sh: FAILED (status $status)" >&2
  exit "$status"
fi
echo "== sanitizer job passed: no reports"
