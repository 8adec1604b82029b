#include "activations.hpp"

#include <cmath>

#include "fastmath.hpp"

namespace gensamp {

namespace {

// torch.nn.functional's formulas on float32 (default parameters: leaky slope 0.01, elu alpha 1,
// softplus beta 1 threshold 20, gelu exact erf or its tanh approximation). exp and log are
// fastmath's, so these loops vectorise and give the same bits at every SIMD level; the exact
// gelu uses std::erf element by element (the same scalar code on every path).
inline __attribute__((always_inline)) void act_body(Act a, float* y, long count) {
  switch (a) {
    case Act::identity: return;
    case Act::relu:
#pragma omp simd
      for (long i = 0; i < count; ++i) y[i] = relu_of(y[i]);
      return;
    case Act::leaky_relu:
#pragma omp simd
      for (long i = 0; i < count; ++i) y[i] = y[i] > 0.f ? y[i] : y[i] * 0.01f;
      return;
    case Act::elu:
#pragma omp simd
      for (long i = 0; i < count; ++i) y[i] = y[i] > 0.f ? y[i] : fm_exp(y[i]) - 1.f;
      return;
    case Act::silu:
#pragma omp simd
      for (long i = 0; i < count; ++i) y[i] = y[i] / (1.f + fm_exp(-y[i]));
      return;
    case Act::softplus:
#pragma omp simd
      for (long i = 0; i < count; ++i) y[i] = y[i] > 20.f ? y[i] : fm_log(1.f + fm_exp(y[i]));
      return;
    case Act::tanh:
#pragma omp simd
      for (long i = 0; i < count; ++i) y[i] = 1.f - 2.f / (fm_exp(2.f * y[i]) + 1.f);
      return;
    case Act::sigmoid:
#pragma omp simd
      for (long i = 0; i < count; ++i) y[i] = 1.f / (1.f + fm_exp(-y[i]));
      return;
    case Act::gelu:
      for (long i = 0; i < count; ++i)
        y[i] = 0.5f * y[i] * (1.f + std::erf(y[i] * 0.70710678118654752f));
      return;
    case Act::gelu_tanh:
#pragma omp simd
      for (long i = 0; i < count; ++i) {
        const float v = y[i];
        const float t = 2.f * (0.7978845608028654f * (v + 0.044715f * v * v * v));
        y[i] = 0.5f * v * (1.f + (1.f - 2.f / (fm_exp(t) + 1.f)));
      }
      return;
  }
}

// d/dh of each formula above. tanh and the logistic are evaluated as above, then
// differentiated in closed form: tanh' = 1 - t^2, sigmoid' = s (1 - s).
inline __attribute__((always_inline)) void grad_body(Act a, const float* h, float* g, long count) {
  switch (a) {
    case Act::identity:
      for (long i = 0; i < count; ++i) g[i] = 1.f;
      return;
    case Act::relu:
#pragma omp simd
      for (long i = 0; i < count; ++i) g[i] = h[i] > 0.f ? 1.f : 0.f;
      return;
    case Act::leaky_relu:
#pragma omp simd
      for (long i = 0; i < count; ++i) g[i] = h[i] > 0.f ? 1.f : 0.01f;
      return;
    case Act::elu:
#pragma omp simd
      for (long i = 0; i < count; ++i) g[i] = h[i] > 0.f ? 1.f : fm_exp(h[i]);
      return;
    case Act::silu:
#pragma omp simd
      for (long i = 0; i < count; ++i) {
        const float s = 1.f / (1.f + fm_exp(-h[i]));
        g[i] = s * (1.f + h[i] * (1.f - s));
      }
      return;
    case Act::softplus:  // beyond the threshold torch's softplus is the identity
#pragma omp simd
      for (long i = 0; i < count; ++i) g[i] = h[i] > 20.f ? 1.f : 1.f / (1.f + fm_exp(-h[i]));
      return;
    case Act::tanh:
#pragma omp simd
      for (long i = 0; i < count; ++i) {
        const float t = 1.f - 2.f / (fm_exp(2.f * h[i]) + 1.f);
        g[i] = 1.f - t * t;
      }
      return;
    case Act::sigmoid:
#pragma omp simd
      for (long i = 0; i < count; ++i) {
        const float s = 1.f / (1.f + fm_exp(-h[i]));
        g[i] = s * (1.f - s);
      }
      return;
    case Act::gelu:  // Phi(h) + h phi(h)
      for (long i = 0; i < count; ++i) {
        const float v = h[i];
        g[i] = 0.5f * (1.f + std::erf(v * 0.70710678118654752f)) +
               v * (0.39894228040143268f * fm_exp(-0.5f * v * v));
      }
      return;
    case Act::gelu_tanh:
#pragma omp simd
      for (long i = 0; i < count; ++i) {
        const float v = h[i];
        const float k = 0.7978845608028654f;
        const float t = 1.f - 2.f / (fm_exp(2.f * (k * (v + 0.044715f * v * v * v))) + 1.f);
        g[i] = 0.5f * (1.f + t) + 0.5f * v * ((1.f - t * t) * (k * (1.f + 0.134145f * v * v)));
      }
      return;
  }
}

using ActFn = void (*)(Act, float*, long);
using GradFn = void (*)(Act, const float*, float*, long);

void act_scalar(Act a, float* y, long n) { act_body(a, y, n); }
#ifdef GENSAMP_X86
GENSAMP_TARGET_AVX2 void act_avx2(Act a, float* y, long n) { act_body(a, y, n); }
GENSAMP_TARGET_AVX512 void act_avx512(Act a, float* y, long n) { act_body(a, y, n); }
#endif

const Kernel<ActFn>& act_kernel() {
#ifdef GENSAMP_X86
  static const auto k = select<ActFn>({act_scalar, act_avx2, act_avx512});
#else
  static const auto k = select<ActFn>({act_scalar, nullptr, nullptr});
#endif
  return k;
}

void grad_scalar(Act a, const float* h, float* g, long n) { grad_body(a, h, g, n); }
#ifdef GENSAMP_X86
GENSAMP_TARGET_AVX2 void grad_avx2(Act a, const float* h, float* g, long n) {
  grad_body(a, h, g, n);
}
GENSAMP_TARGET_AVX512 void grad_avx512(Act a, const float* h, float* g, long n) {
  grad_body(a, h, g, n);
}
#endif

const Kernel<GradFn>& grad_kernel() {
#ifdef GENSAMP_X86
  static const auto k = select<GradFn>({grad_scalar, grad_avx2, grad_avx512});
#else
  static const auto k = select<GradFn>({grad_scalar, nullptr, nullptr});
#endif
  return k;
}

}  // namespace

void apply_act(Act a, float* y, long count) { act_kernel().fn(a, y, count); }

void apply_act_grad(Act a, const float* h, float* g, long count) {
  grad_kernel().fn(a, h, g, count);
}

SimdLevel activation_level() { return act_kernel().level; }

}  // namespace gensamp
