// Score models the samplers can drive: an MLP over exported weights, or an exact Gaussian
// mixture. Chains are processed in tiles; inside a tile the state is feature-major
// ([dim][width], width a multiple of kLane) so that the matrix kernels vectorise across chains.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace gensamp {

constexpr int kLane = 16;  // tile widths are padded to this many chains (one AVX-512 register)

// Asked between pieces of long set-up work; true means stop now (Ctrl-C). May be empty.
// Callers throttle it (see RunOptions::poll), so set-up code may call it often.
using StopFn = std::function<bool()>;

// Memory accounting. The *_bytes() functions below say what a call will allocate so that a run
// can be refused before it starts: each heap block counts its elements plus kBlockOverhead
// (the allocator's header), and every sum saturates instead of wrapping.
constexpr uint64_t kBlockOverhead = 16;
uint64_t sat_add(uint64_t a, uint64_t b);
uint64_t sat_mul(uint64_t a, uint64_t b);
// One block of `count` elements of `size` bytes; 0 for count 0 (std::vector allocates nothing).
uint64_t block_bytes(uint64_t count, uint64_t size);

enum class Act { identity, relu, leaky_relu, elu, silu, softplus, tanh, sigmoid, gelu, gelu_tanh };
enum class SigmaInput { none, sigma, log_sigma };

Act parse_act(const std::string& name);  // throws std::invalid_argument
SigmaInput parse_sigma_input(const std::string& name);

// Per-thread scratch memory, allocated once before a run.
struct Workspace {
  virtual ~Workspace() = default;
};

// What a run precomputes from its noise levels. Owned by the run, never stored in the model:
// models are immutable after construction, so any number of concurrent runs (several Python
// threads) can share one model object.
struct Levels {
  virtual ~Levels() = default;
};

class ScoreModel {
 public:
  virtual ~ScoreModel() = default;
  virtual int dim() const = 0;  // d: the chain state's width
  // Precomputes everything that depends on the noise levels, once per run (may throw). This can
  // take seconds (10^6 levels, full covariances), so it calls `stop` as it goes and returns
  // nullptr as soon as that says so.
  virtual std::unique_ptr<Levels> prepare(const std::vector<double>& sigmas,
                                          const StopFn& stop) const = 0;
  virtual std::unique_ptr<Workspace> workspace(int width) const = 0;
  // What prepare() allocates for `levels` noise levels, and workspace(width), in bytes.
  virtual uint64_t levels_bytes(uint64_t levels) const = 0;
  virtual uint64_t workspace_bytes(int width) const = 0;
  // out[i*width + c] = score of chain c at level `level` of `lv` (normalised coordinates).
  // Thread-safe given distinct workspaces.
  virtual void score(const float* x, int width, const Levels& lv, int level, float* out,
                     Workspace& ws) const = 0;
  // Affine map between data space and the model's coordinates: u = (x - shift) / scale.
  virtual const float* shift() const { return nullptr; }
  virtual const float* scale() const { return nullptr; }

  // The divergence of the score, for log-densities (gensamp.log_prob). Optional: the defaults
  // below throw std::logic_error, except the two that fall back to prepare()'s tables.
  //
  // score_div() writes the score as score() does (same bits) and, per chain c,
  //   probes == 0: div[c] = tr grad_u s, exactly (v is not read);
  //   probes > 0:  div[c] = (1/probes) sum_p v_p^T (grad_u s) v_p, the directions v_p given
  //                feature-major as v[(i * probes + p) * width + c] (component i of v_p).
  // `lv` must come from prepare_div(), which may add what the divergence needs to prepare()'s
  // tables (a mixture's tr P_k); div_workspace(width, probes) is the workspace it needs.
  virtual std::unique_ptr<Levels> prepare_div(const std::vector<double>& sigmas,
                                              const StopFn& stop) const {
    return prepare(sigmas, stop);
  }
  virtual uint64_t levels_div_bytes(uint64_t levels) const { return levels_bytes(levels); }
  virtual std::unique_ptr<Workspace> div_workspace(int width, int probes) const;
  virtual uint64_t div_workspace_bytes(int width, int probes) const;
  virtual void score_div(const float* x, int width, const Levels& lv, int level, const float* v,
                         int probes, float* out, double* div, Workspace& ws) const;
};

struct Dense {
  int in = 0, out = 0;
  std::vector<float> W;  // [out][in], row-major (torch's nn.Linear layout)
  std::vector<float> b;  // [out]
};

