// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
// Counter-based: the noise of chain j at step t is a pure function of (seed, j, t), which is
// what makes results independent of thread count and tile layout.
#pragma once
#include <cstdint>

namespace gensamp {

struct PhiloxBlock {
  uint32_t v[4];
};

// Plain integer code with no branches or tables: the noise kernels call it inside a loop over
// chains that the compiler vectorises, one chain per SIMD lane, so there is no separate vector
// form to keep in step with this one.
inline PhiloxBlock philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                 uint32_t k1) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
#pragma GCC unroll 10
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

}  // namespace gensamp
