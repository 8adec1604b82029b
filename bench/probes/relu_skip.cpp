// Probe (issue 4): would skipping the zeros a ReLU leaves in a layer's input pay off?
//
// Half of the hidden activations of the benchmark network are exact zeros, and skipping them
// leaves every FMA chain's result unchanged. But the engine's kernel vectorises across chains
// (16 chains per register, 8 outputs x 32 chains per block), where a zero can only be skipped
// when all 32 chains share it. Skipping per chain needs the transposed form: each chain (or a
// pair, over the union of their non-zeros) accumulates its outputs in registers, one weight row
// per non-zero input. That streams the whole weight matrix once per chain (pair) instead of
// once per 32 chains. This probe times both on the same layer in one run and reports the
// dense-equivalent GFLOP/s (2 * out * in * width per call, zeros included), so a number above
// the dense kernel's would mean skipping wins.
//
// Build and run (AVX-512 machine): build_probe("relu_skip") in bench/common.py compiles it with
// the engine's kernel sources and returns the executable's path; run that as
//   <path> 256 256 64 0.5      (OUT IN WIDTH DENSITY)
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "fma_peak.hpp"
#include "gemm.hpp"

namespace {

struct Bufs {
  int out, in, width, out_pad;
  // W [out][in], WT [in][out_pad]; inputs X [in][width] (the engine's layout) and the same
  // values chain-major in Xc [width][in]; outputs Y [out][width] and Yc [width][out_pad].
  std::vector<float> W, WT, b, X, Xc, Y, Yc;
  std::vector<int> idx;
  std::vector<float> xa, xb;
};

// The engine's fused ReLU store (gensamp::relu_of lane by lane).
__attribute__((target("avx512f"))) inline __m512 relu(__m512 v) {
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ), v);
}

// Compacts the non-zeros of one chain (or of either of two chains) of the chain-major input:
// weight-row offsets into idx, the chains' values into xa (and xb).
template <bool Pair>
__attribute__((target("avx512f"))) int compact(const float* x0, const float* x1, int in, int ld,
                                               int* idx, float* xa, float* xb) {
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512 zero = _mm512_setzero_ps();
  int m = 0;
  for (int k0 = 0; k0 < in; k0 += 16) {
    const __m512 va = _mm512_loadu_ps(x0 + k0);
    __mmask16 nz = _mm512_cmp_ps_mask(va, zero, _CMP_NEQ_UQ);
    __m512 vb = zero;
    if (Pair) {
      vb = _mm512_loadu_ps(x1 + k0);
      nz |= _mm512_cmp_ps_mask(vb, zero, _CMP_NEQ_UQ);
    }
    const __m512i off =
        _mm512_mullo_epi32(_mm512_add_epi32(iota, _mm512_set1_epi32(k0)), _mm512_set1_epi32(ld));
    _mm512_mask_compressstoreu_ps(xa + m, nz, va);
    if (Pair) _mm512_mask_compressstoreu_ps(xb + m, nz, vb);
    _mm512_mask_compressstoreu_epi32(idx + m, nz, off);
    m += __builtin_popcount(nz);
  }
  return m;
}

// One chain: P*16 outputs in registers, one broadcast and P weight loads per non-zero input.
template <int P>
__attribute__((target("avx512f"))) void skip_single(Bufs& B) {
  for (int c = 0; c < B.width; ++c) {
    const int m = compact<false>(&B.Xc[size_t(c) * B.in], nullptr, B.in, B.out_pad, B.idx.data(),
                                 B.xa.data(), nullptr);
    for (int o0 = 0; o0 < B.out; o0 += 16 * P) {
      __m512 a[P];
      for (int v = 0; v < P; ++v) a[v] = _mm512_loadu_ps(&B.b[o0 + 16 * v]);
      for (int j = 0; j < m; ++j) {
        const float* w = &B.WT[o0] + B.idx[j];
        const __m512 x = _mm512_set1_ps(B.xa[j]);
        for (int v = 0; v < P; ++v) a[v] = _mm512_fmadd_ps(_mm512_loadu_ps(w + 16 * v), x, a[v]);
      }
      for (int v = 0; v < P; ++v)
        _mm512_storeu_ps(&B.Yc[size_t(c) * B.out_pad + o0 + 16 * v], relu(a[v]));
    }
  }
}

// Two chains over the union of their non-zeros: each weight load feeds two FMAs.
template <int P>
__attribute__((target("avx512f"))) void skip_pair(Bufs& B) {
  for (int c = 0; c + 1 < B.width; c += 2) {
    const int m = compact<true>(&B.Xc[size_t(c) * B.in], &B.Xc[size_t(c + 1) * B.in], B.in,
                                B.out_pad, B.idx.data(), B.xa.data(), B.xb.data());
    for (int o0 = 0; o0 < B.out; o0 += 16 * P) {
      __m512 a[P], e[P];
      for (int v = 0; v < P; ++v) a[v] = e[v] = _mm512_loadu_ps(&B.b[o0 + 16 * v]);
      for (int j = 0; j < m; ++j) {
        const float* w = &B.WT[o0] + B.idx[j];
        const __m512 xa = _mm512_set1_ps(B.xa[j]), xb = _mm512_set1_ps(B.xb[j]);
        for (int v = 0; v < P; ++v) {
          const __m512 wv = _mm512_loadu_ps(w + 16 * v);
          a[v] = _mm512_fmadd_ps(wv, xa, a[v]);
          e[v] = _mm512_fmadd_ps(wv, xb, e[v]);
        }
      }
      for (int v = 0; v < P; ++v) {
        _mm512_storeu_ps(&B.Yc[size_t(c) * B.out_pad + o0 + 16 * v], relu(a[v]));
        _mm512_storeu_ps(&B.Yc[size_t(c + 1) * B.out_pad + o0 + 16 * v], relu(e[v]));
      }
    }
  }
}

