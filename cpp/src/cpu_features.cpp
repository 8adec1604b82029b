#include "cpu_features.hpp"

#include <cstdlib>
#include <cstring>

namespace gensamp {

namespace {

SimdLevel detect() {
  const char* env = std::getenv("GENSAMP_SIMD");
  const bool force_scalar = env && std::strcmp(env, "scalar") == 0;
  const bool cap_avx2 = env && std::strcmp(env, "avx2") == 0;
  if (force_scalar) return SimdLevel::scalar;
#ifdef GENSAMP_X86
  __builtin_cpu_init();
  // The features named in GENSAMP_TARGET_AVX512 / GENSAMP_TARGET_AVX2, no more, no fewer.
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512bw");
  if (avx512 && !cap_avx2) return SimdLevel::avx512;
  if (avx2) return SimdLevel::avx2;
#else
  (void)cap_avx2;
#endif
  return SimdLevel::scalar;
}

}  // namespace

SimdLevel simd_level() {
  static const SimdLevel level = detect();
  return level;
}

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::avx512: return "avx512";
    case SimdLevel::avx2: return "avx2";
    case SimdLevel::scalar: break;
  }
  return "scalar";
}

}  // namespace gensamp
