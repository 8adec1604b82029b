// Score models: the MLP over exported weights, the exact Gaussian mixture, and their raw
// evaluation on row-major data. Argument checks: see the rule at the top of module.cpp.
#include <pybind11/stl.h>

#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "bindings.hpp"
#include "gensamp/model.hpp"
#include "gensamp/sampler.hpp"

using namespace gensamp;
using namespace gensamp_py;

namespace {

constexpr int kRowTile = 256;  // chains per tile when score() / forward() take row-major data

template <class A>
void check_finite(const A& a, const char* what) {
  const auto* p = a.data();
  for (py::ssize_t i = 0; i < a.size(); ++i)
    if (!std::isfinite(p[i])) throw py::value_error(std::string(what) + " contains NaN or Inf");
}

template <class T, int F>
std::vector<T> vec(const py::array_t<T, F>& a) {
  return std::vector<T>(a.data(), a.data() + a.size());
}

std::shared_ptr<Mlp> make_mlp(const std::vector<std::pair<F32, F32>>& layers,
                              const std::vector<std::string>& acts, const std::string& sigma_input,
                              bool divide_by_sigma, std::optional<F32> shift,
                              std::optional<F32> scale) {
  MlpSpec spec;
  spec.layers.reserve(layers.size());  // exact capacities: what Mlp::bytes() counts
  spec.acts.reserve(acts.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& [W, b] = layers[i];
    if (W.ndim() != 2 || b.ndim() != 1 || b.shape(0) != W.shape(0))
      throw py::value_error("layer " + std::to_string(i) + ": W must be [out, in], b [out]");
    // Not needed for memory safety; kept because tests/test_errors.py pins it for direct calls.
    check_finite(W, "a weight matrix");
    check_finite(b, "a bias vector");
    Dense dl;
    dl.out = int(W.shape(0));
    dl.in = int(W.shape(1));
    dl.W = vec(W);
    dl.b = vec(b);
    spec.layers.push_back(std::move(dl));
  }
  for (const auto& a : acts) spec.acts.push_back(parse_act(a));
  spec.sigma_input = parse_sigma_input(sigma_input);
  spec.divide_by_sigma = divide_by_sigma;
  if (shift) spec.shift = vec(*shift);
  if (scale) spec.scale = vec(*scale);
  return std::make_shared<Mlp>(std::move(spec));
}

// One graph node from Python: (op, inputs, activation, p, start, stop, a, b); a is W [out, in]
// for a linear, the value for a const, the weight for a layer norm; b the bias.
using NodeTuple = std::tuple<std::string, std::vector<int>, std::string, double, int, int,
                             std::optional<F32>, std::optional<F32>>;

GraphSpec graph_spec(int dim, const std::vector<NodeTuple>& nodes, std::optional<F32> shift,
                     std::optional<F32> scale) {
  GraphSpec spec;
  spec.dim = dim;
  spec.nodes.reserve(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    const auto& [op, in, act, p, start, stop, a, b] = nodes[i];
    GraphNode n;
    n.op = parse_op(op);
    n.in = in;
    n.act = parse_act(act);
    n.p = p;
    n.start = start;
    n.stop = stop;
    if (a) {
      if (n.op == Op::linear) {
        if (a->ndim() != 2)
          throw py::value_error("graph node " + std::to_string(i) + ": W must be 2-D");
        n.rows = int(a->shape(0));
        n.cols = int(a->shape(1));
      }
      check_finite(*a, "a graph tensor");
      n.a = vec(*a);
    }
    if (b) {
      check_finite(*b, "a graph tensor");
      n.b = vec(*b);
    }
    spec.nodes.push_back(std::move(n));
  }
  if (shift) spec.shift = vec(*shift);
  if (scale) spec.scale = vec(*scale);
  return spec;
}

std::shared_ptr<GraphNet> make_graph(int dim, const std::vector<NodeTuple>& nodes,
                                     std::optional<F32> shift, std::optional<F32> scale) {
  return std::make_shared<GraphNet>(graph_spec(dim, nodes, shift, scale));
}

// Raw network outputs [n, output_dim] for raw inputs [n, input_dim]. The network is held by
// shared_ptr so that it outlives a call still running when the interpreter exits (and frees
// the Python object that owns it); likewise for score_rows' model.
F32 mlp_forward(std::shared_ptr<Mlp> net_ptr, const F32& inputs) {
  const Mlp& net = *net_ptr;
  if (inputs.ndim() != 2 || inputs.shape(1) != net.input_dim())
    throw py::value_error("inputs must be [n, " + std::to_string(net.input_dim()) + "]");
  const int64_t n = inputs.shape(0);
  F32 out = rows(n, net.output_dim());
  const float* ip = inputs.data();
  float* op = out.mutable_data();
  {
    WithoutGil nogil;
    auto ws = net.workspace(kRowTile);
    map_tiles(n, net.input_dim(), net.output_dim(), kRowTile, ip, op,
              [&](const float* xt, float* yt) { net.forward(xt, kRowTile, yt, *ws); });
  }
  return out;
}

std::shared_ptr<Mixture> make_mixture(const F64& w, const F64& means, std::optional<F64> vars,
                                      std::optional<F64> covs) {
  if (w.ndim() != 1 || means.ndim() != 2 || means.shape(0) != w.shape(0))
    throw py::value_error("weights must be [K], means [K, d]");
  const int d = int(means.shape(1));
  std::vector<double> v, c;
  if (vars) v = vec(*vars);
  if (covs) c = vec(*covs);
  // Moved, not copied: a full covariance is K*d*d doubles (what Mixture::bytes() counts).
  return std::make_shared<Mixture>(vec(w), vec(means), d, std::move(v), std::move(c));
}

// What the engine's copy of a network with these layer shapes ([out, in] each) would hold, so
// that the samplers can refuse one that cannot fit before building it.
uint64_t mlp_bytes(const std::vector<std::pair<int, int>>& shapes, const std::string& sigma_input,
                   int norm) {
  MlpSpec spec;
  for (const auto& [out, in] : shapes) {
    if (out < 1 || in < 1) throw py::value_error("layer shapes must be positive");
    Dense l;
    l.out = out;
    l.in = in;
    spec.layers.push_back(std::move(l));
  }
  if (!spec.layers.empty()) spec.acts.resize(spec.layers.size() - 1);
  spec.sigma_input = parse_sigma_input(sigma_input);
  if (norm < 0) throw py::value_error("norm must be >= 0");
  spec.shift.resize(size_t(norm));
  spec.scale.resize(size_t(norm));
  return Mlp::bytes(spec);
}

// The score [n, d] of rows u [n, d] at one noise level, in the model's coordinates.
F32 score_rows(std::shared_ptr<ScoreModel> model_ptr, const F32& u, double sigma) {
  const ScoreModel& model = *model_ptr;
  const int d = model.dim();
  if (u.ndim() != 2 || u.shape(1) != d) throw py::value_error("x must be [n, d]");
  const int64_t n = u.shape(0);
  F32 out = rows(n, d);
  const float* up = u.data();
  float* op = out.mutable_data();
  bool cancelled = false;
  {
    WithoutGil nogil;
    // One level, but K Cholesky factors of a full covariance can take seconds: Ctrl-C counts.
    const auto levels = model.prepare({sigma}, ThrottledPoll());
    cancelled = !levels;
    if (levels) {
      auto ws = model.workspace(kRowTile);
      map_tiles(n, d, d, kRowTile, up, op, [&](const float* xt, float* yt) {
        model.score(xt, kRowTile, *levels, 0, yt, *ws);
      });
    }
  }
  if (cancelled) throw py::error_already_set();  // the KeyboardInterrupt the poll saw
  return out;
}

// An Mlp or Mixture is immutable once built; runs copy nothing from Python.
void bind_score_model(py::module_& m) {
  py::class_<ScoreModel, std::shared_ptr<ScoreModel>>(m, "ScoreModel")
      .def_property_readonly("dim", &ScoreModel::dim);
}

void bind_mlp(py::module_& m) {
  py::class_<Mlp, ScoreModel, std::shared_ptr<Mlp>>(m, "Mlp")
      .def(py::init(&make_mlp), py::arg("layers"), py::arg("activations"),
           py::arg("sigma_input") = "none", py::arg("divide_by_sigma") = false,
           py::arg("shift") = py::none(), py::arg("scale") = py::none())
      .def_property_readonly("input_dim", &Mlp::input_dim)
      .def_property_readonly("output_dim", &Mlp::output_dim)
      .def("forward", &mlp_forward, py::arg("inputs"),
           "Raw network outputs for raw inputs [n, input_dim].");
}

void bind_graph(py::module_& m) {
  py::class_<GraphNet, ScoreModel, std::shared_ptr<GraphNet>>(m, "GraphNet")
      .def(py::init(&make_graph), py::arg("dim"), py::arg("nodes"), py::arg("shift") = py::none(),
           py::arg("scale") = py::none());
}

void bind_mixture(py::module_& m) {
  py::class_<Mixture, ScoreModel, std::shared_ptr<Mixture>>(m, "Mixture")
      .def(py::init(&make_mixture), py::arg("weights"), py::arg("means"),
           py::arg("variances") = py::none(), py::arg("covs") = py::none());
}

void bind_score(py::module_& m) {
  m.def("score", &score_rows, py::arg("model"), py::arg("u"), py::arg("sigma"),
        "Score in the model's coordinates at one noise level.");
}

void bind_bytes(py::module_& m) {
  m.def("mlp_bytes", &mlp_bytes, py::arg("shapes"), py::arg("sigma_input"), py::arg("norm"));
  m.def(
      "graph_bytes",
      [](int dim, const std::vector<NodeTuple>& nodes, int norm) {
        if (norm < 0) throw py::value_error("norm must be >= 0");
        GraphSpec spec = graph_spec(dim, nodes, std::nullopt, std::nullopt);
        spec.shift.resize(size_t(norm));
        spec.scale.resize(size_t(norm));
        return GraphNet::bytes(spec);
      },
      py::arg("dim"), py::arg("nodes"), py::arg("norm"));
  m.def(
      "mixture_bytes",
      [](int K, int d, bool full) {
        if (K < 1 || d < 1) throw py::value_error("K and d must be >= 1");
        return Mixture::bytes(K, d, full);
      },
      py::arg("K"), py::arg("d"), py::arg("full"));
}

}  // namespace

void register_models(py::module_& m) {
  bind_score_model(m);
  bind_mlp(m);
  bind_graph(m);
  bind_mixture(m);
  bind_score(m);
  bind_bytes(m);
}
