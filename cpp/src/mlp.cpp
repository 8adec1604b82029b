#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "activations.hpp"
#include "gemm.hpp"
#include "gensamp/model.hpp"

namespace gensamp {

Act parse_act(const std::string& n) {
  if (n == "identity") return Act::identity;
  if (n == "relu") return Act::relu;
  if (n == "leaky_relu") return Act::leaky_relu;
  if (n == "elu") return Act::elu;
  if (n == "silu") return Act::silu;
  if (n == "softplus") return Act::softplus;
  if (n == "tanh") return Act::tanh;
  if (n == "sigmoid") return Act::sigmoid;
  if (n == "gelu") return Act::gelu;
  if (n == "gelu_tanh") return Act::gelu_tanh;
  throw std::invalid_argument("unknown activation '" + n + "'");
}

SigmaInput parse_sigma_input(const std::string& n) {
  if (n == "none") return SigmaInput::none;
  if (n == "sigma") return SigmaInput::sigma;
  if (n == "log_sigma") return SigmaInput::log_sigma;
  throw std::invalid_argument("unknown sigma_input '" + n +
                              "' (expected none, sigma or log_sigma)");
}

namespace {

struct MlpWs final : Workspace {
  std::vector<float> a, b;
};

struct MlpLevels final : Levels {
  std::vector<std::vector<float>> bias0;  // padded first-layer bias, sigma column folded in
  std::vector<float> out_scale;           // 1/sigma when divide_by_sigma, else 1
};

}  // namespace

Mlp::Mlp(MlpSpec spec) : spec_(std::move(spec)) {
  const auto& L = spec_.layers;
  if (L.empty()) throw std::invalid_argument("network has no layers");
  if (spec_.acts.size() + 1 != L.size())
    throw std::invalid_argument("need exactly one activation per hidden layer");
  for (size_t i = 0; i < L.size(); ++i) {
    if (L[i].in < 1 || L[i].out < 1) throw std::invalid_argument("layer with a zero dimension");
    if (L[i].W.size() != size_t(L[i].in) * L[i].out || L[i].b.size() != size_t(L[i].out))
      throw std::invalid_argument("layer " + std::to_string(i) + ": W/b sizes do not match");
    if (i > 0 && L[i].in != L[i - 1].out)
      throw std::invalid_argument("layer " + std::to_string(i) + " input does not match layer " +
                                  std::to_string(i - 1) + " output");
    max_width_ = std::max(max_width_, L[i].out);
  }
  const int extra = spec_.sigma_input == SigmaInput::none ? 0 : 1;
  d_ = L.front().in - extra;
  if (d_ < 1) throw std::invalid_argument("first layer has no data inputs");
  max_width_ = std::max(max_width_, L.front().in);
  for (const auto* v : {&spec_.shift, &spec_.scale})
    if (!v->empty() && v->size() != size_t(d_) && v->size() != size_t(L.back().out / 2))
      throw std::invalid_argument("normalisation has the wrong length");
  if (extra) {
    // Drop the sigma column from W0: it only ever multiplies a per-level constant, which
    // prepare() folds into the bias.
    Dense& f = spec_.layers.front();
    std::vector<float> w(size_t(f.out) * d_);
    for (int o = 0; o < f.out; ++o)
      for (int k = 0; k < d_; ++k) w[size_t(o) * d_ + k] = f.W[size_t(o) * f.in + k];
    sigma_col_.resize(f.out);
    for (int o = 0; o < f.out; ++o) sigma_col_[o] = f.W[size_t(o) * f.in + d_];
    w0_data_ = std::move(w);
  }
  auto transpose = [](const std::vector<float>& W, int out, int in, int ld_in) {
    const int pad = (out + 15) / 16 * 16;
    std::vector<float> t(size_t(in) * pad, 0.f);
    for (int o = 0; o < out; ++o)
      for (int k = 0; k < in; ++k) t[size_t(k) * pad + o] = W[size_t(o) * ld_in + k];
    return t;
  };
  auto panels = [](const std::vector<float>& W, int out, int in, int ld_in) {
    const int np = (out + 63) / 64;
    std::vector<float> t(size_t(np) * in * 64, 0.f);
    for (int o = 0; o < out; ++o)
      for (int k = 0; k < in; ++k)
        t[(size_t(o / 64) * in + k) * 64 + o % 64] = W[size_t(o) * ld_in + k];
    return t;
  };
  for (const auto& l : L) {
    wt_.push_back(transpose(l.W, l.out, l.in, l.in));
    wp_.push_back(panels(l.W, l.out, l.in, l.in));
    std::vector<float> b(size_t((l.out + 63) / 64 * 64), 0.f);
    std::copy(l.b.begin(), l.b.end(), b.begin());
    b_pad_.push_back(std::move(b));
  }
  if (extra) {
    wt0_data_ = transpose(L.front().W, L.front().out, d_, L.front().in);
    wp0_data_ = panels(L.front().W, L.front().out, d_, L.front().in);
  }
}

std::unique_ptr<Levels> Mlp::prepare(const std::vector<double>& sigmas) const {
  const Dense& f = spec_.layers.front();
  auto lv = std::make_unique<MlpLevels>();
  auto& level_bias0_ = lv->bias0;
  auto& level_out_scale_ = lv->out_scale;
  level_bias0_.assign(sigmas.size(), b_pad_.front());
  level_out_scale_.assign(sigmas.size(), 1.f);
  for (size_t l = 0; l < sigmas.size(); ++l) {
    const double s = sigmas[l];
    if (spec_.sigma_input != SigmaInput::none) {
      const float feat = float(spec_.sigma_input == SigmaInput::sigma ? s : std::log(s));
      for (int o = 0; o < f.out; ++o) level_bias0_[l][o] = std::fma(sigma_col_[o], feat, f.b[o]);
    }
    if (spec_.divide_by_sigma) level_out_scale_[l] = float(1.0 / s);
  }
  return lv;
}

std::unique_ptr<Workspace> Mlp::workspace(int width) const {
  auto ws = std::make_unique<MlpWs>();
  ws->a.assign(size_t(max_width_) * width, 0.f);
  ws->b.assign(size_t(max_width_) * width, 0.f);
  return ws;
}

void Mlp::forward_from(const float* x, int in_rows, const float* bias0, int width, float* out,
                       Workspace& wsb) const {
  auto& ws = static_cast<MlpWs&>(wsb);
  const auto& L = spec_.layers;
  const bool full0 = in_rows == L.front().in;
  const float* cur = x;
  float* bufs[2] = {ws.a.data(), ws.b.data()};
  for (size_t i = 0; i < L.size(); ++i) {
    const bool last = i + 1 == L.size();
    float* dst = last ? out : bufs[i % 2];
    LayerRef ref{L[i].W.data(), wt_[i].data(), b_pad_[i].data(),
                 L[i].out,      L[i].in,       (L[i].out + 15) / 16 * 16,
                 wp_[i].data()};
    if (i == 0) {
      ref.b = bias0;
      ref.in = in_rows;
      if (!full0) {
        ref.W = w0_data_.data();
        ref.WT = wt0_data_.data();
        ref.WP = wp0_data_.data();
      }
    }
    const bool fuse = !last && spec_.acts[i] == Act::relu;
    layer_forward(ref, cur, dst, width, fuse);
    if (!last && !fuse) apply_act(spec_.acts[i], dst, long(L[i].out) * width);
    cur = dst;
  }
}

void Mlp::forward(const float* x, int width, float* out, Workspace& ws) const {
  forward_from(x, spec_.layers.front().in, b_pad_.front().data(), width, out, ws);
}

void Mlp::score(const float* x, int width, const Levels& lvb, int level, float* out,
                Workspace& ws) const {
  const auto& lv = static_cast<const MlpLevels&>(lvb);
  forward_from(x, d_, lv.bias0[level].data(), width, out, ws);
  const float k = lv.out_scale[level];
  if (k != 1.f)
    for (long i = 0, m = long(d_) * width; i < m; ++i) out[i] *= k;
}

}  // namespace gensamp
