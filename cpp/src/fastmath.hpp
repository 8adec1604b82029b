// float32 exp and log from IEEE-exact operations only (add, mul, fma, division, floor, integer
// and bit manipulation), so a loop over them gives the same bits whether the compiler
// vectorises it for AVX-512, AVX2 or not at all. Cephes single-precision coefficients; both
// are accurate to a few ulps over the float range used here.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace gensamp {

inline float fm_exp(float x) {
  x = x < 88.3762626647949f ? x : 88.3762626647949f;
  x = x > -87.3365447504f ? x : -87.3365447504f;  // 2^-126: stays a normal number
  // n = nearest integer to x / ln 2, by adding and removing 1.5 * 2^23 (one rounding each,
  // both exact here): no floor() and no branch, so the loop vectorises.
  const float fx = std::fma(x, 1.44269504088896341f, 12582912.f) - 12582912.f;
  float r = std::fma(fx, -0.693359375f, x);
  r = std::fma(fx, 2.12194440e-4f, r);
  const float z = r * r;
  float y = 1.9875691500e-4f;
  y = std::fma(y, r, 1.3981999507e-3f);
  y = std::fma(y, r, 8.3334519073e-3f);
  y = std::fma(y, r, 4.1665795894e-2f);
  y = std::fma(y, r, 1.6666665459e-1f);
  y = std::fma(y, r, 5.0000001201e-1f);
  y = std::fma(y, z, r) + 1.f;
  const uint32_t bits = uint32_t(int32_t(fx) + 127) << 23;
  float p;
  std::memcpy(&p, &bits, 4);
  return y * p;
}

// log on the reduced mantissa m in [sqrt(1/2), sqrt(2)); x must be > 0 and finite.
inline float fm_log(float u) {
  uint32_t bits;
  std::memcpy(&bits, &u, 4);
  int e = int((bits >> 23) & 0xFF) - 126;  // u = m * 2^e, m in [0.5, 1)
  bits = (bits & 0x007FFFFFu) | 0x3F000000u;
  float m;
  std::memcpy(&m, &bits, 4);
  const bool small = m < 0.70710678118654752f;
  e = small ? e - 1 : e;
  const float x = small ? (m + m) - 1.f : m - 1.f;
  const float z = x * x;
  float y = 7.0376836292e-2f;
  y = std::fma(y, x, -1.1514610310e-1f);
  y = std::fma(y, x, 1.1676998740e-1f);
  y = std::fma(y, x, -1.2420140846e-1f);
  y = std::fma(y, x, 1.4249322787e-1f);
  y = std::fma(y, x, -1.6668057665e-1f);
  y = std::fma(y, x, 2.0000714765e-1f);
  y = std::fma(y, x, -2.4999993993e-1f);
  y = std::fma(y, x, 3.3333331174e-1f);
  y = (y * x) * z;
  const float fe = float(e);
  y = std::fma(fe, -2.12194440e-4f, y);
  y = std::fma(z, -0.5f, y);
  return std::fma(fe, 0.693359375f, x + y);
}

}  // namespace gensamp
