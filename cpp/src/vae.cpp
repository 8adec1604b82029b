// Ancestral sampling from a VAE decoder: z from the latent prior (N(0, I) or a Gaussian
// mixture), x from the decoder's likelihood (Gaussian, Bernoulli, continuous Bernoulli).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "gensamp/sampler.hpp"
#include "noise.hpp"
#include "tiles.hpp"

namespace gensamp {

namespace {

// The steps of a chain's noise stream a draw uses (see vae_sample in sampler.hpp).
constexpr uint32_t kLatentStep = 0, kDecoderStep = 1, kComponentStep = 2;

// The likelihoods' transforms work in double on the float32 logit l: lambda = sigmoid(l) and
// lambda / (1 - lambda) = e^l, so the formulas below are the documented ones in terms of l,
// with no 1 - lambda that rounds to 0 for large l.
inline double sigmoid(double l) { return 1.0 / (1.0 + std::exp(-l)); }

// The continuous Bernoulli's inverse CDF: log(1 + u (2 lambda - 1) / (1 - lambda)) / log(lambda /
// (1 - lambda)) = log1p(u expm1(l)) / l; for l > 0 as 1 + log(u + (1 - u) e^-l) / l, which
// cannot overflow. Near l = 0 (lambda = 1/2) the quotient is 0/0-like: there x = u plus the
// first-order term u (1 - u) l / 2 (the next term is below 1e-12). Clamped to [0, 1] against
// the last bit of rounding.
inline double cb_inverse_cdf(double l, double u) {
  if (std::isnan(l)) return l;
  double x;
  if (std::fabs(l) < 1e-6)
    x = u + 0.5 * u * (1.0 - u) * l;
  else if (l > 0)
    x = 1.0 + std::log(u + (1.0 - u) * std::exp(-l)) / l;
  else
    x = std::log1p(u * std::expm1(l)) / l;
  return std::min(1.0, std::max(0.0, x));
}

// The continuous Bernoulli's mean, lambda / (2 lambda - 1) + 1 / (2 atanh(1 - 2 lambda)), in
// terms of l: 1/2 + (coth(l/2) - 2/l) / 2. coth y - 1/y cancels near y = 0, where its series
// y/3 - y^3/45 is used (the next term, 2 y^5 / 945, is below 1e-12 there).
inline double cb_mean(double l) {
  const double y = 0.5 * l;
  const double lang =
      std::fabs(y) < 1e-2 ? y / 3.0 - y * y * y / 45.0 : 1.0 / std::tanh(y) - 1.0 / y;
  return 0.5 + 0.5 * lang;
}

int output_rows(const Mlp& dec, Likelihood lik) {
  return lik == Likelihood::gaussian ? dec.output_dim() : vae_data_dim(dec, lik);
}

}  // namespace

Likelihood parse_likelihood(const std::string& name) {
  if (name == "gaussian") return Likelihood::gaussian;
  if (name == "bernoulli") return Likelihood::bernoulli;
  if (name == "continuous_bernoulli") return Likelihood::continuous_bernoulli;
  throw std::invalid_argument("unknown likelihood '" + name +
                              "' (gaussian, bernoulli or continuous_bernoulli)");
}

int vae_data_dim(const Mlp& dec, Likelihood lik) {
  return lik == Likelihood::gaussian ? dec.output_dim() / 2 : dec.output_dim();
}

void check_vae(const Mlp& dec, const VaeSpec& spec) {
  // An odd width would leave the last output row outside the [2d][width] tile.
  if (spec.likelihood == Likelihood::gaussian && dec.output_dim() % 2)
    throw std::invalid_argument("a Gaussian decoder's output must be [mean | log-variance]");
  // The Mlp also accepts a normalisation of its input's length; a decoder's maps its output.
  if (spec.likelihood == Likelihood::gaussian && dec.shift() &&
      dec.norm_size() != size_t(dec.output_dim() / 2))
    throw std::invalid_argument("a decoder's normalisation must have the data's length d");
  // Bernoulli-type outputs are values in [0, 1] (pixels) as they are; a shift and scale would
  // map them elsewhere.
  if (spec.likelihood != Likelihood::gaussian && (dec.shift() || dec.scale()))
    throw std::invalid_argument("a (continuous) Bernoulli decoder takes no normalisation");
  const size_t K = spec.weights.size(), k = size_t(dec.input_dim());
  if (spec.means.size() != K * k || spec.chol.size() != K * k * k)
    throw std::invalid_argument(
        "the prior's means must be [K][latent_dim] and its Cholesky factors "
        "[K][latent_dim][latent_dim]");
}

RunBytes vae_sample_bytes(const Mlp& dec, int64_t n, const RunOptions& opt, Likelihood lik,
                          bool noise, int64_t components) {
  const int tile = tile_chains(opt);
  const uint64_t width = uint64_t(widest_tile(n, tile));
  const int d = vae_data_dim(dec, lik);
  uint64_t per_tile = dec.workspace_bytes(int(width));
  for (int rows : {dec.input_dim(), output_rows(dec, lik)})  // zin, out
    per_tile = sat_add(per_tile, block_bytes(uint64_t(rows) * width, sizeof(float)));
  if (noise && lik == Likelihood::gaussian)  // e
    per_tile = sat_add(per_tile, block_bytes(uint64_t(d) * width, sizeof(float)));
  else if (noise)  // one chain's uniforms
    per_tile = sat_add(per_tile, block_bytes(uint64_t(d), sizeof(double)));
  RunBytes b;
  b.levels = block_bytes(uint64_t(std::max<int64_t>(components, 0)), sizeof(double));
  b.tiles = sat_mul(uint64_t(team_size(opt.threads, (n + tile - 1) / tile)), per_tile);
  return b;
}

RunResult vae_sample(const Mlp& dec, int64_t n, float* x, const RunOptions& opt,
                     const VaeSpec& spec) {
  check_vae(dec, spec);
  const Likelihood lik = spec.likelihood;
  const int k = dec.input_dim();
  const int d = vae_data_dim(dec, lik);
  const int rows = output_rows(dec, lik);
  const int tile = tile_chains(opt);
  const int64_t ntiles = (n + tile - 1) / tile;
  const float* shift = dec.shift();
  const float* scale = dec.scale();
  const size_t K = spec.weights.size();
  std::vector<double> cum(K);  // the mixture's running sums, in one fixed order
  double sum = 0;
  for (size_t c = 0; c < K; ++c) cum[c] = sum += double(spec.weights[c]);
  RunState st;
  st.total = double(n);
  for_tiles(ntiles, opt, st, [&](int64_t ti, bool on_caller) {
    const int64_t j0 = ti * tile;
    const uint64_t chain0 = opt.chain_offset + uint64_t(j0);
    const int w = int(std::min<int64_t>(tile, n - j0));
    const int width = tile_width(w);
    std::vector<float> zin(size_t(k) * width, 0.f), out(size_t(rows) * width), e;
    std::vector<double> u;
    if (spec.noise && lik == Likelihood::gaussian)
      e.assign(size_t(d) * width, 0.f);
    else if (spec.noise)
      u.assign(size_t(d), 0.0);
    auto ws = dec.workspace(width);
    tile_normals(opt.seed, chain0, w, kLatentStep, k, zin.data(), width);
    if (K > 0)
      for (int c = 0; c < w; ++c) {
        double pick;
        chain_uniforms(opt.seed, chain0 + uint64_t(c), kComponentStep, 1, &pick);
        const double t = pick * sum;
        size_t m = 0;
        while (m + 1 < K && !(t < cum[m])) ++m;
        const float* mu = spec.means.data() + m * size_t(k);
        const float* L = spec.chol.data() + m * size_t(k) * size_t(k);
        // z = mu + L e in place: row i reads e_0..e_i, so going up from the last row leaves
        // the e_j still to be read untouched.
        for (int i = k - 1; i >= 0; --i) {
          double acc = mu[i];
          for (int j = 0; j <= i; ++j)
            acc += double(L[size_t(i) * k + j]) * double(zin[size_t(j) * width + c]);
          zin[size_t(i) * width + c] = float(acc);
        }
      }
    if (!e.empty()) tile_normals(opt.seed, chain0, w, kDecoderStep, d, e.data(), width);
    dec.forward(zin.data(), width, out.data(), *ws);
    for (int c = 0; c < w; ++c) {
      float* xr = x + (j0 + c) * d;
      if (lik == Likelihood::gaussian) {
        for (int i = 0; i < d; ++i) {
          const float mu = out[size_t(i) * width + c];
          const float lv = out[size_t(d + i) * width + c];
          const float v = e.empty() ? mu : mu + std::exp(0.5f * lv) * e[size_t(i) * width + c];
          xr[i] = (scale ? scale[i] * v : v) + (shift ? shift[i] : 0.f);
        }
        continue;
      }
      if (!u.empty()) chain_uniforms(opt.seed, chain0 + uint64_t(c), kDecoderStep, d, u.data());
      for (int i = 0; i < d; ++i) {
        const double l = out[size_t(i) * width + c];
        double v;
        if (lik == Likelihood::bernoulli)
          // A NaN logit stays NaN (reported as diverged) rather than becoming a 0.
          v = std::isnan(l) ? l : u.empty() ? sigmoid(l) : u[size_t(i)] < sigmoid(l) ? 1.0 : 0.0;
        else
          v = u.empty() ? cb_mean(l) : cb_inverse_cdf(l, u[size_t(i)]);
        xr[i] = float(v);  // no normalisation here: check_vae refuses one
      }
    }
    st.done.fetch_add(w, std::memory_order_relaxed);
    maybe_poll(opt, st, on_caller);
  });
  return finish(st, n, d, x);
}

}  // namespace gensamp
