#include "noise.hpp"

#include <cmath>
#include <cstring>

#include "cpu_features.hpp"
#include "fastmath.hpp"
#include "gensamp/philox.hpp"

namespace gensamp {

namespace {

constexpr int kChunk = 16;

// sin and cos of 2*pi*theta for theta in [0, 1]: quadrant from round(4 theta), then the Cephes
// minimax polynomials on [-pi/4, pi/4].
inline void poly_sincos_turn(float theta, float& s_out, float& c_out) {
  const float q4 = theta * 4.f;
  const int q = int(q4 + 0.5f);              // nearest quadrant, 0..4
  const float f = theta - float(q) * 0.25f;  // exact: |f| <= 1/8
  const float x = f * 6.28318530717958647692f;
  const float z = x * x;
  float s = -1.9515295891e-4f;
  s = std::fma(s, z, 8.3321608736e-3f);
  s = std::fma(s, z, -1.6666654611e-1f);
  s = std::fma(s * z, x, x);
  float c = 2.443315711809948e-5f;
  c = std::fma(c, z, -1.388731625493765e-3f);
  c = std::fma(c, z, 4.166664568298827e-2f);
  c = std::fma(c * z, z, std::fma(z, -0.5f, 1.f));
  const int r = q & 3;
  const float cs = (r & 1) ? s : c;  // rotate by r quarter turns
  const float sn = (r & 1) ? c : s;
  c_out = (r == 1 || r == 2) ? -cs : cs;
  s_out = (r >= 2) ? -sn : sn;
}

// Stores the normals: z[i * ld + c].
struct StoreSink {
  float* z;
  int ld;
  inline void operator()(int row, int c0, const float* v, int m) const {
    std::memcpy(z + long(row) * ld + c0, v, sizeof(float) * m);
  }
};

// The Langevin update fused with the noise: u <- (u + half * s) + root * z, row by row while
// the fresh normals are still in registers / L1.
struct UpdateSink {
  float* u;
  const float* s;
  int ld;
  float half, root;
  inline void operator()(int row, int c0, const float* v, int m) const {
    float* ur = u + long(row) * ld + c0;
    const float* sr = s + long(row) * ld + c0;
    for (int c = 0; c < m; ++c) ur[c] = (ur[c] + half * sr[c]) + root * v[c];
  }
};

template <class Sink>
inline __attribute__((always_inline)) void normals_body(uint64_t seed, uint64_t chain0, int w,
                                                        uint32_t step, int d, const Sink& sink) {
  const uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int cb = 0; cb < w; cb += kChunk) {
    const int m = w - cb < kChunk ? w - cb : kChunk;
    for (int blk = 0; blk * 4 < d; ++blk) {
      float out[4][kChunk];
#pragma omp simd
      for (int c = 0; c < m; ++c) {  // only live chains: a lone chain costs one lane, not 16
        const uint64_t j = chain0 + uint64_t(cb + c);
        const PhiloxBlock r =
            philox4x32_10(uint32_t(blk), step, uint32_t(j), uint32_t(j >> 32), k0, k1);
        const uint32_t c0 = r.v[0], c1 = r.v[1], c2 = r.v[2], c3 = r.v[3];
        // Box-Muller on (c0, c1) and (c2, c3).
        float sn, cs;
        const float r0 = std::sqrt(-2.f * fm_log(std::fma(float(c0), 0x1p-32f, 0x1p-33f)));
        poly_sincos_turn(float(c1) * 0x1p-32f, sn, cs);
        out[0][c] = r0 * cs;
        out[1][c] = r0 * sn;
        const float r1 = std::sqrt(-2.f * fm_log(std::fma(float(c2), 0x1p-32f, 0x1p-33f)));
        poly_sincos_turn(float(c3) * 0x1p-32f, sn, cs);
        out[2][c] = r1 * cs;
        out[3][c] = r1 * sn;
      }
      const int rows = d - 4 * blk < 4 ? d - 4 * blk : 4;
      for (int q = 0; q < rows; ++q) sink(4 * blk + q, cb, out[q], m);
    }
  }
}

// One instantiation per SIMD level (the body is always inlined into each target).
#define GENSAMP_NOISE_FNS(SUFFIX, ATTR)                                                   \
  ATTR void normals_##SUFFIX(uint64_t s, uint64_t c0, int w, uint32_t t, int d, float* z, \
                             int ld) {                                                    \
    normals_body(s, c0, w, t, d, StoreSink{z, ld});                                       \
  }                                                                                       \
  ATTR void update_##SUFFIX(uint64_t s, uint64_t c0, int w, uint32_t t, int d, float* u,  \
                            const float* sc, int ld, float half, float root) {            \
    normals_body(s, c0, w, t, d, UpdateSink{u, sc, ld, half, root});                      \
  }

