#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "activations.hpp"
#include "cpu_features.hpp"
#include "gemm.hpp"
#include "gensamp/model.hpp"
#include "stop_check.hpp"

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
  // [levels][stride]: the padded first-layer bias with the sigma column folded in. Null for a
  // network without a sigma input, whose bias is the same at every level. Not a std::vector:
  // zero-filling gigabytes up front would take seconds no stop check could interrupt.
  std::unique_ptr<float[]> bias0;
  size_t stride = 0;
  std::vector<float> out_scale;  // 1/sigma per level when divide_by_sigma, else empty
};

int pad16(int v) { return (v + 15) / 16 * 16; }
int pad64(int v) { return (v + 63) / 64 * 64; }

// The narrow-tile kernel reads 64-output panels at AVX-512 and the 16-padded transpose below
// that; building only the one it reads halves (or better) the packed copies of narrow layers.
bool narrow_reads_panels() { return narrow_kernel_level() == SimdLevel::avx512; }

// The packed copy of an [out][in] matrix that the narrow kernel reads, in floats.
uint64_t packed_floats(int out, int in, bool panels) {
  return panels ? sat_mul(uint64_t(pad64(out)), uint64_t(in))
                : sat_mul(uint64_t(pad16(out)), uint64_t(in));
}

}  // namespace

uint64_t Mlp::bytes(const MlpSpec& spec) {
  const auto& L = spec.layers;
  const bool panels = narrow_reads_panels();
  const bool extra = spec.sigma_input != SigmaInput::none;
  // The spec the model keeps (built by the caller with exact capacities).
  uint64_t b = block_bytes(L.size(), sizeof(Dense));
  for (const Dense& l : L)
    b = sat_add(sat_add(b, block_bytes(sat_mul(uint64_t(l.in), uint64_t(l.out)), sizeof(float))),
                block_bytes(uint64_t(l.out), sizeof(float)));
  b = sat_add(b, block_bytes(spec.acts.size(), sizeof(Act)));
  b = sat_add(b, block_bytes(spec.shift.size(), sizeof(float)));
  b = sat_add(b, block_bytes(spec.scale.size(), sizeof(float)));
  // What the constructor adds.
  const uint64_t outer = block_bytes(L.size(), sizeof(std::vector<float>));
  b = sat_add(b, sat_add(outer, outer));  // b_pad_, and wt_ or wp_
  for (const Dense& l : L) {
    b = sat_add(b, block_bytes(packed_floats(l.out, l.in, panels), sizeof(float)));
    b = sat_add(b, block_bytes(uint64_t(pad64(l.out)), sizeof(float)));
  }
  if (extra && !L.empty()) {
    const Dense& f = L.front();
    const int d = f.in - 1;
    b = sat_add(b, block_bytes(sat_mul(uint64_t(f.out), uint64_t(d)), sizeof(float)));  // w0
    b = sat_add(b, block_bytes(uint64_t(f.out), sizeof(float)));  // sigma column
    b = sat_add(b, block_bytes(packed_floats(f.out, d, panels), sizeof(float)));
  }
  return b;
}

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
    const int pad = pad16(out);
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
  const bool use_panels = narrow_reads_panels();
  auto& packed = use_panels ? wp_ : wt_;
  packed.reserve(L.size());
  b_pad_.reserve(L.size());
  for (const auto& l : L) {
    packed.push_back(use_panels ? panels(l.W, l.out, l.in, l.in)
                                : transpose(l.W, l.out, l.in, l.in));
    std::vector<float> b(size_t(pad64(l.out)), 0.f);
    std::copy(l.b.begin(), l.b.end(), b.begin());
    b_pad_.push_back(std::move(b));
  }
  if (extra) {
    const Dense& f = L.front();
    if (use_panels)
      wp0_data_ = panels(f.W, f.out, d_, f.in);
    else
      wt0_data_ = transpose(f.W, f.out, d_, f.in);
  }
}

