#include "gemm.hpp"

#include <cmath>

#include "activations.hpp"
#include "cpu_features.hpp"

#ifdef GENSAMP_X86
#include <immintrin.h>
#endif

namespace gensamp {

using LayerKernel = void (*)(const float* W, const float* b, int out, int in, const float* X,
                             float* Y, int width, bool relu);
using NarrowKernel = void (*)(const LayerRef& L, const float* X, float* Y, int width, bool relu);

// The vector stores below evaluate relu_of()'s predicate (ordered x > 0, else +0) lane by lane.

static void layer_scalar(const float* W, const float* b, int out, int in, const float* X, float* Y,
                         int width, bool relu) {
  for (int o = 0; o < out; ++o) {
    const float* w = W + long(o) * in;
    float* y = Y + long(o) * width;
    for (int c = 0; c < width; ++c) y[c] = b[o];
    for (int k = 0; k < in; ++k) {
      const float wk = w[k];
      const float* x = X + long(k) * width;
      for (int c = 0; c < width; ++c) y[c] = std::fma(wk, x[c], y[c]);
    }
    if (relu)
      for (int c = 0; c < width; ++c) y[c] = relu_of(y[c]);
  }
}

// Narrow tiles: for each chain, outputs in vectors of 16 from the transposed weights.
static void narrow_scalar(const LayerRef& L, const float* X, float* Y, int width, bool relu) {
  float acc[16];
  for (int c = 0; c < width; ++c)
    for (int o0 = 0; o0 < L.out; o0 += 16) {
      for (int v = 0; v < 16; ++v) acc[v] = L.b[o0 + v];
      for (int k = 0; k < L.in; ++k) {
        const float x = X[long(k) * width + c];
        const float* wt = L.WT + long(k) * L.out_pad + o0;
        for (int v = 0; v < 16; ++v) acc[v] = std::fma(wt[v], x, acc[v]);
      }
      const int m = L.out - o0 < 16 ? L.out - o0 : 16;
      for (int v = 0; v < m; ++v) Y[long(o0 + v) * width + c] = relu ? relu_of(acc[v]) : acc[v];
    }
}

#ifdef GENSAMP_X86
// One chain is a matrix-vector product: with a single accumulator it would wait on each FMA's
// latency, so a panel of 64 outputs runs as 4 independent chains (each output's own FMA order
// is unchanged: same bits), streaming its packed weights sequentially.
GENSAMP_TARGET_AVX512 static void narrow_avx512(const LayerRef& L, const float* X, float* Y,
                                                int width, bool relu) {
  alignas(64) float tmp[64];
  for (int c = 0; c < width; ++c)
    for (int o0 = 0; o0 < L.out; o0 += 64) {
      const float* wp = L.WP + long(o0 / 64) * L.in * 64;
      __m512 a0 = _mm512_loadu_ps(L.b + o0), a1 = _mm512_loadu_ps(L.b + o0 + 16),
             a2 = _mm512_loadu_ps(L.b + o0 + 32), a3 = _mm512_loadu_ps(L.b + o0 + 48);
      for (int k = 0; k < L.in; ++k, wp += 64) {
        const __m512 x = _mm512_set1_ps(X[long(k) * width + c]);
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(wp), x, a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(wp + 16), x, a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(wp + 32), x, a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(wp + 48), x, a3);
      }
      _mm512_store_ps(tmp, a0);
      _mm512_store_ps(tmp + 16, a1);
      _mm512_store_ps(tmp + 32, a2);
      _mm512_store_ps(tmp + 48, a3);
      const int m = L.out - o0 < 64 ? L.out - o0 : 64;
      for (int q = 0; q < m; ++q) Y[long(o0 + q) * width + c] = relu ? relu_of(tmp[q]) : tmp[q];
    }
}