GENSAMP_NOISE_FNS(scalar, )
#ifdef GENSAMP_X86
GENSAMP_NOISE_FNS(avx2, GENSAMP_TARGET_AVX2)
GENSAMP_NOISE_FNS(avx512, GENSAMP_TARGET_AVX512)
#endif

using NormalsFn = void (*)(uint64_t, uint64_t, int, uint32_t, int, float*, int);
using UpdateFn = void (*)(uint64_t, uint64_t, int, uint32_t, int, float*, const float*, int, float,
                          float);

// The two entry points share one body, so they are one family with one choice.
struct NoiseFns {
  NormalsFn normals;
  UpdateFn update;
};
const NoiseFns kNoiseScalar{normals_scalar, update_scalar};
#ifdef GENSAMP_X86
const NoiseFns kNoiseAvx2{normals_avx2, update_avx2};
const NoiseFns kNoiseAvx512{normals_avx512, update_avx512};
#endif

const Kernel<const NoiseFns*>& noise_kernel() {
#ifdef GENSAMP_X86
  static const auto k = select<const NoiseFns*>({&kNoiseScalar, &kNoiseAvx2, &kNoiseAvx512});
#else
  static const auto k = select<const NoiseFns*>({&kNoiseScalar, nullptr, nullptr});
#endif
  return k;
}

}  // namespace

void tile_normals(uint64_t seed, uint64_t chain0, int w, uint32_t step, int d, float* z, int ld) {
  noise_kernel().fn->normals(seed, chain0, w, step, d, z, ld);
}

void tile_langevin_update(uint64_t seed, uint64_t chain0, int w, uint32_t step, int d, float* u,
                          const float* s, int ld, float half, float root) {
  noise_kernel().fn->update(seed, chain0, w, step, d, u, s, ld, half, root);
}

void tile_signs(uint64_t seed, uint64_t chain0, int w, uint32_t step, int d, int probes, float* v,
                int ld) {
  const uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  const long bits = long(d) * probes;
  for (int c = 0; c < w; ++c) {
    const uint64_t j = chain0 + uint64_t(c);
    PhiloxBlock r{};
    for (long b = 0; b < bits; ++b) {
      if (b % 128 == 0)
        r = philox4x32_10(uint32_t(b / 128), step, uint32_t(j), uint32_t(j >> 32), k0, k1);
      const bool set = (r.v[(b / 32) % 4] >> (b % 32)) & 1u;
      const long p = b / d, i = b % d;
      v[(i * probes + p) * long(ld) + c] = set ? -1.f : 1.f;
    }
  }
}

void chain_uniforms(uint64_t seed, uint64_t chain, uint32_t step, int d, double* u) {
  const uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int blk = 0; blk * 4 < d; ++blk) {
    const PhiloxBlock r =
        philox4x32_10(uint32_t(blk), step, uint32_t(chain), uint32_t(chain >> 32), k0, k1);
    for (int q = 0; q < 4 && 4 * blk + q < d; ++q)
      u[4 * blk + q] = (double(r.v[q]) + 0.5) * 0x1p-32;
  }
}

SimdLevel noise_level() { return noise_kernel().level; }

}  // namespace gensamp
