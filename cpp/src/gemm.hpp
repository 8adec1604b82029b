// Dense layer kernels on a feature-major tile: Y[o][c] = b[o] + sum_k W[o][k] * X[k][c].
// Every element is one fused multiply-add chain over k = 0, 1, ..., in-1 starting from b[o].
// FMA is correctly rounded, so the scalar path (std::fma), AVX2 and AVX-512 produce identical
// bits, and so do the two loop orders below; that keeps results independent of the CPU's SIMD
// level, the thread count and the tiling.
#pragma once
#include "cpu_features.hpp"

namespace gensamp {

struct LayerRef {
  const float* W;   // [out][in]
  const float* WT;  // [in][out_pad]: W transposed, rows zero-padded to out_pad (multiple of 16)
  const float* b;   // [out_pad64], zero-padded
  int out, in, out_pad;
  // W transposed and packed in panels of 64 outputs, each contiguous [in][64] (zero-padded to a
  // multiple of 64): a single chain then streams the weights sequentially.
  const float* WP;
};

// width % 16 == 0: vectorised across chains (register-blocked rows x chains).
// width < 16: vectorised across outputs (a tile this narrow would waste most SIMD lanes).
// relu: store relu_of(y) instead of y (the activation fused into the store, saving a pass).
void layer_forward(const LayerRef& L, const float* X, float* Y, int width, bool relu = false);

// The levels the two kernel families run at (both chosen by cpu_features' select()).
SimdLevel layer_kernel_level();   // width % 16 == 0
SimdLevel narrow_kernel_level();  // other widths

}  // namespace gensamp