GENSAMP_TARGET_AVX2 static void narrow_avx2(const LayerRef& L, const float* X, float* Y, int width,
                                            bool relu) {
  alignas(32) float tmp[16];
  for (int c = 0; c < width; ++c)
    for (int o0 = 0; o0 < L.out; o0 += 16) {
      __m256 a0 = _mm256_loadu_ps(L.b + o0), a1 = _mm256_loadu_ps(L.b + o0 + 8);
      for (int k = 0; k < L.in; ++k) {
        const __m256 x = _mm256_set1_ps(X[long(k) * width + c]);
        const float* wt = L.WT + long(k) * L.out_pad + o0;
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wt), x, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(wt + 8), x, a1);
      }
      _mm256_store_ps(tmp, a0);
      _mm256_store_ps(tmp + 8, a1);
      const int m = L.out - o0 < 16 ? L.out - o0 : 16;
      for (int v = 0; v < m; ++v) Y[long(o0 + v) * width + c] = relu ? relu_of(tmp[v]) : tmp[v];
    }
}
#endif

// Register block: 8 rows x 2 vectors (32 chains) = 16 accumulators; swept on Zen 4 over
// R in {4,6,8,12} x NB in {2,3,4}, this shape was best or tied on all benchmark networks.
#ifndef GENSAMP_R512
#define GENSAMP_R512 8
#endif
#ifndef GENSAMP_NB512
#define GENSAMP_NB512 2
#endif

#ifdef GENSAMP_X86
// Register blocking: R output rows x NB vectors of chains held in accumulators while k runs.
// Per k step: NB loads of X, R broadcasts of W, R*NB FMAs.

template <int R, int NB>
GENSAMP_TARGET_AVX512 static inline void block512(const float* W, const float* b, int in,
                                                  const float* X, float* Y, int width, int o, int c,
                                                  bool relu) {
  __m512 acc[R][NB];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NB; ++v) acc[r][v] = _mm512_set1_ps(b[o + r]);
  const float* xk = X + c;
  const float* w0 = W + long(o) * in;
  for (int k = 0; k < in; ++k, xk += width) {
    __m512 xv[NB];
    for (int v = 0; v < NB; ++v) xv[v] = _mm512_loadu_ps(xk + 16 * v);
    for (int r = 0; r < R; ++r) {
      const __m512 wb = _mm512_set1_ps(w0[long(r) * in + k]);
      for (int v = 0; v < NB; ++v) acc[r][v] = _mm512_fmadd_ps(wb, xv[v], acc[r][v]);
    }
  }
  if (relu) {
    const __m512 zero = _mm512_setzero_ps();
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NB; ++v)
        acc[r][v] = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(acc[r][v], zero, _CMP_GT_OQ), acc[r][v]);
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NB; ++v) _mm512_storeu_ps(Y + long(o + r) * width + c + 16 * v, acc[r][v]);
}

template <int NB>
GENSAMP_TARGET_AVX512 static void rows512(const float* W, const float* b, int out, int in,
                                          const float* X, float* Y, int width, int c, bool relu) {
  int o = 0;
  for (; o + GENSAMP_R512 <= out; o += GENSAMP_R512)
    block512<GENSAMP_R512, NB>(W, b, in, X, Y, width, o, c, relu);
  switch (out - o) {
    case 7: block512<7, NB>(W, b, in, X, Y, width, o, c, relu); break;
    case 6: block512<6, NB>(W, b, in, X, Y, width, o, c, relu); break;
    case 5: block512<5, NB>(W, b, in, X, Y, width, o, c, relu); break;
    case 4: block512<4, NB>(W, b, in, X, Y, width, o, c, relu); break;
    case 3: block512<3, NB>(W, b, in, X, Y, width, o, c, relu); break;
    case 2: block512<2, NB>(W, b, in, X, Y, width, o, c, relu); break;
    case 1: block512<1, NB>(W, b, in, X, Y, width, o, c, relu); break;
    default: break;
  }
}