void dense(Bufs& B) {
  const gensamp::LayerRef L{B.W.data(), B.WT.data(), B.b.data(), B.out, B.in, B.out_pad, nullptr};
  gensamp::layer_forward(L, B.X.data(), B.Y.data(), B.width, true);
}

// A skipped zero leaves an FMA chain's value unchanged, so the skipping kernels must give the
// dense kernel's bits exactly (after the ReLU, which maps the one possible difference, the sign
// of an exact zero, to +0).
template <class F>
bool same_bits(Bufs& B, F f) {
  dense(B);
  f(B);
  for (int o = 0; o < B.out; ++o)
    for (int c = 0; c < B.width; ++c)
      if (std::memcmp(&B.Y[size_t(o) * B.width + c], &B.Yc[size_t(c) * B.out_pad + o], 4))
        return false;
  return true;
}

template <class F>
double gflops(Bufs& B, F f) {
  const double flop = 2.0 * B.out * B.in * B.width;
  const long iters = long(2e9 / flop) + 1;
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < iters; ++i) f(B);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, flop * double(iters) / s / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s OUT IN WIDTH DENSITY  (OUT a multiple of 64, IN of 16)\n",
                 argv[0]);
    return 2;
  }
  if (gensamp::simd_level() != gensamp::SimdLevel::avx512) {
    std::fprintf(stderr, "this probe needs AVX-512 (the engine chose %s here)\n",
                 gensamp::simd_level_name(gensamp::simd_level()));
    return 77;
  }
  Bufs B;
  B.out = std::atoi(argv[1]);
  B.in = std::atoi(argv[2]);
  B.width = std::atoi(argv[3]);
  const double density = std::atof(argv[4]);
  if (B.out < 64 || B.out % 64 || B.in < 16 || B.in % 16 || B.width < 16 || B.width % 16) {
    std::fprintf(stderr, "OUT must be a multiple of 64, IN and WIDTH of 16\n");
    return 2;
  }
  B.out_pad = B.out;
  std::mt19937 g(1);
  std::normal_distribution<float> nd;
  std::uniform_real_distribution<float> u;
  B.W.resize(size_t(B.out) * B.in);
  B.WT.resize(size_t(B.in) * B.out_pad);
  B.b.resize(size_t(B.out_pad));
  B.X.resize(size_t(B.in) * B.width);
  B.Xc.resize(B.X.size());
  B.Y.resize(size_t(B.out_pad) * B.width);
  B.Yc.resize(B.Y.size());
  B.idx.resize(B.in);
  B.xa.resize(B.in);
  B.xb.resize(B.in);
  for (auto& v : B.b) v = 0.1f * nd(g);
  for (int o = 0; o < B.out; ++o)
    for (int k = 0; k < B.in; ++k)
      B.WT[size_t(k) * B.out_pad + o] = B.W[size_t(o) * B.in + k] = 0.05f * nd(g);
  for (int k = 0; k < B.in; ++k)
    for (int c = 0; c < B.width; ++c)
      B.Xc[size_t(c) * B.in + k] = B.X[size_t(k) * B.width + c] =
          u(g) < density ? std::abs(nd(g)) : 0.f;
  std::printf(
      "layer %d -> %d, %d chains, %.0f%% non-zero inputs; dense-equivalent GFLOP/s, 1 thread "
      "(%s)\n",
      B.in, B.out, B.width, 100 * density, gensamp::simd_level_name(gensamp::simd_level()));
  std::printf("  engine kernel (dense, all zeros multiplied): %6.1f\n", gflops(B, dense));
  bool ok = true;
  auto report = [&](const char* name, void (*f)(Bufs&)) {
    const bool same = same_bits(B, f);
    ok = ok && same;
    std::printf("  %-44s %6.1f  (%s)\n", name, gflops(B, f), same ? "same bits" : "DIFFERENT BITS");
  };
  report("skip zeros, one chain,  64 outputs/pass:", skip_single<4>);
  if (B.out % 256 == 0) report("skip zeros, one chain, 256 outputs/pass:", skip_single<16>);
  report("skip zeros, chain pairs, 64 outputs/pass:", skip_pair<4>);
  if (B.out % 128 == 0) report("skip zeros, chain pairs, 128 outputs/pass:", skip_pair<8>);
  std::printf("  %-44s %6.1f\n", "FMA peak, 1 thread:", bench::fma_peak_gflops(1, 0.3));
  return ok ? 0 : 1;
}
