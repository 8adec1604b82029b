// Models and samplers. Argument checks: see the rule at the top of module.cpp.
#include <pthread.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gensamp/model.hpp"
#include "gensamp/philox.hpp"
#include "gensamp/sampler.hpp"

namespace py = pybind11;
using namespace gensamp;

namespace {

using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;

template <class A>
void check_finite(const A& a, const char* what) {
  const auto* p = a.data();
  for (py::ssize_t i = 0; i < a.size(); ++i)
    if (!std::isfinite(p[i])) throw py::value_error(std::string(what) + " contains NaN or Inf");
}

std::vector<float> vec(const F32& a) { return std::vector<float>(a.data(), a.data() + a.size()); }
std::vector<double> vec(const F64& a) { return std::vector<double>(a.data(), a.data() + a.size()); }

std::shared_ptr<Mlp> make_mlp(const std::vector<std::pair<F32, F32>>& layers,
                              const std::vector<std::string>& acts, const std::string& sigma_input,
                              bool divide_by_sigma, std::optional<F32> shift,
                              std::optional<F32> scale) {
  MlpSpec spec;
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

// Re-acquires the GIL briefly to let Python run its signal handlers (Ctrl-C); a pending
// KeyboardInterrupt cancels the run, and is raised once the run has unwound.
bool poll_signals() {
  py::gil_scoped_acquire g;
  return PyErr_CheckSignals() != 0;
}

F32 rows(int64_t n, int d) { return F32({py::ssize_t(n), py::ssize_t(d)}); }

constexpr int kRowTile = 256;  // chains per tile when score() / forward() take row-major data

// sched comes from annealed_schedule() / plain_schedule() below (Python cannot build one
// otherwise), so it has at least one level and one alpha per level.
py::tuple run(const ScoreModel& model, const Schedule& sched, int64_t n, std::optional<F32> x0,
              double init_std, const RunOptions& options) {
  const int d = model.dim();
  if (n < 1) throw py::value_error("n must be >= 1");
  F32 x = rows(n, d);
  if (x0) {
    if (x0->ndim() != 2 || x0->shape(0) != n || x0->shape(1) != d)
      throw py::value_error("x0 must have shape [n, d]");
    std::copy(x0->data(), x0->data() + x0->size(), x.mutable_data());
  } else if (!(init_std > 0)) {  // x would be read uninitialised
    throw py::value_error("init_std must be > 0 when x0 is not given");
  }
  RunOptions opt = options;
  const long nrec = opt.record_every > 0 ? sched.total_steps() / opt.record_every : 0;
  std::optional<F32> traj;
  if (nrec > 0) traj = F32({py::ssize_t(nrec), py::ssize_t(n), py::ssize_t(d)});
  if (nrec == 0) opt.record_every = 0;
  opt.poll = poll_signals;
  float* xp = x.mutable_data();
  float* tp = traj ? traj->mutable_data() : nullptr;
  RunResult res;
  {
    py::gil_scoped_release nogil;
    res = run_langevin(model, sched, n, xp, x0 ? 0.0 : init_std, tp, opt);
  }
  if (res.cancelled) throw py::error_already_set();
  py::array_t<int64_t> div(py::ssize_t(res.diverged.size()));
  std::copy(res.diverged.begin(), res.diverged.end(), div.mutable_data());
  return py::make_tuple(x, traj ? py::object(*traj) : py::object(py::none()), div);
}

}  // namespace

void register_samplers(py::module_& m) {
  // An Mlp or Mixture is immutable once built; runs copy nothing from Python.
  py::class_<ScoreModel, std::shared_ptr<ScoreModel>>(m, "ScoreModel")
      .def_property_readonly("dim", &ScoreModel::dim);

  py::class_<Mlp, ScoreModel, std::shared_ptr<Mlp>>(m, "Mlp")
      .def(py::init(&make_mlp), py::arg("layers"), py::arg("activations"),
           py::arg("sigma_input") = "none", py::arg("divide_by_sigma") = false,
           py::arg("shift") = py::none(), py::arg("scale") = py::none())
      .def_property_readonly("input_dim", &Mlp::input_dim)
      .def_property_readonly("output_dim", &Mlp::output_dim)
      .def(
          "forward",
          [](const Mlp& net, F32 inputs) {
            if (inputs.ndim() != 2 || inputs.shape(1) != net.input_dim())
              throw py::value_error("inputs must be [n, " + std::to_string(net.input_dim()) + "]");
            const int64_t n = inputs.shape(0);
            F32 out = rows(n, net.output_dim());
            const float* ip = inputs.data();
            float* op = out.mutable_data();
            {
              py::gil_scoped_release nogil;
              auto ws = net.workspace(kRowTile);
              map_tiles(n, net.input_dim(), net.output_dim(), kRowTile, ip, op,
                        [&](const float* xt, float* yt) { net.forward(xt, kRowTile, yt, *ws); });
            }
            return out;
          },
          py::arg("inputs"), "Raw network outputs for raw inputs [n, input_dim].");

  py::class_<Mixture, ScoreModel, std::shared_ptr<Mixture>>(m, "Mixture")
      .def(py::init([](F64 w, F64 means, std::optional<F64> vars, std::optional<F64> covs) {
             if (w.ndim() != 1 || means.ndim() != 2 || means.shape(0) != w.shape(0))
               throw py::value_error("weights must be [K], means [K, d]");
             const int d = int(means.shape(1));
             std::vector<double> v, c;
             if (vars) v = vec(*vars);
             if (covs) c = vec(*covs);
             return std::make_shared<Mixture>(vec(w), vec(means), d, v, c);
           }),
           py::arg("weights"), py::arg("means"), py::arg("variances") = py::none(),
           py::arg("covs") = py::none());

  m.def(
      "score",
      [](ScoreModel& model, F32 u, double sigma) {
        const int d = model.dim();
        if (u.ndim() != 2 || u.shape(1) != d) throw py::value_error("x must be [n, d]");
        const int64_t n = u.shape(0);
        F32 out = rows(n, d);
        const float* up = u.data();
        float* op = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          const auto levels = model.prepare({sigma});
          auto ws = model.workspace(kRowTile);
          map_tiles(n, d, d, kRowTile, up, op, [&](const float* xt, float* yt) {
            model.score(xt, kRowTile, *levels, 0, yt, *ws);
          });
        }
        return out;
      },
      py::arg("model"), py::arg("u"), py::arg("sigma"),
      "Score in the model's coordinates at one noise level.");