std::unique_ptr<Levels> Mlp::prepare(const std::vector<double>& sigmas, const StopFn& stop) const {
  const Dense& f = spec_.layers.front();
  const size_t nlev = sigmas.size();
  auto lv = std::make_unique<MlpLevels>();
  StopCheck stopped(stop);
  if (spec_.sigma_input != SigmaInput::none) {
    const std::vector<float>& b0 = b_pad_.front();
    lv->stride = b0.size();
    lv->bias0.reset(new float[nlev * lv->stride]);
    for (size_t l = 0; l < nlev; ++l) {
      if (stopped(lv->stride)) return nullptr;
      const double s = sigmas[l];
      float* dst = lv->bias0.get() + l * lv->stride;
      std::copy(b0.begin(), b0.end(), dst);
      const float feat = float(spec_.sigma_input == SigmaInput::sigma ? s : std::log(s));
      for (int o = 0; o < f.out; ++o) dst[o] = std::fma(sigma_col_[o], feat, f.b[o]);
    }
  }
  if (spec_.divide_by_sigma) {
    lv->out_scale.resize(nlev);
    for (size_t l = 0; l < nlev; ++l) {
      if (stopped(1)) return nullptr;
      lv->out_scale[l] = float(1.0 / sigmas[l]);
    }
  }
  return lv;
}

uint64_t Mlp::levels_bytes(uint64_t levels) const {
  uint64_t b = block_bytes(1, sizeof(MlpLevels));
  if (spec_.sigma_input != SigmaInput::none)
    b = sat_add(b, block_bytes(sat_mul(levels, b_pad_.front().size()), sizeof(float)));
  if (spec_.divide_by_sigma) b = sat_add(b, block_bytes(levels, sizeof(float)));
  return b;
}

std::unique_ptr<Workspace> Mlp::workspace(int width) const {
  auto ws = std::make_unique<MlpWs>();
  ws->a.assign(size_t(max_width_) * width, 0.f);
  ws->b.assign(size_t(max_width_) * width, 0.f);
  return ws;
}

uint64_t Mlp::workspace_bytes(int width) const {
  const uint64_t buf = block_bytes(sat_mul(uint64_t(max_width_), uint64_t(width)), sizeof(float));
  return sat_add(block_bytes(1, sizeof(MlpWs)), sat_add(buf, buf));
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
    const float* wt = wt_.empty() ? nullptr : wt_[i].data();  // null: the narrow kernel
    const float* wp = wp_.empty() ? nullptr : wp_[i].data();  // reads the other one
    LayerRef ref{L[i].W.data(), wt, b_pad_[i].data(), L[i].out, L[i].in, pad16(L[i].out), wp};
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
  const float* bias0 =
      lv.bias0 ? lv.bias0.get() + size_t(level) * lv.stride : b_pad_.front().data();
  forward_from(x, d_, bias0, width, out, ws);
  const float k = lv.out_scale.empty() ? 1.f : lv.out_scale[size_t(level)];
  if (k != 1.f)
    for (long i = 0, m = long(d_) * width; i < m; ++i) out[i] *= k;
}

}  // namespace gensamp