struct MlpSpec {
  std::vector<Dense> layers;
  std::vector<Act> acts;  // one per hidden layer: acts.size() == layers.size() - 1
  SigmaInput sigma_input = SigmaInput::none;
  bool divide_by_sigma = false;
  std::vector<float> shift, scale;  // empty = identity normalisation
};

class Mlp final : public ScoreModel {
 public:
  explicit Mlp(MlpSpec spec);  // validates shapes; throws std::invalid_argument
  // Bytes an Mlp built from a spec of these shapes holds: the spec's copy of the weights and the
  // packed copies the kernels read (which can be many times the weights: a narrow layer is
  // padded to 16 or 64 outputs). Reads only each layer's in/out and the normalisation's length;
  // `spec` need not hold any weights.
  static uint64_t bytes(const MlpSpec& spec);
  int dim() const override { return d_; }
  int input_dim() const { return spec_.layers.front().in; }
  int output_dim() const { return spec_.layers.back().out; }
  std::unique_ptr<Levels> prepare(const std::vector<double>& sigmas,
                                  const StopFn& stop) const override;
  std::unique_ptr<Workspace> workspace(int width) const override;
  uint64_t levels_bytes(uint64_t levels) const override;
  uint64_t workspace_bytes(int width) const override;
  void score(const float* x, int width, const Levels& lv, int level, float* out,
             Workspace& ws) const override;
  // Forward-mode differentiation: the tangents of the directions go through every layer
  // beside the chains (one matrix product per layer over probes * width columns, d columns
  // per chain for the exact trace).
  std::unique_ptr<Workspace> div_workspace(int width, int probes) const override;
  uint64_t div_workspace_bytes(int width, int probes) const override;
  void score_div(const float* x, int width, const Levels& lv, int level, const float* v, int probes,
                 float* out, double* div, Workspace& ws) const override;
  // Raw network on a tile: x is [input_dim][width] including any sigma column the caller
  // appended; out is [output_dim][width]. Used by the VAE decoder and by the parity tests.
  void forward(const float* x, int width, float* out, Workspace& ws) const;
  const float* shift() const override { return spec_.shift.empty() ? nullptr : spec_.shift.data(); }
  const float* scale() const override { return spec_.scale.empty() ? nullptr : spec_.scale.data(); }
  // Length of shift and scale (0 without them): the input's data dimension, or for a VAE
  // decoder's use half the output width.
  size_t norm_size() const { return spec_.shift.size(); }

 private:
  void forward_from(const float* x, int in_rows, const float* bias0, int width, float* out,
                    Workspace& ws) const;
  MlpSpec spec_;
  int d_ = 0, max_width_ = 0;
  std::vector<float> w0_data_;    // W0 without its sigma column (noise-conditional nets)
  std::vector<float> sigma_col_;  // that column
  // Per layer, for the narrow-tile kernel: W transposed and zero-padded to a multiple of 16
  // outputs (wt_), or packed in 64-output panels (wp_, see LayerRef::WP); only the one the
  // process's narrow kernel reads is built, the other stays empty. b_pad_: the padded bias.
  // wt0_data_ / wp0_data_: the same for W0 without the sigma column.
  std::vector<std::vector<float>> wt_, b_pad_, wp_;
  std::vector<float> wt0_data_, wp0_data_;
};

// A score network given as a graph (weights format 2): nodes in topological order, each reading
// earlier nodes. Every value is a feature vector per chain ([n, k]; torch's [n] is k = 1).
// Values that do not depend on x (sigma, constants, embeddings of sigma, c_in/c_out/c_skip) are
// computed once per noise level in prepare(); only the x-dependent nodes run per chain-step.
enum class Op {
  x,
  sigma,
  constant,
  scalar,
  linear,
  act,
  sin,
  cos,
  exp,
  log,
  sqrt,
  neg,
  pow,
  add,
  sub,
  mul,
  div,
  cat,
  slice,
  layer_norm
};
Op parse_op(const std::string& name);  // throws std::invalid_argument

struct GraphNode {
  Op op = Op::x;
  std::vector<int> in;      // indices of earlier nodes
  Act act = Act::identity;  // Op::act
  double p = 0;             // pow: the exponent; layer_norm: eps; scalar: the value
  int start = 0, stop = 0;  // Op::slice: features [start, stop)
  int rows = 0, cols = 0;   // Op::linear: a is W [rows][cols]
  std::vector<float> a;     // linear: W; constant: the value; layer_norm: weight
  std::vector<float> b;     // linear: bias; layer_norm: bias
};

struct GraphSpec {
  int dim = 0;  // d: width of the x node and of the output (the last node)
  std::vector<GraphNode> nodes;
  std::vector<float> shift, scale;  // empty = identity normalisation
};

