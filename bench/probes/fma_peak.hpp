#pragma once

namespace bench {

// Measured FP32 FMA throughput (GFLOP/s, best of 3 runs of about `seconds`) of `threads` >= 1
// threads on the engine's SIMD path: the arithmetic bound of every layer kernel.
double fma_peak_gflops(int threads, double seconds);

}  // namespace bench