  // The run's settings, the core's RunOptions less the Ctrl-C poll (the binding supplies it).
  py::class_<RunOptions>(m, "RunOptions")
      .def(py::init([](uint64_t seed, int threads, int tile, int record_every, bool denoise) {
             RunOptions o;
             o.seed = seed;
             o.threads = threads;
             o.tile = tile;
             o.record_every = record_every;
             o.denoise = denoise;
             return o;
           }),
           py::kw_only(), py::arg("seed") = 0, py::arg("threads") = 1, py::arg("tile") = 64,
           py::arg("record_every") = 0, py::arg("denoise") = false)
      .def_readwrite("seed", &RunOptions::seed)
      .def_readwrite("threads", &RunOptions::threads)
      .def_readwrite("tile", &RunOptions::tile)
      .def_readwrite("record_every", &RunOptions::record_every)
      .def_readwrite("denoise", &RunOptions::denoise);

  // Built only by the two functions below, so every Schedule Python holds is well formed.
  py::class_<Schedule>(m, "Schedule")
      .def_readonly("sigmas", &Schedule::sigmas)
      .def_readonly("alphas", &Schedule::alphas)
      .def_readonly("T", &Schedule::T);
  m.def(
      "annealed_schedule",
      [](const std::vector<double>& sigmas, double eps, int T) {
        if (sigmas.empty()) throw py::value_error("sigmas is empty");
        return annealed_schedule(sigmas, eps, T);
      },
      py::arg("sigmas"), py::arg("eps"), py::arg("T"));
  m.def("plain_schedule", &plain_schedule, py::arg("sigma"), py::arg("eps"), py::arg("T"));

  m.def("run", &run, py::arg("model"), py::arg("schedule"), py::arg("n"), py::arg("x0"),
        py::arg("init_std"), py::arg("options"));

  m.def(
      "vae_run",
      [](const Mlp& dec, int64_t n, uint64_t seed, int threads, int tile) {
        if (n < 1) throw py::value_error("n must be >= 1");
        // An odd width would leave the last output row outside the [2d][width] tile.
        if (dec.output_dim() % 2) throw py::value_error("decoder output must be [mean | log-variance]");
        F32 x = rows(n, dec.output_dim() / 2);
        RunOptions opt;
        opt.seed = seed;
        opt.threads = threads;
        opt.tile = tile;
        opt.poll = poll_signals;
        float* xp = x.mutable_data();
        RunResult res;
        {
          py::gil_scoped_release nogil;
          res = vae_sample(dec, n, xp, opt);
        }
        if (res.cancelled) throw py::error_already_set();
        py::array_t<int64_t> div(py::ssize_t(res.diverged.size()));
        std::copy(res.diverged.begin(), res.diverged.end(), div.mutable_data());
        return py::make_tuple(x, div);
      },
      py::arg("decoder"), py::arg("n"), py::arg("seed"), py::arg("threads"), py::arg("tile"));

  // Once per process (a module can be initialised again in a sub-interpreter). Should
  // registration fail (out of memory), a child forked after a parallel run may hang in its first
  // parallel region; nothing else changes, so import does not fail over it.
  static const bool fork_guard = pthread_atfork(nullptr, nullptr, note_fork_child) == 0;
  (void)fork_guard;
}