class GraphNet final : public ScoreModel {
 public:
  explicit GraphNet(GraphSpec spec);  // validates every node; throws std::invalid_argument
  // What a GraphNet built from `spec` holds, in bytes (weights, packed copies, the plan).
  static uint64_t bytes(const GraphSpec& spec);
  int dim() const override { return spec_.dim; }
  std::unique_ptr<Levels> prepare(const std::vector<double>& sigmas,
                                  const StopFn& stop) const override;
  std::unique_ptr<Workspace> workspace(int width) const override;
  uint64_t levels_bytes(uint64_t levels) const override;
  uint64_t workspace_bytes(int width) const override;
  void score(const float* x, int width, const Levels& lv, int level, float* out,
             Workspace& ws) const override;
  const float* shift() const override { return spec_.shift.empty() ? nullptr : spec_.shift.data(); }
  const float* scale() const override { return spec_.scale.empty() ? nullptr : spec_.scale.data(); }

  struct Operand {  // where a step reads a value
    bool chain = true;
    int buf = -1;  // chain: pool buffer, -1 = the input x
    int row = 0;   // chain: first row in that buffer; level: offset in a level's table row
    int width = 0;
  };
  struct Step {
    int node = 0;  // the graph node it computes (or gathers for)
    int kind = 0;  // see graph.cpp
    Operand dst;
    std::vector<Operand> src;
    int packed = -1;      // linear: index into the packed weights
    int level_bias = -1;  // linear: offset of its per-level bias, -1 = static bias
    bool relu = false;    // linear: a ReLU fused into its store
  };

 private:
  GraphSpec spec_;
  std::vector<int> width_;
  std::vector<char> chain_;  // depends on x
  // The per-level table: which level-kind values chain steps read, and where.
  std::vector<int> level_off_;  // per node, -1 if not stored
  struct SplitBias {
    int node, off;
    std::vector<int> level_cols;
  };
  std::vector<SplitBias> split_;  // linears over [chain | level] inputs: bias per level
  size_t stride_ = 0;
  std::vector<Step> steps_;
  int n_bufs_ = 0, buf_rows_ = 0;
  Operand out_;
  struct Packed {
    std::vector<float> W, WT, WP, b;  // chain columns only; b padded to a multiple of 64
    int out = 0, in = 0;
  };
  std::vector<Packed> packed_;
};

// Exact score of sum_k w_k N(mu_k, Sigma_k + sigma^2 I); Sigma_k diagonal or full.
class Mixture final : public ScoreModel {
 public:
  // weights [K] (positive, normalised here), means [K*d]; exactly one of variances [K*d]
  // (diagonal) or covs [K*d*d] (full, symmetric positive definite) is non-empty.
  Mixture(std::vector<double> weights, std::vector<double> means, int d,
          std::vector<double> variances, std::vector<double> covs);
  // Bytes a Mixture of this shape holds, with the weights it is given while it is built.
  static uint64_t bytes(int K, int d, bool full);
  int dim() const override { return d_; }
  std::unique_ptr<Levels> prepare(const std::vector<double>& sigmas,
                                  const StopFn& stop) const override;
  std::unique_ptr<Workspace> workspace(int width) const override;
  uint64_t levels_bytes(uint64_t levels) const override;
  uint64_t workspace_bytes(int width) const override;
  void score(const float* x, int width, const Levels& lv, int level, float* out,
             Workspace& ws) const override;
  // Analytic: grad s = sum_k r_k (g_k g_k^T - P_k) - s s^T with g_k = -P_k (u - mu_k),
  // P_k = (Sigma_k + sigma^2 I)^-1 and r_k the posterior weights.
  std::unique_ptr<Levels> prepare_div(const std::vector<double>& sigmas,
                                      const StopFn& stop) const override;
  uint64_t levels_div_bytes(uint64_t levels) const override;
  std::unique_ptr<Workspace> div_workspace(int width, int probes) const override;
  uint64_t div_workspace_bytes(int width, int probes) const override;
  void score_div(const float* x, int width, const Levels& lv, int level, const float* v, int probes,
                 float* out, double* div, Workspace& ws) const override;

 private:
  std::unique_ptr<Levels> prepare_levels(const std::vector<double>& sigmas, const StopFn& stop,
                                         bool traces) const;
  // One chain's score (double) and posterior weights, left in the workspace.
  void lane(const float* xt, int width, int c, const Levels& lv, int level, Workspace& ws) const;
  int K_, d_;
  bool full_;
  std::vector<double> logw_, means_, vars_, covs_;
};

}  // namespace gensamp
