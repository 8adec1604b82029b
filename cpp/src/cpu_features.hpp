// The one place that decides which SIMD level the kernels run at. Every kernel family (the
// layer kernels, the narrow-tile kernels, the noise generator, the activation pass) asks
// select() for its variant, so they all run at the level decided here, once per process.
// Every level gives the same bits; the level only changes speed.
#pragma once
#include <array>
#include <cstddef>

#if defined(__x86_64__) || defined(_M_X64)
#define GENSAMP_X86 1
#endif

// The instruction sets a kernel compiled for a level may use. The runtime check in
// cpu_features.cpp tests exactly these features, so no variant can execute an instruction the
// CPU lacks.
#ifdef GENSAMP_X86
#define GENSAMP_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define GENSAMP_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma")))
#endif

namespace gensamp {

enum class SimdLevel { scalar = 0, avx2 = 1, avx512 = 2 };
constexpr int kSimdLevels = 3;

// The best level this CPU supports, capped by the environment variable GENSAMP_SIMD
// (scalar | avx2; any other value leaves the CPU's best). Read once, on first use.
SimdLevel simd_level();
const char* simd_level_name(SimdLevel level);  // "scalar", "avx2", "avx512"

// A kernel family's variant for the process's level, and the level it was compiled for (what
// the family reports, so a test can see that no family runs below the decided level).
template <class Fn>
struct Kernel {
  Fn fn;
  SimdLevel level;
};

// by_level[l]: the variant for level l, nullptr where the build has none (non-x86 targets).
// A missing variant falls back to the next level down; the scalar one must exist.
template <class Fn>
Kernel<Fn> select(const std::array<Fn, kSimdLevels>& by_level) {
  int l = int(simd_level());
  while (l > 0 && by_level[std::size_t(l)] == nullptr) --l;
  return {by_level[std::size_t(l)], SimdLevel(l)};
}

}  // namespace gensamp
