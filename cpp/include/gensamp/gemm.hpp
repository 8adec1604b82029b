// Dense layer kernel on a feature-major tile: Y[o][c] = b[o] + sum_k W[o][k] * X[k][c].
// Every element is one fused multiply-add chain over k = 0, 1, ..., in-1 starting from b[o].
// FMA is correctly rounded, so the scalar path (std::fma), AVX2 and AVX-512 produce identical
// bits; that is what keeps results independent of the CPU's SIMD level and of tiling.
#pragma once

namespace gensamp {

using LayerKernel = void (*)(const float* W, const float* b, int out, int in, const float* X,
                             float* Y, int width);

// The best kernel this CPU supports, chosen once at run time. GENSAMP_SIMD=scalar|avx2|avx512
// in the environment forces a lower level (used by the tests to compare the paths).
LayerKernel layer_kernel();
const char* simd_level();  // "avx512", "avx2" or "scalar"

void layer_scalar(const float* W, const float* b, int out, int in, const float* X, float* Y,
                  int width);

}  // namespace gensamp
