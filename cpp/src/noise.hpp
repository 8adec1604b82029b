// Standard normals for a tile of chains at one step, vectorised across chains.
//
// Chain j at step t, normals 4k..4k+3: Philox4x32-10 with counter (k, t, j_lo, j_hi) and key
// (seed_lo, seed_hi) gives words (a0, b0, a1, b1); each pair goes through Box-Muller in float32:
//   u = fl(fl(a) * 2^-32 + 2^-33)  in (0, 1],   theta = fl(b) * 2^-32  in [0, 1]
//   r = sqrt(-2 log u),  z = (r cos(2 pi theta), r sin(2 pi theta))
// with log, sin and cos our own polynomials built from IEEE-exact operations only (add, mul,
// fma, sqrt, conversions), so every SIMD level and the scalar path produce identical bits.
// |z| <= 6.8 (u >= 2^-33); the polynomials are accurate to a few float32 ulps.
#pragma once
#include <cstdint>

#include "cpu_features.hpp"

namespace gensamp {

// z[i * ld + c] for chains c = 0..w-1 (global index chain0 + c) and i = 0..d-1.
void tile_normals(uint64_t seed, uint64_t chain0, int w, uint32_t step, int d, float* z, int ld);

// The Langevin step with its noise generated in the same pass:
// u[i*ld + c] <- (u + half * s[i*ld + c]) + root * z_{chain0+c, i}   (the seed's convention).
void tile_langevin_update(uint64_t seed, uint64_t chain0, int w, uint32_t step, int d, float* u,
                          const float* s, int ld, float half, float root);

// Rademacher directions for the Hutchinson trace estimate (density.cpp): for chains c < w
// (global index chain0 + c), v[(i * probes + p) * ld + c] = -1 if bit b = p * d + i of the
// chain's stream at `step` is set, else +1, where bit b is bit b % 32 of word (b / 32) % 4 of
// Philox4x32-10 with counter (b / 128, step, j mod 2^32, j div 2^32) and key (seed mod 2^32,
// seed div 2^32), the counter layout of the normals above. Integer work only: the same bits on
// every path, so it has no SIMD variants.
void tile_signs(uint64_t seed, uint64_t chain0, int w, uint32_t step, int d, int probes, float* v,
                int ld);

// Uniforms in (0, 1) for one chain (global index `chain`) at one step, in double:
// u[i] = (w + 1/2) 2^-32 with w word i % 4 of Philox4x32-10 with counter
// (i / 4, step, chain mod 2^32, chain div 2^32) and key (seed mod 2^32, seed div 2^32), the
// counter layout of the normals. Exact (33 significant bits fit a double), never 0 or 1; one
// chain at a time with exact operations only, so it has no SIMD variants.
void chain_uniforms(uint64_t seed, uint64_t chain, uint32_t step, int d, double* u);

SimdLevel noise_level();  // the level the normals and the Langevin update run at

}  // namespace gensamp
