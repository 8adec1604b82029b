// The FP32 FMA peak on the engine's SIMD path, for bench/throughput.py (bench/common.py builds
// and runs it): prints GFLOP/s of THREADS threads running independent FMAs for about SECONDS.
//
//   peak THREADS [SECONDS]      THREADS >= 1, 0 < SECONDS <= 60 (default 0.5)
//
// Exit status 2 and a message on stderr for bad arguments.
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "cpu_features.hpp"
#include "fma_peak.hpp"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s THREADS [SECONDS]\n", argv[0]);
    return 2;
  }
  char* end = nullptr;
  const long threads = std::strtol(argv[1], &end, 10);
  if (*end != '\0' || threads < 1 || threads > 4096) {
    std::fprintf(stderr, "threads must be an integer in [1, 4096], got '%s'\n", argv[1]);
    return 2;
  }
  double seconds = 0.5;
  if (argc == 3) {
    seconds = std::strtod(argv[2], &end);
    if (*end != '\0' || !(seconds > 0 && seconds <= 60)) {
      std::fprintf(stderr, "seconds must be in (0, 60], got '%s'\n", argv[2]);
      return 2;
    }
  }
  const double gflops = bench::fma_peak_gflops(int(threads), seconds);
  std::printf("%.6g %s\n", gflops, gensamp::simd_level_name(gensamp::simd_level()));
  return 0;
}
