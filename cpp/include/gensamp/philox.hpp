// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
// Counter-based: the noise of chain j at step t is a pure function of (seed, j, t), which is
// what makes results independent of thread count and tile layout.
#pragma once
#include <cmath>
#include <cstdint>

namespace gensamp {

struct PhiloxBlock {
  uint32_t v[4];
};

inline PhiloxBlock philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                 uint32_t k1) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = uint64_t(M0) * c0;
    const uint64_t p1 = uint64_t(M1) * c2;
    const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += W0;
    k1 += W1;
  }
  return {{c0, c1, c2, c3}};
}

// Step index reserved for drawing default initial states; sampler steps use 0 .. 2^32-2.
constexpr uint32_t kInitStep = 0xFFFFFFFFu;

// Standard normals number 4k..4k+3 of chain `chain` at step `step`:
// counter = (k, step, chain_lo, chain_hi), key = (seed_lo, seed_hi); Box-Muller on the two
// word pairs, u1 = (a + 1/2)/2^32 in (0, 1) so the log is finite, theta = 2*pi*b/2^32.
// Evaluated in double so that an independent float64 implementation reproduces it to within
// the last float32 ulp.
inline void normal_block(uint64_t seed, uint64_t chain, uint32_t step, uint32_t k, float out[4]) {
  const PhiloxBlock r = philox4x32_10(k, step, uint32_t(chain), uint32_t(chain >> 32),
                                      uint32_t(seed), uint32_t(seed >> 32));
  constexpr double inv32 = 1.0 / 4294967296.0;
  constexpr double two_pi = 6.283185307179586476925286766559;
  for (int p = 0; p < 2; ++p) {
    const double u1 = (double(r.v[2 * p]) + 0.5) * inv32;
    const double th = two_pi * (double(r.v[2 * p + 1]) * inv32);
    const double rad = std::sqrt(-2.0 * std::log(u1));
    out[2 * p] = float(rad * std::cos(th));
    out[2 * p + 1] = float(rad * std::sin(th));
  }
}

// d normals of one chain at one step, written with the given stride.
inline void chain_normals(uint64_t seed, uint64_t chain, uint32_t step, int d, float* z,
                          long stride) {
  float blk[4];
  for (int i = 0; i < d; i += 4) {
    normal_block(seed, chain, step, uint32_t(i / 4), blk);
    const int m = d - i < 4 ? d - i : 4;
    for (int q = 0; q < m; ++q) z[long(i + q) * stride] = blk[q];
  }
}

}  // namespace gensamp
