// Plain C++ tests of the engine (no Python, no framework), built with -DGENSAMP_BUILD_TESTS=ON
// and run by ctest; scripts/sanitize.sh runs them under AddressSanitizer + UBSan.
//
//   gensamp_core_tests            run every test
//   gensamp_core_tests NAME...    run the named tests only
//
// Exit status: 0 when every check passed, 1 otherwise. Each test prints [ RUN ] / [  OK  ] /
// [ FAIL ] and every failed check its file:line and expression.
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "gensamp/density.hpp"
#include "gensamp/model.hpp"
#include "gensamp/philox.hpp"
#include "gensamp/sampler.hpp"
// White-box: the tests also reach the kernels behind the public API.
#include "activations.hpp"
#include "cpu_features.hpp"
#include "gemm.hpp"
#include "noise.hpp"
#include "threads.hpp"

#ifdef GENSAMP_HAVE_OPENMP
#include <omp.h>
#endif

using namespace gensamp;
using Clock = std::chrono::steady_clock;

// ---- heap accounting -----------------------------------------------------------------------
// Every operator new in this program (the engine's containers included) goes through here, so
// tests can compare the engine's *_bytes() estimates with what it really allocates: each block
// counts its size plus kBlockOverhead, as the estimates do. A header in front of each block
// remembers its size for the matching delete.
namespace heap {
std::atomic<int64_t> live{0}, peak{0};
constexpr size_t kHeader = 16;  // keeps the alignment malloc gives

void* take(size_t n) {
  void* p = std::malloc(n + kHeader);
  if (!p) throw std::bad_alloc();
  *static_cast<size_t*>(p) = n;
  const int64_t now = live += int64_t(n + kBlockOverhead);
  int64_t seen = peak.load();
  while (now > seen && !peak.compare_exchange_weak(seen, now)) {
  }
  return static_cast<char*>(p) + kHeader;
}

void give(void* q) noexcept {
  if (!q) return;
  void* p = static_cast<char*>(q) - kHeader;
  live -= int64_t(*static_cast<size_t*>(p) + kBlockOverhead);
  std::free(p);
}

// Bytes allocated and not yet freed since `base`, and the most there were at once.
struct Since {
  int64_t base = live.load();
  Since() { peak = base; }
  int64_t held() const { return live.load() - base; }
  int64_t most() const { return peak.load() - base; }
};
}  // namespace heap

