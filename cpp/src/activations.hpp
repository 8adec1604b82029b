// The hidden-layer activations, applied in place to a layer's output tile. exp and log are
// fastmath's, so every SIMD level computes the same bits.
#pragma once
#include "cpu_features.hpp"
#include "gensamp/model.hpp"

namespace gensamp {

// The ReLU predicate, shared by the activation pass and the layer kernels' fused stores so both
// give the same bits: an ordered compare, so NaN and -0 give +0.
inline float relu_of(float v) { return v > 0.f ? v : 0.f; }

void apply_act(Act a, float* y, long count);

// g[i] = act'(h[i]) for pre-activations h (forward-mode differentiation of a network). The
// derivative of each formula apply_act evaluates, from the same fastmath exp, so every SIMD
// level gives the same bits here too. At relu's and leaky_relu's kink (h = 0) the derivative
// is taken from the left, as torch's autograd does.
void apply_act_grad(Act a, const float* h, float* g, long count);

SimdLevel activation_level();  // the level apply_act runs at

}  // namespace gensamp