namespace gensamp {

namespace {

struct MlpDivWs final : Workspace {
  std::vector<float> a, b;    // the chains' activations, as in MlpWs
  std::vector<float> g;       // act'(h) of every hidden layer, [sum of hidden widths][width]
  std::vector<float> ta, tb;  // tangents, [max_width][directions * width]
  std::vector<float> zero;    // the tangents' bias
};

int directions(int d, int probes) { return probes == 0 ? d : probes; }

uint64_t hidden_rows(const std::vector<Dense>& L) {
  uint64_t rows = 0;
  for (size_t i = 0; i + 1 < L.size(); ++i) rows += uint64_t(L[i].out);
  return rows;
}

}  // namespace

std::unique_ptr<Workspace> Mlp::div_workspace(int width, int probes) const {
  auto ws = std::make_unique<MlpDivWs>();
  const size_t cols = size_t(directions(d_, probes)) * size_t(width);
  ws->a.assign(size_t(max_width_) * width, 0.f);
  ws->b.assign(size_t(max_width_) * width, 0.f);
  ws->g.assign(size_t(hidden_rows(spec_.layers)) * width, 0.f);
  ws->ta.assign(size_t(max_width_) * cols, 0.f);
  ws->tb.assign(size_t(max_width_) * cols, 0.f);
  ws->zero.assign(size_t(pad64(max_width_)), 0.f);
  return ws;
}

uint64_t Mlp::div_workspace_bytes(int width, int probes) const {
  const uint64_t cols = sat_mul(uint64_t(directions(d_, probes)), uint64_t(width));
  const uint64_t state = block_bytes(sat_mul(uint64_t(max_width_), uint64_t(width)), 4);
  const uint64_t tangents = block_bytes(sat_mul(uint64_t(max_width_), cols), 4);
  uint64_t b = sat_add(block_bytes(1, sizeof(MlpDivWs)), sat_add(state, state));
  b = sat_add(b, block_bytes(sat_mul(hidden_rows(spec_.layers), uint64_t(width)), 4));
  b = sat_add(b, sat_add(tangents, tangents));
  return sat_add(b, block_bytes(uint64_t(pad64(max_width_)), 4));
}

// The chains go forward as in forward_from(), keeping act'(h) of every hidden layer; then the
// tangents t_p (unit vectors for the exact trace, the given v_p otherwise) go forward as
// t <- act'(h) * (W t), layer by layer, to the output's J t_p. Every tangent column is one
// chain's direction, so a column's bits depend on nothing but that chain and direction.
void Mlp::score_div(const float* x, int width, const Levels& lvb, int level, const float* v,
                    int probes, float* out, double* div, Workspace& wsb) const {
  auto& ws = static_cast<MlpDivWs&>(wsb);
  const auto& lv = static_cast<const MlpLevels&>(lvb);
  const auto& L = spec_.layers;
  const bool conditioned = spec_.sigma_input != SigmaInput::none;
  auto ref_of = [&](size_t i, const float* bias) {
    LayerRef r{L[i].W.data(),   wt_.empty() ? nullptr : wt_[i].data(), bias, L[i].out, L[i].in,
               pad16(L[i].out), wp_.empty() ? nullptr : wp_[i].data()};
    if (i == 0 && conditioned) {
      r.W = w0_data_.data();
      r.WT = wt0_data_.data();
      r.WP = wp0_data_.data();
      r.in = d_;
    }
    return r;
  };

  // Chains.
  const float* bias0 =
      lv.bias0 ? lv.bias0.get() + size_t(level) * lv.stride : b_pad_.front().data();
  const float* cur = x;
  float* bufs[2] = {ws.a.data(), ws.b.data()};
  float* g = ws.g.data();
  for (size_t i = 0; i < L.size(); ++i) {
    const bool last = i + 1 == L.size();
    float* dst = last ? out : bufs[i % 2];
    layer_forward(ref_of(i, i == 0 ? bias0 : b_pad_[i].data()), cur, dst, width, false);
    if (!last) {
      const long m = long(L[i].out) * width;
      apply_act_grad(spec_.acts[i], dst, g, m);
      apply_act(spec_.acts[i], dst, m);
      g += m;
    }
    cur = dst;
  }
  const float k = lv.out_scale.empty() ? 1.f : lv.out_scale[size_t(level)];
  if (k != 1.f)
    for (long i = 0, m = long(d_) * width; i < m; ++i) out[i] *= k;

  // Tangents.
  const int P = directions(d_, probes);
  const int cols = P * width;
  float* t = ws.ta.data();
  float* spare = ws.tb.data();
  g = ws.g.data();
  for (size_t i = 0; i < L.size(); ++i) {
    const int rows = L[i].out;
    if (i == 0 && probes == 0) {
      // W times the unit vector e_p is W's column p (what the product would give, bit for bit)
      const float* W0 = conditioned ? w0_data_.data() : L[0].W.data();
      for (int o = 0; o < rows; ++o)
        for (int p = 0; p < P; ++p)
          std::fill_n(t + size_t(o) * cols + size_t(p) * width, width, W0[size_t(o) * d_ + p]);
    } else {
      layer_forward(ref_of(i, ws.zero.data()), i == 0 ? v : spare, t, cols, false);
    }
    if (i + 1 < L.size()) {
      for (int o = 0; o < rows; ++o) {
        const float* go = g + size_t(o) * width;
        for (int p = 0; p < P; ++p) {
          float* to = t + size_t(o) * cols + size_t(p) * width;
          for (int c = 0; c < width; ++c) to[c] *= go[c];
        }
      }
      g += size_t(rows) * width;
      std::swap(t, spare);
    }
  }
  // t: J t_p for every direction, [d][cols]. The exact trace takes J's diagonal.
  for (int c = 0; c < width; ++c) {
    double acc = 0;
    for (int p = 0; p < P; ++p) {
      if (probes == 0) {
        acc += double(t[size_t(p) * cols + size_t(p) * width + c]);
      } else {
        for (int i = 0; i < d_; ++i)
          acc += double(v[size_t(i) * cols + size_t(p) * width + c]) *
                 double(t[size_t(i) * cols + size_t(p) * width + c]);
      }
    }
    div[c] = double(k) * (probes == 0 ? acc : acc / probes);
  }
}

}  // namespace gensamp