void* operator new(size_t n) { return heap::take(n); }
void* operator new[](size_t n) { return heap::take(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  try {
    return heap::take(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p) noexcept { heap::give(p); }
void operator delete[](void* p) noexcept { heap::give(p); }
void operator delete(void* p, size_t) noexcept { heap::give(p); }
void operator delete[](void* p, size_t) noexcept { heap::give(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { heap::give(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { heap::give(p); }

namespace {

int g_failures = 0;
int g_test_failures = 0;

#define CHECK(cond)                                                                   \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                                   \
    }                                                                                 \
  } while (0)

#define CHECK_MSG(cond, ...)                                                          \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "  %s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                              \
      std::fprintf(stderr, "\n");                                                     \
      ++g_failures;                                                                   \
    }                                                                                 \
  } while (0)

// True when f() throws an E whose what() contains `needle` (nullptr: any message).
template <class E, class F>
bool throws(F&& f, const char* needle = nullptr) {
  try {
    f();
  } catch (const E& e) {
    if (needle && !std::strstr(e.what(), needle)) {
      std::fprintf(stderr, "  exception message '%s' lacks '%s'\n", e.what(), needle);
      return false;
    }
    return true;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "  unexpected exception type: %s\n", e.what());
    return false;
  } catch (...) {
    std::fprintf(stderr, "  unexpected non-std exception\n");
    return false;
  }
  return false;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool all_finite(const std::vector<float>& a) {
  for (float v : a)
    if (!std::isfinite(v)) return false;
  return true;
}

// Deterministic uniform(-1, 1) numbers from Philox (no <random>: its distributions are not
// specified bit for bit across standard libraries).
struct Uniform {
  uint32_t key, ctr = 0;
  explicit Uniform(uint32_t k) : key(k) {}
  double operator()() {
    const auto b = philox4x32_10(ctr++, 0, 0, 0, key, 0x5eed);
    return double(b.v[0]) / 2147483648.0 - 1.0;
  }
};

Dense dense(int out, int in, Uniform& U, double gain = 1.0) {
  Dense l;
  l.out = out;
  l.in = in;
  const double s = gain / std::sqrt(double(in));
  for (int i = 0; i < out * in; ++i) l.W.push_back(float(s * U()));
  for (int i = 0; i < out; ++i) l.b.push_back(float(0.1 * U()));
  return l;
}

MlpSpec mlp_spec(int d, int width, int depth, Act act, SigmaInput si = SigmaInput::none,
                 bool divide = false, uint32_t seed = 1) {
  Uniform U(seed);
  MlpSpec s;
  const int in0 = d + (si == SigmaInput::none ? 0 : 1);
  for (int i = 0; i < depth; ++i) {
    const int in = i == 0 ? in0 : width, out = i + 1 == depth ? d : width;
    s.layers.push_back(dense(out, in, U));
    if (i + 1 < depth) s.acts.push_back(act);
  }
  s.sigma_input = si;
  s.divide_by_sigma = divide;
  return s;
}

double act_ref(Act a, double x) {
  switch (a) {
    case Act::identity: return x;
    case Act::relu: return x > 0 ? x : 0;
    case Act::leaky_relu: return x > 0 ? x : 0.01 * x;
    case Act::elu: return x > 0 ? x : std::expm1(x);
    case Act::silu: return x / (1 + std::exp(-x));
    case Act::softplus: return x > 20 ? x : std::log1p(std::exp(x));
    case Act::tanh: return std::tanh(x);
    case Act::sigmoid: return 1 / (1 + std::exp(-x));
    case Act::gelu: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case Act::gelu_tanh:
      return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
  }
  return NAN;
}

// Network outputs in double for one input vector (the spec's raw layers).
std::vector<double> forward_ref(const MlpSpec& s, std::vector<double> h) {
  for (size_t i = 0; i < s.layers.size(); ++i) {
    const Dense& l = s.layers[i];
    std::vector<double> y(l.out);
    for (int o = 0; o < l.out; ++o) {
      double acc = l.b[o];
      for (int k = 0; k < l.in; ++k) acc += double(l.W[size_t(o) * l.in + k]) * h[k];
      y[o] = i + 1 < s.layers.size() ? act_ref(s.acts[i], acc) : acc;
    }
    h = std::move(y);
  }
  return h;
}

// Runs a plain or annealed chain set and returns (final states, trajectory, result).
struct Run {
  std::vector<float> x, traj;
  RunResult res;
};

Run run(ScoreModel& m, const Schedule& sched, int64_t n, const std::vector<float>* x0, int threads,
        int tile = 64, int record_every = 0, bool denoise = false, uint64_t seed = 7,
        std::function<bool()> poll = {}) {
  Run r;
  const int d = m.dim();
  r.x.assign(size_t(n) * d, 0.f);
  if (x0) r.x = *x0;
  const long nrec = record_every > 0 ? sched.total_steps() / record_every : 0;
  r.traj.assign(size_t(nrec) * n * d, 0.f);
  RunOptions opt;
  opt.seed = seed;
  opt.threads = threads;
  opt.tile = tile;
  opt.record_every = nrec > 0 ? record_every : 0;
  opt.denoise = denoise;
  opt.poll = std::move(poll);
  r.res =
      run_langevin(m, sched, n, r.x.data(), x0 ? 0.0 : 1.0, nrec ? r.traj.data() : nullptr, opt);
  return r;
}

// ---- test models ---------------------------------------------------------------------------

// Scores of a tile at level `level` of `sigmas`. With Wrapper below, the only code here that
// depends on the prepare()/score() signatures.
void score_tile(ScoreModel& m, const std::vector<double>& sigmas, int level, const float* x,
                int width, float* out) {
  const auto lv = m.prepare(sigmas, {});
  auto ws = m.workspace(width);
  m.score(x, width, *lv, level, out, *ws);
}

// Delegates to another model and calls hooks first, so tests can inject failures, delays or
// bookkeeping. Only this class depends on the ScoreModel interface's signatures.
class Wrapper : public ScoreModel {
 public:
  explicit Wrapper(ScoreModel& inner) : inner_(inner) {}
  int dim() const override { return inner_.dim(); }
  std::unique_ptr<Levels> prepare(const std::vector<double>& s, const StopFn& stop) const override {
    return inner_.prepare(s, stop);
  }
  std::unique_ptr<Workspace> workspace(int width) const override {
    before_workspace();
    return inner_.workspace(width);
  }
  uint64_t levels_bytes(uint64_t levels) const override { return inner_.levels_bytes(levels); }
  uint64_t workspace_bytes(int width) const override { return inner_.workspace_bytes(width); }
  void score(const float* x, int width, const Levels& lv, int level, float* out,
             Workspace& ws) const override {
    before_score();
    inner_.score(x, width, lv, level, out, ws);
  }
  std::unique_ptr<Levels> prepare_div(const std::vector<double>& s,
                                      const StopFn& stop) const override {
    return inner_.prepare_div(s, stop);
  }
  uint64_t levels_div_bytes(uint64_t levels) const override {
    return inner_.levels_div_bytes(levels);
  }
  std::unique_ptr<Workspace> div_workspace(int width, int probes) const override {
    before_workspace();
    return inner_.div_workspace(width, probes);
  }
  uint64_t div_workspace_bytes(int width, int probes) const override {
    return inner_.div_workspace_bytes(width, probes);
  }
  void score_div(const float* x, int width, const Levels& lv, int level, const float* v, int probes,
                 float* out, double* div, Workspace& ws) const override {
    before_score();
    inner_.score_div(x, width, lv, level, v, probes, out, div, ws);
  }

 protected:
  virtual void before_workspace() const {}
  virtual void before_score() const {}
  ScoreModel& inner_;
};

// Throws from score() on the `after`-th call overall, or from workspace() when asked to.
class Throwing final : public Wrapper {
 public:
  enum class Where { score, workspace, bad_alloc };
  Throwing(ScoreModel& inner, Where w, long after) : Wrapper(inner), where_(w), after_(after) {}

 private:
  void before_workspace() const override {
    if (where_ == Where::workspace && calls_.fetch_add(1) >= after_)
      throw std::runtime_error("injected failure in workspace()");
  }
  void before_score() const override {
    if (where_ != Where::workspace && calls_.fetch_add(1) == after_) {
      if (where_ == Where::bad_alloc) throw std::bad_alloc();
      throw std::runtime_error("injected failure in score()");
    }
  }
  Where where_;
  long after_;
  mutable std::atomic<long> calls_{0};
};

// score(u) = a * u exactly (a one-layer identity network): chains grow by (1 + eps a / 2) a step.
Mlp linear_model(int d, float a) {
  MlpSpec s;
  Dense l;
  l.in = l.out = d;
  l.W.assign(size_t(d) * d, 0.f);
  for (int i = 0; i < d; ++i) l.W[size_t(i) * d + i] = a;
  l.b.assign(d, 0.f);
  s.layers.push_back(l);
  return Mlp(s);
}

// ---- tests -----------------------------------------------------------------------------------

// A graph with every op kind the planner treats differently: a split linear over [x | sin/cos
// embedding of log sigma], a fused ReLU, an in-place activation, a residual add, a layer norm,
// a slice, broadcasts against level values and a division by sigma.
GraphSpec graph_spec(int d, int h) {
  uint64_t s = 7;
  auto vals = [&](size_t n, float scale) {
    std::vector<float> v(n);
    for (auto& e : v) {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      e = scale * (float((s >> 40) % 2001) / 1000.f - 1.f);
    }
    return v;
  };
  auto node = [](Op op, std::vector<int> in) {
    GraphNode n;
    n.op = op;
    n.in = std::move(in);
    return n;
  };
  auto linear = [&](int in, int rows, int cols) {
    GraphNode n = node(Op::linear, {in});
    n.rows = rows;
    n.cols = cols;
    n.a = vals(size_t(rows) * size_t(cols), 0.4f);
    n.b = vals(size_t(rows), 0.1f);
    return n;
  };
  GraphSpec g;
  g.dim = d;
  g.nodes.push_back(node(Op::x, {}));      // 0
  g.nodes.push_back(node(Op::sigma, {}));  // 1
  g.nodes.push_back(node(Op::log, {1}));   // 2
  GraphNode f = node(Op::constant, {});    // 3
  f.a = {1.f, 3.f, 9.f};
  g.nodes.push_back(f);
  g.nodes.push_back(node(Op::mul, {2, 3}));     // 4
  g.nodes.push_back(node(Op::sin, {4}));        // 5
  g.nodes.push_back(node(Op::cos, {4}));        // 6
  g.nodes.push_back(node(Op::cat, {0, 5, 6}));  // 7
  g.nodes.push_back(linear(7, h, d + 6));       // 8
  GraphNode relu = node(Op::act, {8});          // 9 (fused into 8)
  relu.act = Act::relu;
  g.nodes.push_back(relu);
  g.nodes.push_back(linear(9, h, h));    // 10
  GraphNode silu = node(Op::act, {10});  // 11 (in place)
  silu.act = Act::silu;
  g.nodes.push_back(silu);
  g.nodes.push_back(node(Op::add, {9, 11}));  // 12 residual
  GraphNode ln = node(Op::layer_norm, {12});  // 13
  ln.a = vals(size_t(h), 1.f);
  ln.b = vals(size_t(h), 0.2f);
  ln.p = 1e-5;
  g.nodes.push_back(ln);
  GraphNode sl = node(Op::slice, {13});  // 14
  sl.start = 1;
  sl.stop = h - 1;
  g.nodes.push_back(sl);
  g.nodes.push_back(linear(14, d, h - 2));    // 15
  g.nodes.push_back(node(Op::div, {15, 1}));  // 16
  return g;
}

void test_graph_net() {
  const int d = 3;
  GraphNet net(graph_spec(d, 40));
  CHECK(net.dim() == d);
  // Thread and tile invariance of a sampler run over the graph.
  const Schedule sched = annealed_schedule({3.0, 1.2, 0.5, 0.2}, 2e-3, 15);
  const Run base = run(net, sched, 77, nullptr, 1, 64, 1, false);
  CHECK(all_finite(base.x) && base.res.diverged.empty());
  for (int threads : {2, 7})
    for (int tile : {1, 16, 100}) {
      const Run r = run(net, sched, 77, nullptr, threads, tile, 1, false);
      CHECK_MSG(same_bits(r.x, base.x), "graph: threads=%d tile=%d differ", threads, tile);
    }
  // The constructor refuses what would read out of bounds.
  auto refuses = [](GraphSpec g, const char* what) {
    return throws<std::invalid_argument>([&] { GraphNet n(std::move(g)); }, what);
  };
  GraphSpec bad = graph_spec(d, 40);
  bad.nodes[12].in = {9, 13};  // a forward edge: a cycle
  CHECK(refuses(bad, "earlier node"));
  bad = graph_spec(d, 40);
  bad.nodes[14].stop = 41;
  CHECK(refuses(bad, "bad range"));
  bad = graph_spec(d, 40);
  bad.nodes[10].cols = 39;
  CHECK(refuses(bad, "W must be"));
  bad = graph_spec(d, 40);
  bad.nodes.resize(15);  // the output is now the slice, width h - 2, not d
  CHECK(refuses(bad, "width dim"));
  bad = graph_spec(d, 40);
  bad.nodes[3].a[1] = std::nanf("");
  CHECK(refuses(bad, "not finite"));
  // A level value that is not finite is refused per level, at prepare.
  GraphSpec lg = graph_spec(d, 40);
  lg.nodes[2].op = Op::neg;  // -sigma
  lg.nodes[5].op = Op::log;  // log(-sigma * c): NaN
  GraphNet nan_net(lg);
  CHECK(throws<std::invalid_argument>([&] { nan_net.prepare({0.5}, nullptr); }, "not finite"));
}

void test_philox_known_answers() {
  // Random123's kat_vectors for philox4x32_10.
  const auto a = philox4x32_10(0, 0, 0, 0, 0, 0);
  CHECK(a.v[0] == 0x6627e8d5u && a.v[1] == 0xe169c58du && a.v[2] == 0xbc57ac4cu &&
        a.v[3] == 0x9b00dbd8u);
  const uint32_t F = 0xffffffffu;
  const auto b = philox4x32_10(F, F, F, F, F, F);
  CHECK(b.v[0] == 0x408f276du && b.v[1] == 0x41c83b0eu && b.v[2] == 0xa20bc7c6u &&
        b.v[3] == 0x6d5451fdu);
  const auto c =
      philox4x32_10(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u);
  CHECK(c.v[0] == 0xd16cfe09u && c.v[1] == 0x94fdccebu && c.v[2] == 0x5001e420u &&
        c.v[3] == 0x24126ea1u);
}

void test_kernel_families_share_one_simd_level() {
  // One decision in cpu_features: a family that ran below it would still give the same bits,
  // only slower, so nothing but this check would notice.
  const SimdLevel want = simd_level();
  CHECK(layer_kernel_level() == want);
  CHECK(narrow_kernel_level() == want);
  CHECK(noise_level() == want);
  CHECK(activation_level() == want);
}

void test_normals_layout_and_moments() {
  const int d = 7, w = 37;
  const uint64_t seed = 0x123456789abcdefull;
  // A tile equals the same chains drawn one at a time (layout, SIMD chunking, tails).
  std::vector<float> tile(size_t(d) * w, -1.f), one(d);
  tile_normals(seed, 1000, w, 5, d, tile.data(), w);
  bool same = true;
  for (int c = 0; c < w; ++c) {
    tile_normals(seed, 1000 + c, 1, 5, d, one.data(), 1);
    for (int i = 0; i < d; ++i) same &= std::memcmp(&one[i], &tile[size_t(i) * w + c], 4) == 0;
  }
  CHECK(same);
  // A larger leading dimension leaves the padding untouched.
  std::vector<float> padded(size_t(d) * 48, 99.f);
  tile_normals(seed, 1000, w, 5, d, padded.data(), 48);
  bool pad_ok = true, body_ok = true;
  for (int i = 0; i < d; ++i)
    for (int c = 0; c < 48; ++c) {
      const float v = padded[size_t(i) * 48 + c];
      if (c >= w)
        pad_ok &= v == 99.f;
      else
        body_ok &= std::memcmp(&v, &tile[size_t(i) * w + c], 4) == 0;
    }
  CHECK(pad_ok);
  CHECK(body_ok);
  // Moments over 2^17 normals; every value finite and within the documented bound 6.8.
  const int W = 1024, D = 128;
  std::vector<float> z(size_t(W) * D);
  tile_normals(3, 0, W, 0, D, z.data(), W);
  double s1 = 0, s2 = 0, mx = 0;
  for (float v : z) {
    s1 += v;
    s2 += double(v) * v;
    mx = std::max(mx, double(std::fabs(v)));
  }
  const double count = double(z.size());
  const double m = s1 / count, var = s2 / count - m * m;
  CHECK(all_finite(z));
  CHECK_MSG(std::fabs(m) < 0.015, "mean %g", m);
  CHECK_MSG(std::fabs(var - 1) < 0.02, "variance %g", var);
  CHECK_MSG(mx <= 6.8, "max |z| %g", mx);
  // Different steps, chains and seeds give different numbers.
  std::vector<float> z2(size_t(W) * D);
  tile_normals(3, 0, W, 1, D, z2.data(), W);
  CHECK(!same_bits(z, z2));
  tile_normals(4, 0, W, 0, D, z2.data(), W);
  CHECK(!same_bits(z, z2));
}

void test_mlp_validation() {
  CHECK(throws<std::invalid_argument>([] { Mlp m(MlpSpec{}); }, "no layers"));
  {
    auto s = mlp_spec(3, 8, 3, Act::relu);
    s.acts.pop_back();
    CHECK(throws<std::invalid_argument>([&] { Mlp m(s); }, "activation"));
  }
  {
    auto s = mlp_spec(3, 8, 3, Act::relu);
    s.layers[1].W.pop_back();
    CHECK(throws<std::invalid_argument>([&] { Mlp m(s); }, "sizes"));
  }
  {
    auto s = mlp_spec(3, 8, 3, Act::relu);
    s.layers[2] = dense(3, 9, *std::make_unique<Uniform>(2));
    CHECK(throws<std::invalid_argument>([&] { Mlp m(s); }, "does not match"));
  }
  {
    auto s = mlp_spec(3, 8, 2, Act::relu);
    s.layers[0].in = 0;
    s.layers[0].W.clear();
    CHECK(throws<std::invalid_argument>([&] { Mlp m(s); }, "zero dimension"));
  }
  {
    MlpSpec s;
    Uniform U(3);
    s.layers.push_back(dense(1, 1, U));
    s.sigma_input = SigmaInput::sigma;  // the only input would be sigma
    CHECK(throws<std::invalid_argument>([&] { Mlp m(s); }, "no data inputs"));
  }
  {
    auto s = mlp_spec(3, 8, 2, Act::relu);
    s.shift.assign(5, 0.f);
    s.scale.assign(5, 1.f);
    CHECK(throws<std::invalid_argument>([&] { Mlp m(s); }, "normalisation"));
  }
  CHECK(throws<std::invalid_argument>([] { parse_act("mish"); }, "mish"));
  CHECK(throws<std::invalid_argument>([] { parse_sigma_input("sqrt"); }, "sqrt"));
  CHECK(parse_act("gelu_tanh") == Act::gelu_tanh);
  CHECK(parse_sigma_input("log_sigma") == SigmaInput::log_sigma);
}

void test_mlp_forward_matches_reference() {
  const Act acts[] = {Act::identity, Act::relu, Act::leaky_relu, Act::elu,  Act::silu,
                      Act::softplus, Act::tanh, Act::sigmoid,    Act::gelu, Act::gelu_tanh};
  // The narrow kernel (< 16, or not a multiple of 16) and the wide one.
  const int widths[] = {1, 5, 16, 17, 48};
  for (Act a : acts)
    for (int d : {1, 3, 20}) {
      const auto spec = mlp_spec(d, 24, 3, a, SigmaInput::none, false, 11 + d);
      Mlp net(spec);
      CHECK(net.input_dim() == d && net.output_dim() == d && net.dim() == d);
      Uniform U(5);
      const int n = 48;
      std::vector<double> xin(size_t(n) * d);
      for (auto& v : xin) v = 4 * U();
      const std::vector<float> xin32(xin.begin(), xin.end());
      std::vector<std::vector<float>> per_width;
      for (int width : widths) {
        auto ws = net.workspace(width);
        std::vector<float> out(size_t(n) * d);
        map_tiles(n, d, d, width, xin32.data(), out.data(),
                  [&](const float* xt, float* yt) { net.forward(xt, width, yt, *ws); });
        per_width.push_back(out);
      }
      double err = 0;
      for (int j = 0; j < n; ++j) {
        std::vector<double> in(xin.begin() + size_t(j) * d, xin.begin() + size_t(j + 1) * d);
        for (size_t i = 0; i < in.size(); ++i) in[i] = double(float(in[i]));
        const auto ref = forward_ref(spec, in);
        for (int i = 0; i < d; ++i)
          err = std::max(
              err, std::fabs(per_width[0][size_t(j) * d + i] - ref[i]) / (1 + std::fabs(ref[i])));
      }
      CHECK_MSG(err < 2e-5, "act %d d %d: max rel error %g", int(a), d, err);
      bool same = true;
      for (auto& o : per_width) same &= same_bits(o, per_width[0]);
      CHECK_MSG(same, "act %d d %d: tile width changes the bits", int(a), d);
    }
}

void test_mlp_sigma_conditioning() {
  // score(u, sigma) == forward([u, feat(sigma)]) (/ sigma), for both conditioning modes.
  for (SigmaInput si : {SigmaInput::sigma, SigmaInput::log_sigma})
    for (bool divide : {false, true}) {
      const int d = 4, n = 20;
      const auto spec = mlp_spec(d, 32, 3, Act::silu, si, divide, 21);
      Mlp net(spec);
      CHECK(net.dim() == d && net.input_dim() == d + 1);
      const std::vector<double> sig = {2.0, 0.3};
      Uniform U(8);
      std::vector<float> xt(size_t(d) * n), out(size_t(d) * n);
      for (auto& v : xt) v = float(2 * U());
      for (int level = 0; level < 2; ++level) {
        score_tile(net, sig, level, xt.data(), n, out.data());
        double err = 0;
        for (int c = 0; c < n; ++c) {
          std::vector<double> in(d + 1);
          for (int i = 0; i < d; ++i) in[i] = xt[size_t(i) * n + c];
          in[d] = double(float(si == SigmaInput::sigma ? sig[level] : std::log(sig[level])));
          auto ref = forward_ref(spec, in);
          for (int i = 0; i < d; ++i) {
            const double r = divide ? ref[i] / sig[level] : ref[i];
            err = std::max(err, std::fabs(out[size_t(i) * n + c] - r) / (1 + std::fabs(r)));
          }
        }
        CHECK_MSG(err < 2e-5, "sigma_input %d divide %d level %d: %g", int(si), divide, level, err);
      }
    }
}

void test_mixture_validation_and_score() {
  CHECK(throws<std::invalid_argument>([] { Mixture m({}, {}, 1, {}, {}); }, "K >= 1"));
  CHECK(throws<std::invalid_argument>([] { Mixture m({1}, {0, 0}, 1, {1}, {}); }, "means"));
  CHECK(
      throws<std::invalid_argument>([] { Mixture m({1, -1}, {0, 1}, 1, {1, 1}, {}); }, "positive"));
  CHECK(throws<std::invalid_argument>([] { Mixture m({1, NAN}, {0, 1}, 1, {1, 1}, {}); },
                                      "positive"));
  CHECK(throws<std::invalid_argument>([] { Mixture m({1}, {0}, 1, {}, {}); }, "exactly one"));
  CHECK(throws<std::invalid_argument>([] { Mixture m({1}, {0}, 1, {1}, {1}); }, "exactly one"));
  CHECK(throws<std::invalid_argument>([] { Mixture m({1}, {0, 0}, 2, {1}, {}); }, "variances"));
  CHECK(throws<std::invalid_argument>([] { Mixture m({1}, {0, 0}, 2, {}, {1, 0, 0}); },
                                      "covariances"));
  {
    Mixture m({1}, {0, 0}, 2, {}, {1, 2, 2, 1});  // indefinite: fails when factorised
    CHECK(throws<std::invalid_argument>([&] { m.prepare({0.0}, {}); }, "positive definite"));
  }
  // One diagonal and one full Gaussian: score = -(S + s^2 I)^-1 (x - mu).
  Mixture diag({1}, {1, -2}, 2, {4, 0.25}, {});
  Mixture full({3}, {1, -2}, 2, {}, {2, 0.5, 0.5, 1});
  const double s = 0.5;
  const int n = 5;
  std::vector<float> xt = {0, 1, 2, -3, 10, -1, 0, 1, 2, -50}, o1(10), o2(10);
  score_tile(diag, {s}, 0, xt.data(), n, o1.data());
  score_tile(full, {s}, 0, xt.data(), n, o2.data());
  const double a = 2 + s * s, b = 0.5, c = 1 + s * s, det = a * c - b * b;
  double e1 = 0, e2 = 0;
  for (int j = 0; j < n; ++j) {
    const double dx = xt[j] - 1.0, dy = xt[n + j] + 2.0;
    e1 = std::max(e1,
                  std::fabs(o1[j] + dx / (4 + s * s)) + std::fabs(o1[n + j] + dy / (0.25 + s * s)));
    const double sx = -(c * dx - b * dy) / det, sy = -(-b * dx + a * dy) / det;
    e2 = std::max(e2, std::fabs(o2[j] - sx) + std::fabs(o2[n + j] - sy));
  }
  CHECK_MSG(e1 < 1e-5, "diagonal score error %g", e1);
  CHECK_MSG(e2 < 1e-5, "full score error %g", e2);
  // Far from both of two components the softmax stays finite.
  Mixture two({1, 1}, {-1, 1}, 1, {0.01, 0.01}, {});
  std::vector<float> far = {1e6f, -1e6f}, so(2);
  score_tile(two, {0.0}, 0, far.data(), 2, so.data());
  CHECK(all_finite(so) && so[0] < 0 && so[1] > 0);
}

Schedule ncsn_schedule() { return annealed_schedule({3.0, 1.2, 0.5, 0.2}, 2e-3, 15); }

void test_thread_and_tile_invariance() {
  Mlp net(mlp_spec(3, 40, 3, Act::silu, SigmaInput::log_sigma, true, 4));
  Mixture mix({1, 2, 3}, {-2, 0, 1, 2, 0, -1, 0, 3, 0}, 3, {1, 0.5, 2, 1, 1, 1, 0.3, 0.3, 0.3}, {});
  for (ScoreModel* m : {static_cast<ScoreModel*>(&net), static_cast<ScoreModel*>(&mix)}) {
    const auto sched = ncsn_schedule();
    const int64_t n = 203;  // several tiles, a ragged last one
    const Run base = run(*m, sched, n, nullptr, 1, 64, 7, true);
    CHECK(all_finite(base.x) && all_finite(base.traj) && base.res.diverged.empty());
    CHECK(base.traj.size() == size_t(60 / 7) * n * 3);
    for (int threads : {2, 3, 8})
      for (int tile : {1, 16, 50, 64, 1000}) {
        const Run r = run(*m, sched, n, nullptr, threads, tile, 7, true);
        CHECK_MSG(same_bits(r.x, base.x) && same_bits(r.traj, base.traj),
                  "threads=%d tile=%d differ from threads=1 tile=64", threads, tile);
      }
    // Chain j is chain j whatever n is.
    const Run part = run(*m, sched, 40, nullptr, 2, 64, 0, true);
    CHECK(std::equal(part.x.begin(), part.x.end(), base.x.begin()));
    // The last trajectory record is the final state when no denoising step follows.
    const Run last = run(*m, sched, n, nullptr, 2, 64, 60, false);
    CHECK(same_bits(last.traj, last.x));
  }
}

// Every step kind (the few-step samplers' programs): any thread count and tiling gives the same
// bits, the schedule's own count of evaluations is what the run counted, and the programs the
// builders refuse are refused.
void test_step_programs() {
  Mlp net(mlp_spec(3, 40, 3, Act::silu, SigmaInput::log_sigma, true, 4));
  Mixture mix({1, 2, 3}, {-2, 0, 1, 2, 0, -1, 0, 3, 0}, 3, {1, 0.5, 2, 1, 1, 1, 0.3, 0.3, 0.3}, {});
  const std::vector<double> grid = {6.0, 2.5, 1.0, 0.4, 0.1};
  const Schedule progs[] = {pc_schedule(grid, 0.16, 2), cas_schedule(grid, 0.5),
                            ode_schedule(grid, false), ode_schedule(grid, true),
                            ode_schedule(grid, true, 2.0, 0.5, 10.0, 1.007)};
  for (ScoreModel* m : {static_cast<ScoreModel*>(&net), static_cast<ScoreModel*>(&mix)})
    for (const Schedule& sched : progs) {
      const int64_t n = 77;
      const Run base = run(*m, sched, n, nullptr, 1, 64, 1, false);
      CHECK(all_finite(base.x) && base.res.diverged.empty());
      CHECK_MSG(base.res.score_evals == double(sched.score_evals()), "counted %g, scheduled %ld",
                base.res.score_evals, sched.score_evals());
      for (int threads : {2, 7})
        for (int tile : {1, 16, 100}) {
          const Run r = run(*m, sched, n, nullptr, threads, tile, 1, false);
          CHECK_MSG(same_bits(r.x, base.x) && same_bits(r.traj, base.traj),
                    "threads=%d tile=%d differ", threads, tile);
        }
    }
  CHECK(pc_schedule(grid, 0.16, 1).score_evals() == 10);
  CHECK(ode_schedule(grid, true).score_evals() == 9);
  CHECK(ode_schedule(grid, true, 2.0).sigmas.size() == 2 * grid.size());  // the churned levels
  bool threw = false;
  try {
    ode_schedule({1.0, 2.0}, true);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
}

// Chains [a, b) run with chain_offset = a are rows a..b-1 of the run over [0, b), whatever the
// split: what lets a run be cut into shards on many machines.
void test_chain_offset_slices() {
  Mlp net(mlp_spec(3, 40, 3, Act::silu, SigmaInput::log_sigma, true, 4));
  const auto sched = ncsn_schedule();
  const int64_t n = 203;
  const Run base = run(net, sched, n, nullptr, 2, 64, 7, true);
  const int d = net.dim();
  for (const int64_t a : {int64_t(1), int64_t(64), int64_t(150)}) {
    const int64_t m = n - a;
    std::vector<float> x(size_t(m) * d), traj(size_t(60 / 7) * m * d);
    RunOptions opt;
    opt.seed = 7;
    opt.threads = a % 2 ? 1 : 2;
    opt.tile = 16;
    opt.record_every = 7;
    opt.denoise = true;
    opt.chain_offset = uint64_t(a);
    run_langevin(net, sched, m, x.data(), 1.0, traj.data(), opt);
    bool same = std::equal(x.begin(), x.end(), base.x.begin() + a * d);
    for (size_t r = 0; r < size_t(60 / 7); ++r)
      same &= std::equal(traj.begin() + long(r * m * d), traj.begin() + long((r + 1) * m * d),
                         base.traj.begin() + long(r * n * d + a * d));
    CHECK_MSG(same, "chain_offset=%lld differs from rows of the full run", (long long)a);
  }
  // The VAE sampler too; and the top of the 2^64 chain range is reachable.
  MlpSpec s = mlp_spec(2, 16, 2, Act::tanh);
  s.layers.back().out = 4;
  s.layers.back().W.resize(size_t(s.layers.back().in) * 4, 0.1f);
  s.layers.back().b.resize(4, 0.f);
  Mlp dec(s);
  std::vector<float> full(size_t(n) * 2), part(size_t(n - 37) * 2);
  RunOptions opt;
  opt.seed = 3;
  vae_sample(dec, n, full.data(), opt);
  opt.chain_offset = 37;
  vae_sample(dec, n - 37, part.data(), opt);
  CHECK(std::equal(part.begin(), part.end(), full.begin() + 37 * 2));
  opt.chain_offset = ~uint64_t(0) - 9;  // chains 2^64-10 .. 2^64-1
  const RunResult top = vae_sample(dec, 10, part.data(), opt);
  CHECK(top.diverged.empty() && all_finite(std::vector<float>(part.begin(), part.begin() + 20)));
}

// A decoder latent 3 -> 40 (tanh) -> out whose outputs span a few units, so that the logits'
// sigmoids cover (0, 1).
Mlp vae_decoder(int out, uint32_t seed = 5) {
  Uniform U(seed);
  MlpSpec s;
  s.layers.push_back(dense(40, 3, U));
  s.layers.push_back(dense(out, 40, U, 4.0));
  s.acts.push_back(Act::tanh);
  return Mlp(s);
}

VaeSpec two_component_prior(Likelihood lik, bool noise) {
  VaeSpec spec;
  spec.likelihood = lik;
  spec.noise = noise;
  spec.weights = {0.3f, 0.7f};
  spec.means = {-2.f, 0.f, 1.f, 3.f, 1.f, -1.f};
  spec.chol = {0.5f, 0.f, 0.f, 0.2f, 1.f,  0.f, -0.3f, 0.1f, 0.7f,  //
               1.f,  0.f, 0.f, 0.f,  0.3f, 0.f, 0.f,   0.5f, 0.2f};
  return spec;
}

void test_vae_likelihoods_and_prior() {
  const int64_t n = 203;
  for (Likelihood lik :
       {Likelihood::gaussian, Likelihood::bernoulli, Likelihood::continuous_bernoulli})
    for (bool noise : {true, false}) {
      const Mlp dec = vae_decoder(6);
      const int d = vae_data_dim(dec, lik);
      const VaeSpec spec = two_component_prior(lik, noise);
      std::vector<float> base(size_t(n) * d);
      RunOptions opt;
      opt.seed = 12;
      opt.tile = 16;
      const RunResult r = vae_sample(dec, n, base.data(), opt, spec);
      CHECK(r.diverged.empty() && all_finite(base));
      for (const auto& [threads, tile] : {std::pair{3, 64}, {2, 1}, {4, 200}}) {
        std::vector<float> x(base.size());
        opt.threads = threads;
        opt.tile = tile;
        vae_sample(dec, n, x.data(), opt, spec);
        CHECK_MSG(same_bits(x, base), "likelihood %d noise %d: threads=%d tile=%d differ", int(lik),
                  int(noise), threads, tile);
      }
      if (lik == Likelihood::gaussian) continue;
      int ones = 0, inside = 0;
      for (float v : base) {
        ones += v == 1.f;
        inside += v > 0.f && v < 1.f;
      }
      if (lik == Likelihood::bernoulli && noise)
        CHECK_MSG(inside == 0 && ones > n && ones < 5 * n,
                  "Bernoulli draws: %d ones, %d values strictly inside (0, 1)", ones, inside);
      else
        CHECK_MSG(inside == int(base.size()), "%d of %zu values inside (0, 1)", inside,
                  base.size());
    }
  // The mixture draw: with a decoder whose mean is z itself (and no noise), x is z; each chain
  // is mu_c + L_c e for its normals e (step 0) and the component its step-2 uniform picks.
  MlpSpec s;
  Dense l;
  l.in = 3;
  l.out = 6;
  l.W.assign(18, 0.f);
  for (int i = 0; i < 3; ++i) l.W[size_t(i) * 3 + i] = 1.f;
  l.b.assign(6, 0.f);
  s.layers.push_back(l);
  const Mlp ident(s);
  const VaeSpec spec = two_component_prior(Likelihood::gaussian, false);
  std::vector<float> x(size_t(n) * 3), e(size_t(3) * n);
  RunOptions opt;
  opt.seed = 4;
  opt.threads = 2;
  vae_sample(ident, n, x.data(), opt, spec);
  tile_normals(4, 0, int(n), 0, 3, e.data(), int(n));
  double err = 0;
  int first = 0;
  for (int64_t j = 0; j < n; ++j) {
    double u;
    chain_uniforms(4, uint64_t(j), 2, 1, &u);
    const int c = u * (double(0.3f) + double(0.7f)) < double(0.3f) ? 0 : 1;
    first += c == 0;
    for (int i = 0; i < 3; ++i) {
      double want = spec.means[size_t(c) * 3 + i];
      for (int k = 0; k <= i; ++k)
        want += spec.chol[size_t(c) * 9 + i * 3 + k] * e[size_t(k) * n + j];
      err = std::max(err, std::fabs(x[j * 3 + i] - want));
    }
  }
  CHECK_MSG(err < 1e-5, "mixture draw differs from mu_c + L_c e by %g", err);
  CHECK_MSG(first > n / 6 && first < n / 2, "component 0 (weight 0.3) picked %d of %lld", first,
            (long long)n);
  // Shapes the engine refuses.
  std::vector<float> out(size_t(n) * 6);
  const Mlp odd = vae_decoder(5);
  CHECK(throws<std::invalid_argument>([&] { vae_sample(odd, n, out.data(), opt); }, "[mean"));
  VaeSpec bad = two_component_prior(Likelihood::bernoulli, true);
  bad.chol.pop_back();
  CHECK(throws<std::invalid_argument>([&] { vae_sample(ident, n, out.data(), opt, bad); },
                                      "Cholesky"));
  MlpSpec normed = s;
  normed.shift.assign(3, 0.f);
  normed.scale.assign(3, 1.f);
  const Mlp with_norm(normed);
  CHECK(throws<std::invalid_argument>(
      [&] {
        vae_sample(with_norm, n, out.data(), opt, two_component_prior(Likelihood::bernoulli, true));
      },
      "normalisation"));
  CHECK(throws<std::invalid_argument>([] { parse_likelihood("poisson"); }, "poisson"));
  // A normalisation of the latent's length (which Mlp accepts for its input) would be read
  // past its end for the decoder's d outputs.
  MlpSpec short_norm;
  Dense two;
  two.in = 2;
  two.out = 6;
  two.W.assign(12, 0.f);
  two.b.assign(6, 0.f);
  short_norm.layers.push_back(two);
  short_norm.shift.assign(2, 0.f);
  short_norm.scale.assign(2, 1.f);
  const Mlp latent_norm(short_norm);
  CHECK(throws<std::invalid_argument>([&] { vae_sample(latent_norm, n, out.data(), opt); },
                                      "data's length"));
}

void test_x0_and_normalisation() {
  // With shift/scale the run maps x0 into model coordinates and back: a zero network is pure
  // noise, x_T = x0 + scale * sqrt(eps) * sum z; check the mapping on a one-step run.
  const int d = 2;
  MlpSpec s;
  Dense l;
  l.in = l.out = d;
  l.W.assign(4, 0.f);
  l.b.assign(2, 0.f);
  s.layers.push_back(l);
  s.shift = {10.f, -5.f};
  s.scale = {2.f, 0.5f};
  Mlp zero(s);
  const int64_t n = 33;
  std::vector<float> x0(size_t(n) * d);
  for (int64_t j = 0; j < n; ++j) {
    x0[j * d] = float(j);
    x0[j * d + 1] = -float(j);
  }
  const Run r = run(zero, plain_schedule(0.0, 0.04, 1), n, &x0, 2, 16, 0, false, 99);
  std::vector<float> z(size_t(d) * n);
  tile_normals(99, 0, int(n), 0, d, z.data(), int(n));
  double err = 0;
  for (int64_t j = 0; j < n; ++j)
    for (int i = 0; i < d; ++i) {
      const double u0 = (x0[j * d + i] - s.shift[i]) / s.scale[i];
      const double want = s.scale[i] * (u0 + 0.2 * z[size_t(i) * n + j]) + s.shift[i];
      err = std::max(err, std::fabs(r.x[j * d + i] - want) / (1 + std::fabs(want)));
    }
  CHECK_MSG(err < 1e-5, "normalised x0 round trip error %g", err);
}

void test_divergence_reported_exactly() {
  // score = +2u, eps = 1: every step doubles the state. Chains started at 1e30 overflow within
  // 60 steps (1e30 * 2^60 > FLT_MAX); chains started at 0 reach about 2^60 and stay finite.
  const int d = 3;
  Mlp up = linear_model(d, 2.f);
  const int64_t n = 100;
  const std::vector<int64_t> bad = {3, 17, 40, 64, 99};
  std::vector<float> x0(size_t(n) * d, 0.f);
  for (int64_t j : bad) x0[j * d + 1] = 1e30f;
  for (int threads : {1, 2}) {
    const Run r = run(up, plain_schedule(0.0, 1.0, 60), n, &x0, threads, 16);
    CHECK(!r.res.cancelled);
    CHECK_MSG(r.res.diverged == bad, "threads=%d: %zu diverged", threads, r.res.diverged.size());
    for (int64_t j = 0; j < n; ++j) {
      bool fin = true;
      for (int i = 0; i < d; ++i) fin &= std::isfinite(r.x[j * d + i]);
      CHECK(fin == !std::binary_search(bad.begin(), bad.end(), j));
    }
  }
  // A VAE decoder whose log-variance head is huge: every sample is reported.
  MlpSpec s;
  Dense l;
  l.in = 2;
  l.out = 2 * d;
  l.W.assign(size_t(l.in) * l.out, 0.f);
  l.b = {0, 0, 0, 0, 500.f, 0};  // exp(250) overflows float32 in dimension 1 only
  s.layers.push_back(l);
  Mlp dec(s);
  std::vector<float> out(size_t(n) * d);
  RunOptions opt;
  opt.threads = 2;
  const RunResult vr = vae_sample(dec, n, out.data(), opt);
  CHECK(vr.diverged.size() == size_t(n));
  l.b[4] = 0.f;
  MlpSpec s2;
  s2.layers.push_back(l);
  Mlp dec2(s2);
  const RunResult ok = vae_sample(dec2, n, out.data(), opt);
  CHECK(ok.diverged.empty() && all_finite(out));
}

void test_exceptions_leave_parallel_region() {
  // A throw inside the OpenMP region must come out of run_langevin as the same exception
  // (escaping the region would call std::terminate and kill this process).
  Mixture mix({1, 1}, {-1, 1}, 1, {1, 1}, {});
  const auto sched = plain_schedule(0.0, 0.1, 50);
  const Run ref = run(mix, sched, 500, nullptr, 1, 16);
  for (int threads : {1, 2, 4}) {
    for (long after : {0L, 7L, 300L}) {
      Throwing t(mix, Throwing::Where::score, after);
      CHECK_MSG(throws<std::runtime_error>([&] { run(t, sched, 500, nullptr, threads, 16); },
                                           "injected failure in score()"),
                "threads=%d after=%ld", threads, after);
      Throwing ba(mix, Throwing::Where::bad_alloc, after);
      CHECK(throws<std::bad_alloc>([&] { run(ba, sched, 500, nullptr, threads, 16); }));
    }
    Throwing tw(mix, Throwing::Where::workspace, 3);
    CHECK(throws<std::runtime_error>([&] { run(tw, sched, 500, nullptr, threads, 16); },
                                     "injected failure in workspace()"));
    // The engine is usable afterwards and gives the same result as before.
    const Run again = run(mix, sched, 500, nullptr, threads, 16);
    CHECK(same_bits(again.x, ref.x));
  }
}

void test_cancellation() {
  Mixture mix({1}, {0, 0}, 2, {1, 1}, {});
  const auto sched = plain_schedule(0.0, 0.01, 2000000);  // far longer than the test
  for (int threads : {1, 2}) {
    const auto caller = std::this_thread::get_id();
    std::atomic<int> polls{0}, in_poll{0};
    bool wrong_thread = false, concurrent = false;
    const auto t0 = Clock::now();
    auto poll = [&] {
      concurrent |= in_poll.fetch_add(1) != 0;
      wrong_thread |= std::this_thread::get_id() != caller;
      ++polls;
      const bool stop = seconds_since(t0) > 0.2;  // "Ctrl-C" after 200 ms
      in_poll.fetch_sub(1);
      return stop;
    };
    const Run r = run(mix, sched, 64, nullptr, threads, 16, 0, false, 7, poll);
    const double dt = seconds_since(t0);
    CHECK(r.res.cancelled);
    CHECK(r.res.diverged.empty());
    CHECK_MSG(dt < 0.7, "threads=%d: cancelled run took %.3f s", threads, dt);
    CHECK_MSG(polls >= 3, "threads=%d: %d polls", threads, polls.load());
    CHECK(!wrong_thread);
    CHECK(!concurrent);
  }
}

#ifdef GENSAMP_HAVE_OPENMP
// The caller thread (OpenMP thread 0) finishes its own tile fast and then only waits for the
// other thread's long tile. Ctrl-C must still be noticed within 0.5 s: the caller has to keep
// polling while it waits, not only while it computes.
class SlowOffCaller final : public Wrapper {
 public:
  using Wrapper::Wrapper;
  mutable std::atomic<int> tiles_started{0};

 private:
  void before_workspace() const override { ++tiles_started; }
  void before_score() const override {
    if (omp_get_thread_num() == 0) {
      // Hold the caller until the other thread has taken the second tile (so the caller cannot
      // run both tiles itself), then let it finish at full speed.
      const auto t0 = Clock::now();
      while (tiles_started.load() < 2 && seconds_since(t0) < 5) std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
};

void test_cancellation_while_caller_waits() {
  Mixture mix({1}, {0, 0}, 2, {1, 1}, {});
  SlowOffCaller slow(mix);
  const auto sched = plain_schedule(0.0, 0.01, 3000);  // the other thread's tile: >= 3 s
  const auto t0 = Clock::now();
  auto poll = [&] { return seconds_since(t0) > 0.1; };  // "Ctrl-C" at 100 ms
  const Run r = run(slow, sched, 32, nullptr, 2, 16, 0, false, 7, poll);
  const double dt = seconds_since(t0);
  CHECK_MSG(r.res.cancelled && dt < 0.6,
            "Ctrl-C at 0.1 s while the caller thread waited for another thread's tile: "
            "cancelled=%d after %.2f s (the caller stops polling once its own tiles are done)",
            int(r.res.cancelled), dt);
}
#endif

void test_concurrent_runs_on_one_model() {
  // What the Python binding does when several Python threads sample the same Weights: run_langevin
  // on one shared model object from several threads at once, each with its own noise levels.
  // Every run must equal the same run done alone.
  Mlp net(mlp_spec(2, 32, 3, Act::tanh, SigmaInput::log_sigma, true, 9));
  const auto sa = annealed_schedule({3.0, 1.0, 0.3, 0.1}, 1e-3, 40);
  const auto sb = annealed_schedule({0.7, 0.05}, 1e-3, 1);
  const Run ra = run(net, sa, 64, nullptr, 1, 16);
  const Run rb = run(net, sb, 4, nullptr, 1, 16);
  std::atomic<bool> done{false};
  std::atomic<int> b_mismatch{0};
  std::thread other([&] {
    while (!done) {
      const Run r = run(net, sb, 4, nullptr, 1, 16);
      if (!same_bits(r.x, rb.x)) ++b_mismatch;
    }
  });
  int a_mismatch = 0;
  for (int k = 0; k < 20; ++k) a_mismatch += !same_bits(run(net, sa, 64, nullptr, 1, 16).x, ra.x);
  done = true;
  other.join();
  CHECK_MSG(a_mismatch == 0 && b_mismatch == 0,
            "%d + %d of the concurrent runs differ from the same runs done alone "
            "(prepare() writes per-run noise-level tables into the shared model)",
            a_mismatch, b_mismatch.load());
}

void test_concurrent_runs_on_separate_models() {
  Mlp n1(mlp_spec(2, 32, 3, Act::tanh, SigmaInput::log_sigma, true, 9));
  Mlp n2(mlp_spec(2, 32, 3, Act::tanh, SigmaInput::log_sigma, true, 9));
  const auto sa = annealed_schedule({3.0, 1.0, 0.3, 0.1}, 1e-3, 20);
  const Run ref = run(n1, sa, 100, nullptr, 1, 16);
  Run r1, r2;
  std::thread t1([&] { r1 = run(n1, sa, 100, nullptr, 2, 16); });
  std::thread t2([&] { r2 = run(n2, sa, 100, nullptr, 2, 16); });
  t1.join();
  t2.join();
  CHECK(same_bits(r1.x, ref.x) && same_bits(r2.x, ref.x));
}

// Runs `child` in a forked process with a time limit; true when it exits 0 in time.
bool in_forked_child(const std::function<bool()>& child, int limit_s) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    alarm(unsigned(limit_s));  // a hang ends in SIGALRM, not a blocked test run
    _exit(child() ? 0 : 3);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status))
    std::fprintf(stderr, "  forked child killed by signal %d%s\n", WTERMSIG(status),
                 WTERMSIG(status) == SIGALRM ? " (hung: time limit)" : "");
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

void test_fork_after_parallel_run() {
  // The binding registers note_fork_child with pthread_atfork; do the same here.
  static const bool installed = pthread_atfork(nullptr, nullptr, note_fork_child) == 0;
  CHECK(installed);
  Mixture mix({1, 1}, {-2, 2}, 1, {1, 1}, {});
  const auto sched = plain_schedule(0.0, 0.05, 40);
  const Run parent = run(mix, sched, 300, nullptr, 2, 16);
  CHECK(!openmp_disabled());
  CHECK(in_forked_child(
      [&] {
        const Run child = run(mix, sched, 300, nullptr, 2, 16);
        return openmp_disabled() && same_bits(child.x, parent.x);
      },
      20));
  CHECK(!openmp_disabled());  // the parent keeps its threads
}

// Run in a fresh process image (the test re-executes this binary): a parallel region outside
// gensamp, as torch runs when it shares the process's libgomp, then a fork whose child samples
// with two threads. Exit status 0: the child finished with the right numbers.
int foreign_openmp_then_fork() {
  if (pthread_atfork(nullptr, nullptr, note_fork_child) != 0) return 4;  // as the binding does
  Mixture mix({1, 1}, {-2, 2}, 1, {1, 1}, {});
  const auto sched = plain_schedule(0.0, 0.05, 40);
  const Run ref = run(mix, sched, 300, nullptr, 1, 16);  // serial: no OpenMP used by gensamp
#ifdef GENSAMP_HAVE_OPENMP
  std::atomic<int> seen{0};
#pragma omp parallel num_threads(2)
  seen += 1;
  if (seen.load() < 1) return 5;
#endif
  return in_forked_child([&] { return same_bits(run(mix, sched, 300, nullptr, 2, 16).x, ref.x); },
                         8)
             ? 0
             : 6;
}

void test_fork_after_foreign_openmp_use() {
  std::fflush(nullptr);
  const pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    alarm(30);
    execl("/proc/self/exe", "gensamp_core_tests", "--foreign-openmp-then-fork", (char*)nullptr);
    _exit(7);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "a forked child hung or failed in its first parallel run after OpenMP was used "
            "outside gensamp before the fork (status %d: exit 6 = the child timed out or differed)",
            status);
}

// ---- memory accounting ---------------------------------------------------------------------

// A spec whose vectors have exactly the capacity they need, as the binding builds them (what
// Mlp::bytes() assumes).
MlpSpec exact_copy(const MlpSpec& s) {
  MlpSpec e;
  e.layers.reserve(s.layers.size());
  for (const Dense& l : s.layers) e.layers.push_back(l);
  e.acts.reserve(s.acts.size());
  for (Act a : s.acts) e.acts.push_back(a);
  e.sigma_input = s.sigma_input;
  e.divide_by_sigma = s.divide_by_sigma;
  e.shift = s.shift;
  e.scale = s.scale;
  return e;
}

// Networks of the shapes whose packing costs most: narrow first and last layers.
std::vector<MlpSpec> accounting_specs() {
  std::vector<MlpSpec> specs;
  specs.push_back(mlp_spec(2, 200, 3, Act::relu));
  specs.push_back(mlp_spec(3, 70, 2, Act::tanh, SigmaInput::log_sigma, true, 3));
  specs.push_back(mlp_spec(1, 17, 4, Act::silu, SigmaInput::sigma, false, 4));
  auto normed = mlp_spec(5, 33, 2, Act::elu, SigmaInput::none, true, 5);
  normed.shift.assign(5, 0.5f);
  normed.scale.assign(5, 2.f);
  specs.push_back(normed);
  return specs;
}

void test_model_bytes_equal_allocations() {
  for (const MlpSpec& spec : accounting_specs()) {
    heap::Since h;
    {
      MlpSpec e = exact_copy(spec);
      Mlp net(std::move(e));
      CHECK_MSG(h.held() == int64_t(Mlp::bytes(spec)) && h.most() == h.held(),
                "Mlp holds %lld bytes (at most %lld at once), Mlp::bytes says %llu",
                (long long)h.held(), (long long)h.most(), (unsigned long long)Mlp::bytes(spec));
    }
    CHECK(h.held() == 0);
  }
  for (bool full : {false, true})
    for (int K : {1, 3})
      for (int d : {1, 4}) {
        heap::Since h;
        {
          std::vector<double> w(size_t(K), 1.0), mu(size_t(K) * d, 0.0), var, cov;
          if (full) {
            cov.assign(size_t(K) * d * d, 0.0);
            for (int k = 0; k < K; ++k)
              for (int i = 0; i < d; ++i) cov[(size_t(k) * d + i) * d + i] = 1.0;
          } else {
            var.assign(size_t(K) * d, 1.0);
          }
          Mixture m(std::move(w), std::move(mu), d, std::move(var), std::move(cov));
          CHECK_MSG(h.most() == int64_t(Mixture::bytes(K, d, full)),
                    "K=%d d=%d full=%d: %lld bytes at most, Mixture::bytes says %llu", K, d,
                    int(full), (long long)h.most(), (unsigned long long)Mixture::bytes(K, d, full));
        }
      }
}

std::vector<std::unique_ptr<ScoreModel>> accounting_models() {
  std::vector<std::unique_ptr<ScoreModel>> models;
  for (const MlpSpec& spec : accounting_specs()) models.push_back(std::make_unique<Mlp>(spec));
  models.push_back(
      std::make_unique<Mixture>(std::vector<double>{1, 2}, std::vector<double>{-1, 0, 0, 1, 0, 0},
                                3, std::vector<double>{1, 1, 1, 2, 2, 2}, std::vector<double>{}));
  std::vector<double> cov(2 * 9, 0.0);
  for (int k = 0; k < 2; ++k)
    for (int i = 0; i < 3; ++i) cov[size_t(k) * 9 + size_t(i) * 4] = 1.0 + k;
  models.push_back(std::make_unique<Mixture>(std::vector<double>{1, 2},
                                             std::vector<double>{-1, 0, 0, 1, 0, 0}, 3,
                                             std::vector<double>{}, cov));
  return models;
}

void test_levels_and_workspace_bytes_equal_allocations() {
  const auto models = accounting_models();
  for (size_t m = 0; m < models.size(); ++m) {
    const ScoreModel& model = *models[m];
    for (size_t L : {size_t(1), size_t(7), size_t(3000)}) {
      std::vector<double> sigmas(L);
      for (size_t l = 0; l < L; ++l) sigmas[l] = 5.0 / double(l + 1);
      heap::Since h;
      const auto lv = model.prepare(sigmas, {});
      CHECK_MSG(h.held() == int64_t(model.levels_bytes(L)) && h.most() == h.held(),
                "model %zu, %zu levels: prepare() holds %lld bytes (at most %lld), "
                "levels_bytes says %llu",
                m, L, (long long)h.held(), (long long)h.most(),
                (unsigned long long)model.levels_bytes(L));
    }
    for (int width : {1, 5, 16, 64}) {
      heap::Since h;
      const auto ws = model.workspace(width);
      CHECK_MSG(h.held() == int64_t(model.workspace_bytes(width)),
                "model %zu width %d: workspace holds %lld bytes, workspace_bytes says %llu", m,
                width, (long long)h.held(), (unsigned long long)model.workspace_bytes(width));
    }
  }
}

void test_run_bytes_bound_the_run() {
  const auto models = accounting_models();
  const auto sched = annealed_schedule({3.0, 1.0, 0.3}, 1e-3, 4);
  for (size_t m = 0; m < models.size(); ++m)
    for (int64_t n : {int64_t(3), int64_t(100)})
      for (int threads : {1, 2, 4}) {
        const ScoreModel& model = *models[m];
        RunOptions opt;
        opt.threads = threads;
        opt.tile = 32;
        opt.record_every = 2;
        std::vector<float> x(size_t(n) * size_t(model.dim()));
        std::vector<float> traj(size_t(sched.total_steps() / 2) * x.size());
        const RunBytes b = run_langevin_bytes(model, sched, n, opt);
        heap::Since h;
        const RunResult r = run_langevin(model, sched, n, x.data(), 1.0, traj.data(), opt);
        const int64_t estimate = int64_t(b.levels + b.tiles);
        // One thread: exactly the estimate (the tables, then one tile at a time). More: the
        // tiles in flight at once vary, the estimate counts all of them.
        CHECK_MSG(threads == 1 ? h.most() == estimate : h.most() <= estimate,
                  "model %zu n=%lld threads=%d: the run allocated %lld bytes at most, "
                  "run_langevin_bytes says %lld",
                  m, (long long)n, threads, (long long)h.most(), (long long)estimate);
        CHECK(r.diverged.empty());
      }
  Uniform U(3);
  MlpSpec dec_spec;
  dec_spec.layers.push_back(dense(40, 3, U));
  dec_spec.layers.push_back(dense(10, 40, U, 0.1));
  dec_spec.acts.push_back(Act::tanh);
  const Mlp dec(dec_spec);
  for (int64_t n : {int64_t(5), int64_t(300)})
    for (int threads : {1, 3}) {
      RunOptions opt;
      opt.threads = threads;
      std::vector<float> x(size_t(n) * 5);
      const RunBytes b = vae_sample_bytes(dec, n, opt);
      heap::Since h;
      vae_sample(dec, n, x.data(), opt);
      CHECK_MSG(threads == 1 ? h.most() == int64_t(b.tiles) : h.most() <= int64_t(b.tiles),
                "vae n=%lld threads=%d: %lld bytes at most, vae_sample_bytes says %llu",
                (long long)n, threads, (long long)h.most(), (unsigned long long)b.tiles);
    }
  // Every likelihood, with and without decoder noise, with the mixture prior's table.
  const Mlp dec6 = vae_decoder(6);
  for (Likelihood lik :
       {Likelihood::gaussian, Likelihood::bernoulli, Likelihood::continuous_bernoulli})
    for (bool noise : {true, false})
      for (int threads : {1, 3}) {
        const int64_t n = 150;
        const VaeSpec spec = two_component_prior(lik, noise);
        RunOptions opt;
        opt.threads = threads;
        opt.tile = 32;
        std::vector<float> x(size_t(n) * size_t(vae_data_dim(dec6, lik)));
        const RunBytes b = vae_sample_bytes(dec6, n, opt, lik, noise, 2);
        heap::Since h;
        vae_sample(dec6, n, x.data(), opt, spec);
        const int64_t estimate = int64_t(b.levels + b.tiles);
        CHECK_MSG(threads == 1 ? h.most() == estimate : h.most() <= estimate,
                  "vae likelihood %d noise %d threads=%d: %lld bytes at most, estimate %lld",
                  int(lik), int(noise), threads, (long long)h.most(), (long long)estimate);
      }
}

// ---- log-densities ---------------------------------------------------------------------------

// The probability-flow ODE over n points of a model: (u at sigma_N, trace integrals, result).
struct Ode {
  std::vector<double> u, delta;
  RunResult res;
};

Ode ode(const ScoreModel& m, int64_t n, int probes, int threads, int tile,
        std::function<bool()> poll = {}) {
  Ode r;
  Uniform U(11);
  for (int64_t i = 0; i < n * m.dim(); ++i) r.u.push_back(2.0 * U());
  r.delta.assign(size_t(n), 0.0);
  RunOptions opt;
  opt.seed = 5;
  opt.threads = threads;
  opt.tile = tile;
  opt.poll = std::move(poll);
  r.res = log_density_ode(m, {0.05, 0.2, 0.7, 3.0}, probes, n, r.u.data(), r.delta.data(), opt);
  return r;
}

bool same_doubles(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

void test_log_density_bytes_equal_allocations() {
  const auto models = accounting_models();
  for (size_t m = 0; m < models.size(); ++m) {
    const ScoreModel& model = *models[m];
    for (size_t L : {size_t(1), size_t(9)}) {
      std::vector<double> sigmas(L);
      for (size_t l = 0; l < L; ++l) sigmas[l] = 5.0 / double(l + 1);
      heap::Since h;
      const auto lv = model.prepare_div(sigmas, {});
      CHECK_MSG(h.held() == int64_t(model.levels_div_bytes(L)) && h.most() == h.held(),
                "model %zu, %zu levels: prepare_div() holds %lld bytes (at most %lld), "
                "levels_div_bytes says %llu",
                m, L, (long long)h.held(), (long long)h.most(),
                (unsigned long long)model.levels_div_bytes(L));
    }
    for (int probes : {0, 3})
      for (int width : {1, 16, 48}) {
        heap::Since h;
        const auto ws = model.div_workspace(width, probes);
        CHECK_MSG(h.held() == int64_t(model.div_workspace_bytes(width, probes)),
                  "model %zu width %d probes %d: %lld bytes, div_workspace_bytes says %llu", m,
                  width, probes, (long long)h.held(),
                  (unsigned long long)model.div_workspace_bytes(width, probes));
      }
    for (int probes : {0, 2})
      for (int threads : {1, 3}) {
        RunOptions opt;
        opt.threads = threads;
        opt.tile = 32;
        const int64_t n = 100;
        std::vector<double> u(size_t(n) * size_t(model.dim()), 0.5), delta(u.size());
        const std::vector<double> grid{0.1, 0.3, 1.0, 2.0};
        const RunBytes b = log_density_ode_bytes(model, grid.size(), probes, n, opt);
        heap::Since h;
        log_density_ode(model, grid, probes, n, u.data(), delta.data(), opt);
        const int64_t estimate = int64_t(b.levels + b.tiles);
        CHECK_MSG(threads == 1 ? h.most() == estimate : h.most() <= estimate,
                  "model %zu probes=%d threads=%d: %lld bytes at most, "
                  "log_density_ode_bytes says %lld",
                  m, probes, threads, (long long)h.most(), (long long)estimate);
      }
  }
}

void test_log_density_thread_and_tile_invariance() {
  const Mlp net(mlp_spec(3, 40, 3, Act::gelu_tanh, SigmaInput::log_sigma, true, 2));
  const auto models = accounting_models();
  const ScoreModel* full_mixture = models.back().get();
  for (const ScoreModel* m : {static_cast<const ScoreModel*>(&net), full_mixture})
    for (int probes : {0, 2}) {
      const Ode ref = ode(*m, 77, probes, 1, 16);
      CHECK(ref.res.diverged.empty() && !ref.res.cancelled);
      for (int threads : {1, 2, 5})
        for (int tile : {1, 16, 20, 64}) {
          const Ode o = ode(*m, 77, probes, threads, tile);
          CHECK_MSG(same_doubles(o.u, ref.u) && same_doubles(o.delta, ref.delta),
                    "probes=%d threads=%d tile=%d", probes, threads, tile);
        }
    }
}

void test_log_density_failures_and_cancellation() {
  Mixture mix({1, 1}, {-1, 1}, 1, {1, 1}, {});
  const Ode ref = ode(mix, 300, 0, 1, 16);
  for (int threads : {1, 3}) {
    for (long after : {0L, 40L}) {
      Throwing t(mix, Throwing::Where::score, after);
      CHECK(throws<std::runtime_error>([&] { ode(t, 300, 0, threads, 16); },
                                       "injected failure in score()"));
    }
    Throwing tw(mix, Throwing::Where::workspace, 2);
    CHECK(throws<std::runtime_error>([&] { ode(tw, 300, 1, threads, 16); },
                                     "injected failure in workspace()"));
    CHECK(same_doubles(ode(mix, 300, 0, threads, 16).delta, ref.delta));
  }
  CHECK(throws<std::invalid_argument>([&] {
    std::vector<double> u(2), delta(2);
    log_density_ode(mix, {1.0}, 0, 2, u.data(), delta.data(), RunOptions{});
  }));
  // Ctrl-C: a long integration over many points stops soon after the poll says so.
  const auto t0 = Clock::now();
  const Ode stopped = ode(mix, 2000000, 0, 2, 64, [&] { return seconds_since(t0) > 0.1; });
  CHECK(stopped.res.cancelled);
  CHECK_MSG(seconds_since(t0) < 1.0, "cancelled integration took %.3f s", seconds_since(t0));
}

// ---- set-up interrupts ---------------------------------------------------------------------

void test_prepare_stops_when_asked() {
  // Enough levels that every model with per-level tables consults `stop` a few times; told to
  // stop, prepare() returns nothing and leaves nothing allocated.
  const auto models = accounting_models();
  std::vector<double> sigmas(200000);
  for (size_t l = 0; l < sigmas.size(); ++l) sigmas[l] = 5.0 / double(l + 1);
  for (size_t m = 0; m < models.size(); ++m) {
    const bool has_tables = models[m]->levels_bytes(2) > models[m]->levels_bytes(1);
    int asked = 0;
    heap::Since h;
    const auto lv = models[m]->prepare(sigmas, [&] { return ++asked > 2; });
    if (!has_tables) {  // an unconditioned network: nothing to compute per level
      CHECK(lv && asked == 0);
      continue;
    }
    CHECK_MSG(!lv && asked == 3, "model %zu: prepare() asked %d times, returned %s", m, asked,
              lv ? "tables" : "nothing");
    CHECK(h.held() == 0);
  }
}

// A full-covariance mixture whose per-run set-up (one Cholesky factor of a 384 x 384 matrix per
// level) takes far longer than the test: Ctrl-C must stop the run during set-up.
void test_cancellation_during_set_up() {
  const int d = 384;
  std::vector<double> cov(size_t(d) * d, 0.0);
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j)
      cov[size_t(i) * d + j] = (i == j ? 2.0 : 0.0) + 1.0 / (1 + std::abs(i - j));
  Mixture mix({1}, std::vector<double>(size_t(d), 0.0), d, {}, cov);
  std::vector<double> sigmas(400);
  for (size_t l = 0; l < sigmas.size(); ++l) sigmas[l] = 10.0 / double(l + 1);
  const auto sched = annealed_schedule(sigmas, 1e-4, 1);
  const auto caller = std::this_thread::get_id();
  for (int threads : {1, 2}) {
    bool wrong_thread = false;
    int polls = 0;
    const auto t0 = Clock::now();
    auto poll = [&] {
      wrong_thread |= std::this_thread::get_id() != caller;
      ++polls;
      return seconds_since(t0) > 0.15;  // "Ctrl-C" after 150 ms, deep in the set-up
    };
    const Run r = run(mix, sched, 4, nullptr, threads, 16, 0, false, 7, poll);
    const double dt = seconds_since(t0);
    CHECK(r.res.cancelled);
    CHECK_MSG(dt < 0.5, "threads=%d: cancelled during set-up after %.3f s", threads, dt);
    CHECK_MSG(polls >= 2, "threads=%d: %d polls during set-up", threads, polls);
    CHECK(!wrong_thread);
  }
}

// ---- thread starts -------------------------------------------------------------------------

#ifdef __GLIBC__
void* run_then_exit_thread(void* arg) {
  auto* model = static_cast<Mixture*>(arg);
  const auto sched = plain_schedule(0.0, 0.01, 1000000);
  int polls = 0;
  // What CPython does to a thread that asks for the GIL during finalisation.
  run(*model, sched, 16, nullptr, 1, 16, 0, false, 7, [&]() -> bool {
    if (++polls == 3) pthread_exit(nullptr);
    return false;
  });
  return reinterpret_cast<void*>(1);  // not reached
}

void test_thread_exit_unwinds_through_a_run() {
  // glibc ends a thread by unwinding it with abi::__forced_unwind; the engine's catch-all must
  // let it through (swallowing it aborts: "FATAL: exception not rethrown").
  CHECK(in_forked_child(
      [] {
        Mixture mix({1}, {0, 0}, 2, {1, 1}, {});
        pthread_t t;
        if (pthread_create(&t, nullptr, run_then_exit_thread, &mix) != 0) return false;
        void* ret = reinterpret_cast<void*>(2);
        pthread_join(t, &ret);
        return ret == nullptr;  // PTHREAD_EXIT's value: the thread ended by pthread_exit
      },
      20));
}
#endif

void test_startable_team() {
  CHECK(startable_team(1) == 1);
  CHECK(startable_team(4) == 4);
  CHECK(probe_team(1) == 1);
  CHECK(probe_team(6) == 6);
  // The probe reads OpenMP's stack size as libgomp does.
  const char* saved = std::getenv("OMP_STACKSIZE");
  const std::string keep = saved ? saved : "";
  setenv("OMP_STACKSIZE", " 3 M ", 1);
  CHECK(omp_stack_bytes() == size_t(3) << 20);
  setenv("OMP_STACKSIZE", "512", 1);
  CHECK(omp_stack_bytes() == size_t(512) << 10);
  setenv("OMP_STACKSIZE", "2x", 1);
  CHECK(omp_stack_bytes() == 0);
  if (saved)
    setenv("OMP_STACKSIZE", keep.c_str(), 1);
  else
    unsetenv("OMP_STACKSIZE");
}

// Run in a fresh process image whose OpenMP threads would each need a petabyte of stack, so no
// thread can be created: without the probe libgomp ends the process ("Thread creation failed",
// exit status 1); with it, the run goes on with the calling thread alone, same bits.
int runs_without_creatable_threads() {
  if (startable_team(8) != 1 || probe_team(8) != 1) return 4;
  Mixture mix({1, 1}, {-2, 2}, 1, {1, 1}, {});
  const auto sched = plain_schedule(0.0, 0.05, 40);
  const Run one = run(mix, sched, 300, nullptr, 1, 16);
  const Run eight = run(mix, sched, 300, nullptr, 8, 16);
  return same_bits(one.x, eight.x) ? 0 : 5;
}

void test_team_shrinks_when_threads_cannot_start() {
  std::fflush(nullptr);
  const pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    alarm(30);
    setenv("OMP_STACKSIZE", "1000000G", 1);  // read by libgomp when the new image starts
    execl("/proc/self/exe", "gensamp_core_tests", "--no-creatable-threads", (char*)nullptr);
    _exit(7);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "a run whose threads cannot be created ended with status %d (exit status 1: the "
            "OpenMP runtime ended the process; 4: the probe counted threads that cannot start)",
            WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
}

struct Test {
  const char* name;
  void (*fn)();
};

const Test kTests[] = {
    {"step_programs", test_step_programs},
    {"graph_net", test_graph_net},
    {"philox_known_answers", test_philox_known_answers},
    {"kernel_families_share_one_simd_level", test_kernel_families_share_one_simd_level},
    {"normals_layout_and_moments", test_normals_layout_and_moments},
    {"mlp_validation", test_mlp_validation},
    {"mlp_forward_matches_reference", test_mlp_forward_matches_reference},
    {"mlp_sigma_conditioning", test_mlp_sigma_conditioning},
    {"mixture_validation_and_score", test_mixture_validation_and_score},
    {"thread_and_tile_invariance", test_thread_and_tile_invariance},
    {"chain_offset_slices", test_chain_offset_slices},
    {"vae_likelihoods_and_prior", test_vae_likelihoods_and_prior},
    {"x0_and_normalisation", test_x0_and_normalisation},
    {"divergence_reported_exactly", test_divergence_reported_exactly},
    {"exceptions_leave_parallel_region", test_exceptions_leave_parallel_region},
    {"cancellation", test_cancellation},
#ifdef GENSAMP_HAVE_OPENMP
    {"cancellation_while_caller_waits", test_cancellation_while_caller_waits},
#endif
    {"concurrent_runs_on_separate_models", test_concurrent_runs_on_separate_models},
    {"model_bytes_equal_allocations", test_model_bytes_equal_allocations},
    {"levels_and_workspace_bytes_equal_allocations",
     test_levels_and_workspace_bytes_equal_allocations},
    {"run_bytes_bound_the_run", test_run_bytes_bound_the_run},
    {"log_density_bytes_equal_allocations", test_log_density_bytes_equal_allocations},
    {"log_density_thread_and_tile_invariance", test_log_density_thread_and_tile_invariance},
    {"log_density_failures_and_cancellation", test_log_density_failures_and_cancellation},
    {"prepare_stops_when_asked", test_prepare_stops_when_asked},
    {"cancellation_during_set_up", test_cancellation_during_set_up},
    {"startable_team", test_startable_team},
    {"team_shrinks_when_threads_cannot_start", test_team_shrinks_when_threads_cannot_start},
#ifdef __GLIBC__
    {"thread_exit_unwinds_through_a_run", test_thread_exit_unwinds_through_a_run},
#endif
    // Fork tests change process-wide state (the atfork handler): after the others.
    {"fork_after_parallel_run", test_fork_after_parallel_run},
    {"fork_after_foreign_openmp_use", test_fork_after_foreign_openmp_use},
    // Last: with the shared-model race present, AddressSanitizer may stop the process here.
    {"concurrent_runs_on_one_model", test_concurrent_runs_on_one_model},
};

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--foreign-openmp-then-fork") == 0)
    return foreign_openmp_then_fork();
  if (argc == 2 && std::strcmp(argv[1], "--no-creatable-threads") == 0)
    return runs_without_creatable_threads();
  std::printf("gensamp core tests (SIMD level %s)\n", simd_level_name(simd_level()));
  int ran = 0;
  for (const Test& t : kTests) {
    bool selected = argc < 2;
    for (int i = 1; i < argc; ++i) selected |= std::strcmp(argv[i], t.name) == 0;
    if (!selected) continue;
    ++ran;
    std::printf("[ RUN  ] %s\n", t.name);
    std::fflush(stdout);
    const int before = g_failures;
    const auto t0 = Clock::now();
    try {
      t.fn();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "  uncaught exception: %s\n", e.what());
      ++g_failures;
    }
    const bool ok = g_failures == before;
    g_test_failures += !ok;
    std::printf("[ %s ] %s (%.2f s)\n", ok ? " OK " : "FAIL", t.name, seconds_since(t0));
    std::fflush(stdout);
  }
  if (ran == 0) {
    std::fprintf(stderr, "no test matched\n");
    return 2;
  }
  std::printf("%d of %d tests passed\n", ran - g_test_failures, ran);
  return g_test_failures ? 1 : 0;
}
