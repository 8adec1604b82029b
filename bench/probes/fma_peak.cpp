// The machine's FP32 arithmetic peak, measured rather than computed from a clock rate: cloud
// CPUs report a nominal frequency, and the sustained all-core clock under 512-bit FMA load is
// what bounds the layer kernels. An sgemm ceiling is a library's achievement, not the bound.
// A bench tool, not part of the engine: built with the system compiler at bench time
// (bench/common.py), together with the engine's cpu_features.cpp so it takes the SIMD path the
// engine takes (GENSAMP_SIMD included).
#include "fma_peak.hpp"

#include <chrono>
#include <cmath>

#include "cpu_features.hpp"

#ifdef GENSAMP_X86
#include <immintrin.h>
#endif
#ifdef GENSAMP_HAVE_OPENMP
#include <omp.h>
#endif

namespace bench {
namespace {

using gensamp::SimdLevel;

// Enough independent accumulators to cover FMA latency x issue width on current x86 cores
// (Zen 4: 4-cycle latency, two 256-bit pipes; Intel: 4 cycles, two 512-bit ports).
constexpr int kAcc = 16;

#ifdef GENSAMP_X86
GENSAMP_TARGET_AVX512 float spin512(long iters, float seed) {
  __m512 acc[kAcc];
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(seed * 1e-7f);
  for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_set1_ps(seed + float(i));
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  __m512 s = acc[0];
  for (int i = 1; i < kAcc; ++i) s = _mm512_add_ps(s, acc[i]);
  alignas(64) float t[16];
  _mm512_store_ps(t, s);
  float sum = 0;
  for (float v : t) sum += v;
  return sum;
}

GENSAMP_TARGET_AVX2 float spin256(long iters, float seed) {
  __m256 acc[kAcc];
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(seed * 1e-7f);
  for (int i = 0; i < kAcc; ++i) acc[i] = _mm256_set1_ps(seed + float(i));
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < kAcc; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  __m256 s = acc[0];
  for (int i = 1; i < kAcc; ++i) s = _mm256_add_ps(s, acc[i]);
  alignas(32) float t[8];
  _mm256_store_ps(t, s);
  return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#endif

float spin_scalar(long iters, float seed) {
  float acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = seed + float(i);
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < kAcc; ++i) acc[i] = std::fma(acc[i], 0.999999f, seed * 1e-7f);
  float s = 0;
  for (int i = 0; i < kAcc; ++i) s += acc[i];
  return s;
}

}  // namespace

double fma_peak_gflops(int threads, double seconds) {
  const SimdLevel level = gensamp::simd_level();  // the same path the layer kernels take
  float (*spin)(long, float) = spin_scalar;
  int lanes = 1;
#ifdef GENSAMP_X86
  if (level == SimdLevel::avx512) {
    spin = spin512;
    lanes = 16;
  } else if (level == SimdLevel::avx2) {
    spin = spin256;
    lanes = 8;
  }
#else
  (void)level;
#endif
  // Calibrate on one thread, then time every thread running the same count together.
  long iters = 1 << 16;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    volatile float sink = spin(iters, 1.0f);
    (void)sink;
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt > 0.05 || iters > (1L << 40)) {
      iters = long(double(iters) * seconds / (dt > 0 ? dt : 1e-9)) + 1;
      break;
    }
    iters *= 4;
  }
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    float total = 0;
    const auto t0 = std::chrono::steady_clock::now();
#ifdef GENSAMP_HAVE_OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : total)
    total += spin(iters, 1.0f + float(omp_get_thread_num()));
#else
    threads = 1;
    total = spin(iters, 1.0f);
#endif
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    volatile float sink = total;
    (void)sink;
    const double flops = 2.0 * double(kAcc) * double(lanes) * double(iters) * double(threads);
    if (flops / dt > best) best = flops / dt;
  }
  return best * 1e-9;
}

}  // namespace bench
