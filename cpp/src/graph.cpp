// GraphNet: a score network given as a graph of nodes (weights format 2).
//
// Construction splits the graph in two. Level-kind nodes (no dependence on x: sigma, constants,
// sigma embeddings, EDM's c_in/c_out/c_skip) are evaluated in double once per noise level by
// prepare(), which stores only what the chain steps read. Chain-kind nodes become a flat list of
// steps over feature-major tiles; their values live in a small pool of buffers reused as soon as
// a value's last reader has run, so a deep residual network touches as little memory as a plain
// MLP. A Linear layer whose input concatenates chain and level values (x next to an embedding of
// sigma) multiplies only the chain columns per step; the level columns' product is folded into
// a per-level bias, as Mlp does for its sigma column.
//
// Every step works column by column (one column = one chain), and the matrix products use the
// same kernels as Mlp, so a chain's bits do not depend on the tile width or the thread count.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "activations.hpp"
#include "gemm.hpp"
#include "gensamp/model.hpp"
#include "stop_check.hpp"

namespace gensamp {

namespace {

constexpr size_t kMaxNodes = 100000;
constexpr int kMaxWidth = 1 << 20;

enum Kind { kLinear, kCat, kAct, kUnary, kBinary, kLayerNorm };

int pad16(int v) { return (v + 15) / 16 * 16; }
int pad64(int v) { return (v + 63) / 64 * 64; }

int arity(Op op) {  // -1: one or more
  switch (op) {
    case Op::x:
    case Op::sigma:
    case Op::constant:
    case Op::scalar: return 0;
    case Op::add:
    case Op::sub:
    case Op::mul:
    case Op::div: return 2;
    case Op::cat: return -1;
    default: return 1;
  }
}

bool is_binary(Op op) { return op == Op::add || op == Op::sub || op == Op::mul || op == Op::div; }

const char* op_name(Op op) {
  switch (op) {
    case Op::x: return "x";
    case Op::sigma: return "sigma";
    case Op::constant: return "const";
    case Op::scalar: return "scalar";
    case Op::linear: return "linear";
    case Op::act: return "act";
    case Op::sin: return "sin";
    case Op::cos: return "cos";
    case Op::exp: return "exp";
    case Op::log: return "log";
    case Op::sqrt: return "sqrt";
    case Op::neg: return "neg";
    case Op::pow: return "pow";
    case Op::add: return "add";
    case Op::sub: return "sub";
    case Op::mul: return "mul";
    case Op::div: return "div";
    case Op::cat: return "cat";
    case Op::slice: return "slice";
    case Op::layer_norm: return "layer_norm";
  }
  return "?";
}

[[noreturn]] void bad(size_t i, Op op, const std::string& why) {
  throw std::invalid_argument("graph node " + std::to_string(i) + " (" + op_name(op) + "): " + why);
}

bool all_finite(const std::vector<float>& v) {
  for (float f : v)
    if (!std::isfinite(f)) return false;
  return true;
}

// The activations in double, for level values (torch's default parameters, as apply_act).
double act_d(Act a, double v) {
  switch (a) {
    case Act::identity: return v;
    case Act::relu: return v > 0 ? v : 0.0;
    case Act::leaky_relu: return v > 0 ? v : 0.01 * v;
    case Act::elu: return v > 0 ? v : std::expm1(v);
    case Act::silu: return v / (1.0 + std::exp(-v));
    case Act::softplus: return v > 20 ? v : std::log1p(std::exp(v));
    case Act::tanh: return std::tanh(v);
    case Act::sigmoid: return 1.0 / (1.0 + std::exp(-v));
    case Act::gelu: return 0.5 * v * (1.0 + std::erf(v * 0.70710678118654752));
    case Act::gelu_tanh:
      return 0.5 * v * (1.0 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
  }
  return v;
}

template <class T>
T unary(Op op, T v, double p) {
  switch (op) {
    case Op::sin: return std::sin(v);
    case Op::cos: return std::cos(v);
    case Op::exp: return std::exp(v);
    case Op::log: return std::log(v);
    case Op::sqrt: return std::sqrt(v);
    case Op::neg: return -v;
    case Op::pow: return p == 2 ? v * v : T(std::pow(v, T(p)));
    default: return v;
  }
}

template <class T>
T binary(Op op, T a, T b) {
  switch (op) {
    case Op::add: return a + b;
    case Op::sub: return a - b;
    case Op::mul: return a * b;
    default: return a / b;
  }
}

// y = a op b over one row of a tile; a or b a per-level scalar. The op is chosen outside the
// loops so that each loop vectorises.
inline float val(const float* p, size_t c) { return p[c]; }
inline float val(float v, size_t) { return v; }
template <class A, class B>
void binary_rows(Op op, A a, B b, float* y, size_t w) {
  switch (op) {
    case Op::add:
      for (size_t c = 0; c < w; ++c) y[c] = val(a, c) + val(b, c);
      return;
    case Op::sub:
      for (size_t c = 0; c < w; ++c) y[c] = val(a, c) - val(b, c);
      return;
    case Op::mul:
      for (size_t c = 0; c < w; ++c) y[c] = val(a, c) * val(b, c);
      return;
    default:
      for (size_t c = 0; c < w; ++c) y[c] = val(a, c) / val(b, c);
      return;
  }
}

struct GraphWs final : Workspace {
  std::vector<float> pool;
};

struct GraphLevels final : Levels {
  // [levels][stride]. Not a std::vector: zero-filling it up front could take seconds that no
  // stop check interrupts.
  std::unique_ptr<float[]> table;
};

}  // namespace

Op parse_op(const std::string& n) {
  static const Op all[] = {Op::x,    Op::sigma, Op::constant, Op::scalar, Op::linear,
                           Op::act,  Op::sin,   Op::cos,      Op::exp,    Op::log,
                           Op::sqrt, Op::neg,   Op::pow,      Op::add,    Op::sub,
                           Op::mul,  Op::div,   Op::cat,      Op::slice,  Op::layer_norm};
  for (Op op : all)
    if (n == op_name(op)) return op;
  throw std::invalid_argument("unknown graph op '" + n + "'");
}

GraphNet::GraphNet(GraphSpec spec) : spec_(std::move(spec)) {
  const auto& N = spec_.nodes;
  const int d = spec_.dim;
  if (d < 1) throw std::invalid_argument("graph: dim must be >= 1");
  if (N.empty() || N.size() > kMaxNodes)
    throw std::invalid_argument("graph: needs 1 to " + std::to_string(kMaxNodes) + " nodes");
  for (const auto* v : {&spec_.shift, &spec_.scale})
    if (!v->empty() && v->size() != size_t(d))
      throw std::invalid_argument("normalisation has the wrong length");

  // Shapes and kinds.
  width_.assign(N.size(), 0);
  chain_.assign(N.size(), 0);
  for (size_t i = 0; i < N.size(); ++i) {
    const GraphNode& n = N[i];
    const int ar = arity(n.op);
    if ((ar >= 0 && int(n.in.size()) != ar) || (ar < 0 && (n.in.empty() || n.in.size() > 4096)))
      bad(i, n.op, "wrong number of inputs");
    for (int j : n.in)
      if (j < 0 || size_t(j) >= i) bad(i, n.op, "input is not an earlier node");
    if (!all_finite(n.a) || !all_finite(n.b) || !std::isfinite(n.p))
      bad(i, n.op, "value is not finite");
    long w = 0;
    auto win = [&](int k) { return width_[size_t(n.in[size_t(k)])]; };
    switch (n.op) {
      case Op::x: w = d; break;
      case Op::sigma:
      case Op::scalar: w = 1; break;
      case Op::constant:
        if (n.a.empty() || !n.b.empty()) bad(i, n.op, "needs a non-empty value");
        w = long(n.a.size());
        break;
      case Op::linear:
        if (n.rows < 1 || n.cols != win(0) || n.a.size() != size_t(n.rows) * size_t(n.cols) ||
            n.b.size() != size_t(n.rows))
          bad(i, n.op, "W must be [out, width of its input] and b [out]");
        w = n.rows;
        break;
      case Op::slice:
        if (n.start < 0 || n.start >= n.stop || n.stop > win(0)) bad(i, n.op, "bad range");
        w = n.stop - n.start;
        break;
      case Op::layer_norm:
        if (n.a.size() != size_t(win(0)) || n.b.size() != size_t(win(0)) || !(n.p > 0))
          bad(i, n.op, "weight and bias must match its input's width, eps > 0");
        w = win(0);
        break;
      case Op::cat:
        for (size_t k = 0; k < n.in.size(); ++k) w += win(int(k));
        break;
      default:
        if (is_binary(n.op)) {
          const int a = win(0), b = win(1);
          if (a != b && a != 1 && b != 1) bad(i, n.op, "operand widths do not broadcast");
          w = std::max(a, b);
        } else {
          w = win(0);
        }
    }
    if (n.op != Op::linear && n.op != Op::constant && n.op != Op::layer_norm &&
        (!n.a.empty() || !n.b.empty()))
      bad(i, n.op, "takes no tensors");
    if (w < 1 || w > kMaxWidth) bad(i, n.op, "width out of range");
    width_[i] = int(w);
    chain_[i] = n.op == Op::x;
    for (int j : n.in) chain_[i] = chain_[i] || chain_[size_t(j)];
  }
  const size_t last = N.size() - 1;
  if (width_[last] != d) throw std::invalid_argument("graph: the output must have width dim");
  if (!chain_[last]) throw std::invalid_argument("graph: the output does not depend on x");

  // Which nodes the output needs, and who reads each chain node.
  std::vector<char> needed(N.size(), 0);
  needed[last] = 1;
  for (size_t i = N.size(); i-- > 0;)
    if (needed[i])
      for (int j : N[i].in) needed[size_t(j)] = 1;
  std::vector<char> materialise(N.size(), 0);  // a cat read by something other than a linear
  for (size_t i = 0; i < N.size(); ++i)
    if (needed[i] && chain_[i])
      for (int j : N[i].in)
        if (N[size_t(j)].op == Op::cat && N[i].op != Op::linear) materialise[size_t(j)] = 1;
  if (N[last].op == Op::cat) materialise[last] = 1;

  // Where each chain value lives: buffer owner ("root") and the number of reads pending on it.
  std::vector<int> root(N.size(), -1);
  for (size_t i = 0; i < N.size(); ++i)
    root[i] = N[i].op == Op::slice && chain_[i] ? root[size_t(N[i].in[0])] : int(i);
  // The chain values a step for node i reads.
  auto reads = [&](size_t i) {
    std::vector<int> r;
    const GraphNode& n = N[i];
    if (n.op == Op::slice || (n.op == Op::cat && !materialise[i])) return r;
    for (int j : n.in) {
      if (!chain_[size_t(j)]) continue;
      if (n.op == Op::linear && N[size_t(j)].op == Op::cat) {
        for (int k : N[size_t(j)].in)
          if (chain_[size_t(k)]) r.push_back(k);
      } else {
        r.push_back(j);
      }
    }
    return r;
  };
  std::vector<int> pending(N.size(), 0);
  for (size_t i = 0; i < N.size(); ++i)
    if (needed[i] && chain_[i])
      for (int j : reads(i)) ++pending[size_t(root[size_t(j)])];
  ++pending[size_t(root[last])];  // the output is read at the end

  level_off_.assign(N.size(), -1);
  auto level_operand = [&](int j) {
    if (level_off_[size_t(j)] < 0) {
      level_off_[size_t(j)] = int(stride_);
      stride_ += size_t(width_[size_t(j)]);
    }
    Operand o;
    o.chain = false;
    o.row = level_off_[size_t(j)];
    o.width = width_[size_t(j)];
    return o;
  };

  std::vector<Operand> loc(N.size());
  std::vector<int> free_bufs;
  std::vector<int> buf_of_root(N.size(), -1);
  auto alloc = [&](int rows) {
    buf_rows_ = std::max(buf_rows_, rows);
    if (!free_bufs.empty()) {
      const int b = free_bufs.back();
      free_bufs.pop_back();
      return b;
    }
    return n_bufs_++;
  };
  auto release = [&](int j) {
    const int r = root[size_t(j)];
    if (--pending[size_t(r)] == 0 && buf_of_root[size_t(r)] >= 0)
      free_bufs.push_back(buf_of_root[size_t(r)]);
  };
  auto chain_operand = [&](int j) { return loc[size_t(j)]; };

  for (size_t i = 0; i < N.size(); ++i) {
    if (!needed[i] || !chain_[i]) continue;
    const GraphNode& n = N[i];
    if (n.op == Op::x) {
      loc[i] = Operand{true, -1, 0, d};
      continue;
    }
    if (n.op == Op::slice) {
      loc[i] = loc[size_t(n.in[0])];
      loc[i].row += n.start;
      loc[i].width = width_[i];
      continue;
    }
    if (n.op == Op::cat && !materialise[i]) continue;
    Step s;
    s.node = int(i);
    int gather_buf = -1;
    if (n.op == Op::linear) {
      s.kind = kLinear;
      const int in = n.in[0];
      std::vector<int> chain_cols, level_cols;
      std::vector<int> chain_parts;
      if (N[size_t(in)].op == Op::cat) {
        int col = 0;
        for (int k : N[size_t(in)].in) {
          auto& dst = chain_[size_t(k)] ? chain_cols : level_cols;
          for (int c = 0; c < width_[size_t(k)]; ++c) dst.push_back(col + c);
          if (chain_[size_t(k)]) chain_parts.push_back(k);
          col += width_[size_t(k)];
        }
      } else {
        for (int c = 0; c < width_[size_t(in)]; ++c) chain_cols.push_back(c);
        chain_parts.push_back(in);
      }
      if (chain_parts.size() == 1) {
        s.src.push_back(chain_operand(chain_parts[0]));
      } else {  // gather the chain parts into one contiguous input
        Step g;
        g.node = int(i);
        g.kind = kCat;
        gather_buf = alloc(int(chain_cols.size()));
        g.dst = Operand{true, gather_buf, 0, int(chain_cols.size())};
        for (int k : chain_parts) g.src.push_back(chain_operand(k));
        steps_.push_back(std::move(g));
        s.src.push_back(Operand{true, gather_buf, 0, int(chain_cols.size())});
      }
      Packed p;
      p.out = n.rows;
      p.in = int(chain_cols.size());
      p.W.resize(size_t(p.out) * size_t(p.in));
      for (int o = 0; o < p.out; ++o)
        for (int k = 0; k < p.in; ++k)
          p.W[size_t(o) * size_t(p.in) + size_t(k)] =
              n.a[size_t(o) * size_t(n.cols) + size_t(chain_cols[size_t(k)])];
      p.b.assign(size_t(pad64(p.out)), 0.f);
      std::copy(n.b.begin(), n.b.end(), p.b.begin());
      if (narrow_kernel_level() == SimdLevel::avx512) {
        const int np = (p.out + 63) / 64;
        p.WP.assign(size_t(np) * size_t(p.in) * 64, 0.f);
        for (int o = 0; o < p.out; ++o)
          for (int k = 0; k < p.in; ++k)
            p.WP[(size_t(o / 64) * size_t(p.in) + size_t(k)) * 64 + size_t(o % 64)] =
                p.W[size_t(o) * size_t(p.in) + size_t(k)];
      } else {
        const int pad = pad16(p.out);
        p.WT.assign(size_t(p.in) * size_t(pad), 0.f);
        for (int o = 0; o < p.out; ++o)
          for (int k = 0; k < p.in; ++k)
            p.WT[size_t(k) * size_t(pad) + size_t(o)] = p.W[size_t(o) * size_t(p.in) + size_t(k)];
      }
      s.packed = int(packed_.size());
      packed_.push_back(std::move(p));
      if (!level_cols.empty()) {
        s.level_bias = int(stride_);
        stride_ += size_t(pad64(n.rows));
        split_.push_back(SplitBias{int(i), s.level_bias, level_cols});
      }
    } else if ((n.op == Op::act || arity(n.op) == 1) && n.op != Op::layer_norm &&
               chain_[size_t(n.in[0])] && root[size_t(n.in[0])] == n.in[0] &&
               buf_of_root[size_t(n.in[0])] >= 0 && pending[size_t(n.in[0])] == 1) {
      // An elementwise op on a value nobody reads afterwards: run it in place. A ReLU right
      // after the linear that wrote that value is fused into the linear's store, as Mlp does.
      const int j = n.in[0];
      pending[size_t(j)] = 0;
      buf_of_root[i] = buf_of_root[size_t(j)];
      buf_of_root[size_t(j)] = -1;
      loc[i] = loc[size_t(j)];
      if (n.op == Op::act && n.act == Act::relu && !steps_.empty() &&
          steps_.back().kind == kLinear && !steps_.back().relu && steps_.back().node == j) {
        steps_.back().relu = true;
        continue;
      }
      s.kind = n.op == Op::act ? kAct : kUnary;
      s.src.push_back(loc[i]);
      s.dst = loc[i];
      steps_.push_back(std::move(s));
      continue;
    } else {
      s.kind = n.op == Op::cat          ? kCat
               : n.op == Op::act        ? kAct
               : n.op == Op::layer_norm ? kLayerNorm
               : is_binary(n.op)        ? kBinary
                                        : kUnary;
      for (int j : n.in) s.src.push_back(chain_[size_t(j)] ? chain_operand(j) : level_operand(j));
    }
    const int b = alloc(width_[i]);
    buf_of_root[i] = b;
    s.dst = Operand{true, b, 0, width_[i]};
    loc[i] = s.dst;
    steps_.push_back(std::move(s));
    if (gather_buf >= 0) free_bufs.push_back(gather_buf);
    for (int j : reads(i)) release(j);
  }
  out_ = loc[last];
}

uint64_t GraphNet::bytes(const GraphSpec& spec) {
  const bool panels = narrow_kernel_level() == SimdLevel::avx512;
  uint64_t b = block_bytes(spec.nodes.size(), sizeof(GraphNode));
  // per node: the plan's bookkeeping (widths, roots, offsets, steps) and the spec's vectors
  b = sat_add(b, sat_mul(spec.nodes.size(), 256));
  for (const GraphNode& n : spec.nodes) {
    b = sat_add(b, block_bytes(n.in.size(), sizeof(int)));
    b = sat_add(b, block_bytes(n.a.size(), sizeof(float)));
    b = sat_add(b, block_bytes(n.b.size(), sizeof(float)));
    if (n.op == Op::linear) {
      const uint64_t rows = uint64_t(std::max(n.rows, 0)), cols = uint64_t(std::max(n.cols, 0));
      b = sat_add(b, block_bytes(sat_mul(rows, cols), sizeof(float)));  // chain columns
      const uint64_t packed =
          panels ? sat_mul((rows + 63) / 64 * 64, cols) : sat_mul((rows + 15) / 16 * 16, cols);
      b = sat_add(b, block_bytes(packed, sizeof(float)));
      b = sat_add(b, block_bytes((rows + 63) / 64 * 64, sizeof(float)));
      b = sat_add(b, block_bytes(cols, sizeof(int)));  // the split's column list
    }
  }
  b = sat_add(b, block_bytes(spec.shift.size(), sizeof(float)));
  return sat_add(b, block_bytes(spec.scale.size(), sizeof(float)));
}

std::unique_ptr<Levels> GraphNet::prepare(const std::vector<double>& sigmas,
                                          const StopFn& stop) const {
  const auto& N = spec_.nodes;
  auto lv = std::make_unique<GraphLevels>();
  if (stride_ == 0) return lv;
  StopCheck stopped(stop);
  lv->table.reset(new float[sigmas.size() * stride_]);
  // Which level nodes to evaluate: those stored, and what they read.
  std::vector<char> want(N.size(), 0);
  for (size_t i = 0; i < N.size(); ++i)
    if (level_off_[i] >= 0) want[i] = 1;
  for (const SplitBias& sb : split_)
    for (int k : N[size_t(N[size_t(sb.node)].in[0])].in)
      if (!chain_[size_t(k)]) want[size_t(k)] = 1;
  for (size_t i = N.size(); i-- > 0;)
    if (want[i])
      for (int j : N[i].in) want[size_t(j)] = 1;
  std::vector<std::vector<double>> v(N.size());
  for (size_t l = 0; l < sigmas.size(); ++l) {
    if (stopped(stride_ + N.size())) return nullptr;
    for (size_t i = 0; i < N.size(); ++i) {
      if (!want[i] || chain_[i]) continue;
      const GraphNode& n = N[i];
      std::vector<double>& out = v[i];
      out.assign(size_t(width_[i]), 0.0);
      auto in = [&](size_t k) -> const std::vector<double>& { return v[size_t(n.in[k])]; };
      switch (n.op) {
        case Op::sigma: out[0] = sigmas[l]; break;
        case Op::scalar: out[0] = n.p; break;
        case Op::constant: std::copy(n.a.begin(), n.a.end(), out.begin()); break;
        case Op::linear:
          for (int o = 0; o < n.rows; ++o) {
            double acc = n.b[size_t(o)];
            for (int k = 0; k < n.cols; ++k)
              acc += double(n.a[size_t(o) * size_t(n.cols) + size_t(k)]) * in(0)[size_t(k)];
            out[size_t(o)] = acc;
          }
          break;
        case Op::act:
          for (size_t k = 0; k < out.size(); ++k) out[k] = act_d(n.act, in(0)[k]);
          break;
        case Op::cat: {
          size_t at = 0;
          for (size_t k = 0; k < n.in.size(); ++k)
            for (double e : in(k)) out[at++] = e;
          break;
        }
        case Op::slice:
          std::copy(in(0).begin() + n.start, in(0).begin() + n.stop, out.begin());
          break;
        case Op::layer_norm: {
          const auto& h = in(0);
          double m = 0, var = 0;
          for (double e : h) m += e;
          m /= double(h.size());
          for (double e : h) var += (e - m) * (e - m);
          var /= double(h.size());
          const double r = 1.0 / std::sqrt(var + n.p);
          for (size_t k = 0; k < h.size(); ++k) out[k] = (h[k] - m) * r * n.a[k] + n.b[k];
          break;
        }
        default:
          if (is_binary(n.op)) {
            const auto &a = in(0), &b = in(1);
            for (size_t k = 0; k < out.size(); ++k)
              out[k] = binary(n.op, a[a.size() == 1 ? 0 : k], b[b.size() == 1 ? 0 : k]);
          } else {
            for (size_t k = 0; k < out.size(); ++k) out[k] = unary(n.op, in(0)[k], n.p);
          }
      }
      for (double e : out)
        if (!std::isfinite(e) || std::fabs(e) > double(std::numeric_limits<float>::max()))
          throw std::invalid_argument("graph node " + std::to_string(i) + " (" + op_name(n.op) +
                                      ") is not finite at noise level sigma = " +
                                      std::to_string(sigmas[l]) + " (model coordinates)");
    }
    float* row = lv->table.get() + l * stride_;
    for (size_t i = 0; i < N.size(); ++i)
      if (level_off_[i] >= 0)
        for (int k = 0; k < width_[i]; ++k)
          row[size_t(level_off_[i]) + size_t(k)] = float(v[i][size_t(k)]);
    for (const SplitBias& sb : split_) {
      const GraphNode& lin = N[size_t(sb.node)];
      const GraphNode& cat = N[size_t(lin.in[0])];
      std::vector<double> vals;  // the level inputs, in column order
      for (int k : cat.in)
        if (!chain_[size_t(k)]) vals.insert(vals.end(), v[size_t(k)].begin(), v[size_t(k)].end());
      float* dst = row + sb.off;
      std::fill_n(dst, pad64(lin.rows), 0.f);
      for (int o = 0; o < lin.rows; ++o) {
        double acc = lin.b[size_t(o)];
        for (size_t k = 0; k < vals.size(); ++k)
          acc += double(lin.a[size_t(o) * size_t(lin.cols) + size_t(sb.level_cols[k])]) * vals[k];
        dst[o] = float(acc);
      }
    }
  }
  return lv;
}

uint64_t GraphNet::levels_bytes(uint64_t levels) const {
  return sat_add(block_bytes(1, sizeof(GraphLevels)),
                 block_bytes(sat_mul(levels, uint64_t(stride_)), sizeof(float)));
}

std::unique_ptr<Workspace> GraphNet::workspace(int width) const {
  auto ws = std::make_unique<GraphWs>();
  ws->pool.assign(size_t(n_bufs_) * size_t(buf_rows_) * size_t(width), 0.f);
  return ws;
}

uint64_t GraphNet::workspace_bytes(int width) const {
  return sat_add(
      block_bytes(1, sizeof(GraphWs)),
      block_bytes(sat_mul(sat_mul(uint64_t(n_bufs_), uint64_t(buf_rows_)), uint64_t(width)),
                  sizeof(float)));
}

void GraphNet::score(const float* x, int width, const Levels& lvb, int level, float* out,
                     Workspace& wsb) const {
  auto& ws = static_cast<GraphWs&>(wsb);
  const auto& lv = static_cast<const GraphLevels&>(lvb);
  const float* table = lv.table ? lv.table.get() + size_t(level) * stride_ : nullptr;
  const size_t W = size_t(width);
  float* pool = ws.pool.data();
  auto rows_of = [&](const Operand& o) -> const float* {
    return (o.buf < 0 ? x : pool + size_t(o.buf) * size_t(buf_rows_) * W) + size_t(o.row) * W;
  };
  auto dst_of = [&](const Operand& o) {
    return pool + size_t(o.buf) * size_t(buf_rows_) * W + size_t(o.row) * W;
  };
  for (const Step& s : steps_) {
    const GraphNode& n = spec_.nodes[size_t(s.node)];
    float* y = dst_of(s.dst);
    const int rows = s.dst.width;
    switch (s.kind) {
      case kLinear: {
        const Packed& p = packed_[size_t(s.packed)];
        LayerRef ref{p.W.data(),
                     p.WT.empty() ? nullptr : p.WT.data(),
                     s.level_bias >= 0 ? table + s.level_bias : p.b.data(),
                     p.out,
                     p.in,
                     pad16(p.out),
                     p.WP.empty() ? nullptr : p.WP.data()};
        layer_forward(ref, rows_of(s.src[0]), y, width, s.relu);
        break;
      }
      case kCat: {
        float* at = y;
        for (const Operand& o : s.src) {
          if (o.chain) {
            std::copy_n(rows_of(o), size_t(o.width) * W, at);
          } else {
            for (int r = 0; r < o.width; ++r) std::fill_n(at + size_t(r) * W, W, table[o.row + r]);
          }
          at += size_t(o.width) * W;
        }
        break;
      }
      case kAct:
        if (rows_of(s.src[0]) != y) std::copy_n(rows_of(s.src[0]), size_t(rows) * W, y);
        apply_act(n.act, y, long(rows) * width);
        break;
      case kUnary: {
        const float* h = rows_of(s.src[0]);
        const float p = float(n.p);
        for (size_t k = 0, m = size_t(rows) * W; k < m; ++k) y[k] = unary(n.op, h[k], p);
        break;
      }
      case kBinary: {
        const Operand &A = s.src[0], &B = s.src[1];
        for (int r = 0; r < rows; ++r) {
          float* yr = y + size_t(r) * W;
          const int ra = A.width == 1 ? 0 : r, rb = B.width == 1 ? 0 : r;
          if (A.chain && B.chain) {
            binary_rows(n.op, rows_of(A) + size_t(ra) * W, rows_of(B) + size_t(rb) * W, yr, W);
          } else if (A.chain) {
            binary_rows(n.op, rows_of(A) + size_t(ra) * W, table[B.row + rb], yr, W);
          } else {
            binary_rows(n.op, table[A.row + ra], rows_of(B) + size_t(rb) * W, yr, W);
          }
        }
        break;
      }
      case kLayerNorm: {
        const float* h = rows_of(s.src[0]);
        for (size_t c = 0; c < W; ++c) {
          double m = 0, var = 0;
          for (int r = 0; r < rows; ++r) m += double(h[size_t(r) * W + c]);
          m /= rows;
          for (int r = 0; r < rows; ++r) {
            const double e = double(h[size_t(r) * W + c]) - m;
            var += e * e;
          }
          var /= rows;
          const double inv = 1.0 / std::sqrt(var + n.p);
          for (int r = 0; r < rows; ++r)
            y[size_t(r) * W + c] =
                float((double(h[size_t(r) * W + c]) - m) * inv * double(n.a[size_t(r)]) +
                      double(n.b[size_t(r)]));
        }
        break;
      }
    }
  }
  std::copy_n(rows_of(out_), size_t(spec_.dim) * W, out);
}

}  // namespace gensamp