GENSAMP_TARGET_AVX512 static void layer_avx512(const float* W, const float* b, int out, int in,
                                               const float* X, float* Y, int width, bool relu) {
  int c = 0;
  for (; c + 16 * GENSAMP_NB512 <= width; c += 16 * GENSAMP_NB512)
    rows512<GENSAMP_NB512>(W, b, out, in, X, Y, width, c, relu);
  switch ((width - c) / 16) {
    case 3: rows512<3>(W, b, out, in, X, Y, width, c, relu); break;
    case 2: rows512<2>(W, b, out, in, X, Y, width, c, relu); break;
    case 1: rows512<1>(W, b, out, in, X, Y, width, c, relu); break;
    default: break;
  }
}

template <int R, int NB>
GENSAMP_TARGET_AVX2 static inline void block256(const float* W, const float* b, int in,
                                                const float* X, float* Y, int width, int o, int c,
                                                bool relu) {
  __m256 acc[R][NB];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NB; ++v) acc[r][v] = _mm256_set1_ps(b[o + r]);
  const float* xk = X + c;
  const float* w0 = W + long(o) * in;
  for (int k = 0; k < in; ++k, xk += width) {
    __m256 xv[NB];
    for (int v = 0; v < NB; ++v) xv[v] = _mm256_loadu_ps(xk + 8 * v);
    for (int r = 0; r < R; ++r) {
      const __m256 wb = _mm256_set1_ps(w0[long(r) * in + k]);
      for (int v = 0; v < NB; ++v) acc[r][v] = _mm256_fmadd_ps(wb, xv[v], acc[r][v]);
    }
  }
  if (relu) {
    const __m256 zero = _mm256_setzero_ps();
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NB; ++v)
        acc[r][v] = _mm256_and_ps(acc[r][v], _mm256_cmp_ps(acc[r][v], zero, _CMP_GT_OQ));
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NB; ++v) _mm256_storeu_ps(Y + long(o + r) * width + c + 8 * v, acc[r][v]);
}

GENSAMP_TARGET_AVX2 static void layer_avx2(const float* W, const float* b, int out, int in,
                                           const float* X, float* Y, int width, bool relu) {
  // width is a multiple of kLane = 16: two ymm vectors per step of c.
  for (int c = 0; c < width; c += 16) {
    int o = 0;
    for (; o + 6 <= out; o += 6) block256<6, 2>(W, b, in, X, Y, width, o, c, relu);
    switch (out - o) {
      case 5: block256<5, 2>(W, b, in, X, Y, width, o, c, relu); break;
      case 4: block256<4, 2>(W, b, in, X, Y, width, o, c, relu); break;
      case 3: block256<3, 2>(W, b, in, X, Y, width, o, c, relu); break;
      case 2: block256<2, 2>(W, b, in, X, Y, width, o, c, relu); break;
      case 1: block256<1, 2>(W, b, in, X, Y, width, o, c, relu); break;
      default: break;
    }
  }
}
#endif

namespace {

const Kernel<LayerKernel>& layer_kernel() {
#ifdef GENSAMP_X86
  static const auto k = select<LayerKernel>({layer_scalar, layer_avx2, layer_avx512});
#else
  static const auto k = select<LayerKernel>({layer_scalar, nullptr, nullptr});
#endif
  return k;
}

const Kernel<NarrowKernel>& narrow_kernel() {
#ifdef GENSAMP_X86
  static const auto k = select<NarrowKernel>({narrow_scalar, narrow_avx2, narrow_avx512});
#else
  static const auto k = select<NarrowKernel>({narrow_scalar, nullptr, nullptr});
#endif
  return k;
}

}  // namespace

void layer_forward(const LayerRef& L, const float* X, float* Y, int width, bool relu) {
  if (width % 16 == 0)
    layer_kernel().fn(L.W, L.b, L.out, L.in, X, Y, width, relu);
  else
    narrow_kernel().fn(L, X, Y, width, relu);
}

SimdLevel layer_kernel_level() { return layer_kernel().level; }
SimdLevel narrow_kernel_level() { return narrow_kernel().level; }

}  // namespace gensamp
