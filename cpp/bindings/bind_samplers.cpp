// The samplers: a run's settings and schedule, Langevin runs and VAE sampling, what they
// allocate, and the fork and exit guards. Argument checks: see the rule at the top of
// module.cpp.
#include <pthread.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <map>
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

// The chains a run reports as diverged, or the pending KeyboardInterrupt if it was cancelled.
py::array_t<int64_t> diverged_or_raise(const RunResult& res) {
  if (res.cancelled) throw py::error_already_set();
  py::array_t<int64_t> div(py::ssize_t(res.diverged.size()));
  std::copy(res.diverged.begin(), res.diverged.end(), div.mutable_data());
  return div;
}

// sched comes from annealed_schedule() / plain_schedule() below (Python cannot build one
// otherwise), so it has at least one level and one alpha per level. The model and schedule are
// held by shared_ptr so that they outlive a run that is still stopping when the interpreter
// exits (and frees the Python objects that own them).
py::tuple run(std::shared_ptr<ScoreModel> model_ptr, std::shared_ptr<Schedule> sched_ptr, int64_t n,
              std::optional<F32> x0, double init_std, const RunOptions& options,
              const py::object& progress, std::optional<F32> init_mean) {
  const ScoreModel& model = *model_ptr;
  const Schedule& sched = *sched_ptr;
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
  if (init_mean && (init_mean->ndim() != 1 || init_mean->shape(0) != d))
    throw py::value_error("init_mean must have shape [d]");
  RunOptions opt = options;
  const long nrec = opt.record_every > 0 ? sched.total_steps() / opt.record_every : 0;
  std::optional<F32> traj;
  if (nrec > 0) traj = F32({py::ssize_t(nrec), py::ssize_t(n), py::ssize_t(d)});
  if (nrec == 0) opt.record_every = 0;
  double fraction = 0;
  opt.progress = [&](double f) { fraction = f; };
  opt.poll = [&] { return poll_signals(progress, fraction); };
  float* xp = x.mutable_data();
  float* tp = traj ? traj->mutable_data() : nullptr;
  RunResult res;
  {
    WithoutGil nogil;
    res = run_langevin(model, sched, n, xp, x0 ? 0.0 : init_std, tp, opt,
                       init_mean ? init_mean->data() : nullptr);
  }
  const auto div = diverged_or_raise(res);
  return py::make_tuple(x, traj ? py::object(*traj) : py::object(py::none()), div, res.score_evals);
}

// The prior as (weights [K], means [K, k], chol [K, k, k]), shapes checked against the decoder.
using Prior = std::tuple<F32, F32, F32>;

VaeSpec vae_spec(const Mlp& dec, const std::string& likelihood, bool noise,
                 const std::optional<Prior>& prior) {
  VaeSpec spec;
  spec.likelihood = parse_likelihood(likelihood);
  spec.noise = noise;
  if (prior) {
    const auto& [w, mu, L] = *prior;
    const py::ssize_t K = w.ndim() == 1 ? w.shape(0) : 0, k = dec.input_dim();
    if (K < 1 || mu.ndim() != 2 || mu.shape(0) != K || mu.shape(1) != k || L.ndim() != 3 ||
        L.shape(0) != K || L.shape(1) != k || L.shape(2) != k)
      throw py::value_error("prior must be (weights [K], means [K, k], chol [K, k, k]), K >= 1");
    spec.weights.assign(w.data(), w.data() + w.size());
    spec.means.assign(mu.data(), mu.data() + mu.size());
    spec.chol.assign(L.data(), L.data() + L.size());
  }
  check_vae(dec, spec);
  return spec;
}

py::tuple vae_run(std::shared_ptr<Mlp> dec_ptr, int64_t n, uint64_t seed, int threads, int tile,
                  uint64_t chain_offset, const py::object& progress, const std::string& likelihood,
                  bool noise, const std::optional<Prior>& prior) {
  const Mlp& dec = *dec_ptr;
  if (n < 1) throw py::value_error("n must be >= 1");
  const VaeSpec spec = vae_spec(dec, likelihood, noise, prior);
  F32 x = rows(n, vae_data_dim(dec, spec.likelihood));
  RunOptions opt;
  opt.seed = seed;
  opt.threads = threads;
  opt.tile = tile;
  opt.chain_offset = chain_offset;
  double fraction = 0;
  opt.progress = [&](double f) { fraction = f; };
  opt.poll = [&] { return poll_signals(progress, fraction); };
  float* xp = x.mutable_data();
  RunResult res;
  {
    WithoutGil nogil;
    res = vae_sample(dec, n, xp, opt, spec);
  }
  const auto div = diverged_or_raise(res);
  return py::make_tuple(x, div);
}

// What a run allocates beyond its output x and trajectory (which the caller counts: their shapes
// are known before any call), so that samplers.py can refuse a run that cannot fit up front.
std::map<std::string, uint64_t> as_dict(const RunBytes& b) {
  return {{"levels", b.levels}, {"tiles", b.tiles}};
}

std::map<std::string, uint64_t> run_bytes(const ScoreModel& model, const Schedule& sched, int64_t n,
                                          const RunOptions& options) {
  if (n < 1) throw py::value_error("n must be >= 1");
  return as_dict(run_langevin_bytes(model, sched, n, options));
}

std::map<std::string, uint64_t> vae_run_bytes(const Mlp& dec, int64_t n, int threads, int tile,
                                              const std::string& likelihood, bool noise,
                                              int64_t components) {
  if (n < 1) throw py::value_error("n must be >= 1");
  if (components < 0) throw py::value_error("components must be >= 0");
  RunOptions opt;
  opt.threads = threads;
  opt.tile = tile;
  return as_dict(vae_sample_bytes(dec, n, opt, parse_likelihood(likelihood), noise, components));
}

// The core's RunOptions less the Ctrl-C poll, which the binding supplies.
void bind_run_options(py::module_& m) {
  py::class_<RunOptions>(m, "RunOptions")
      .def(py::init([](uint64_t seed, int threads, int tile, int record_every, bool denoise,
                       uint64_t chain_offset) {
             RunOptions o;
             o.seed = seed;
             o.chain_offset = chain_offset;
             o.threads = threads;
             o.tile = tile;
             o.record_every = record_every;
             o.denoise = denoise;
             return o;
           }),
           py::kw_only(), py::arg("seed") = 0, py::arg("threads") = 1, py::arg("tile") = 64,
           py::arg("record_every") = 0, py::arg("denoise") = false, py::arg("chain_offset") = 0)
      .def_readwrite("seed", &RunOptions::seed)
      .def_readwrite("threads", &RunOptions::threads)
      .def_readwrite("tile", &RunOptions::tile)
      .def_readwrite("record_every", &RunOptions::record_every)
      .def_readwrite("denoise", &RunOptions::denoise)
      .def_readwrite("chain_offset", &RunOptions::chain_offset);
}

// Built only by the functions here, so every Schedule Python holds is well formed (the
// builders' std::invalid_argument reaches Python as ValueError).
void bind_schedules(py::module_& m) {
  py::class_<Schedule, std::shared_ptr<Schedule>>(m, "Schedule")
      .def_readonly("sigmas", &Schedule::sigmas)
      .def_readonly("alphas", &Schedule::alphas)
      .def_readonly("T", &Schedule::T)
      .def_property_readonly("total_steps", &Schedule::total_steps)
      .def_property_readonly("score_evals", &Schedule::score_evals);
  m.def(
      "annealed_schedule",
      [](const std::vector<double>& sigmas, double eps, int T) {
        if (sigmas.empty()) throw py::value_error("sigmas is empty");
        return annealed_schedule(sigmas, eps, T);
      },
      py::arg("sigmas"), py::arg("eps"), py::arg("T"));
  m.def("plain_schedule", &plain_schedule, py::arg("sigma"), py::arg("eps"), py::arg("T"));
  m.def("pc_schedule", &pc_schedule, py::arg("sigmas"), py::arg("snr"), py::arg("corrector"));
  m.def("cas_schedule", &cas_schedule, py::arg("sigmas"), py::arg("refresh"));
  m.def("ode_schedule", &ode_schedule, py::arg("sigmas"), py::arg("heun"), py::arg("churn") = 0.0,
        py::arg("s_tmin") = 0.0, py::arg("s_tmax") = 1e300, py::arg("s_noise") = 1.0);
}

void bind_runs(py::module_& m) {
  m.def("run", &run, py::arg("model"), py::arg("schedule"), py::arg("n"), py::arg("x0"),
        py::arg("init_std"), py::arg("options"), py::arg("progress") = py::none(),
        py::arg("init_mean") = py::none());
  m.def("vae_run", &vae_run, py::arg("decoder"), py::arg("n"), py::arg("seed"), py::arg("threads"),
        py::arg("tile"), py::arg("chain_offset") = 0, py::arg("progress") = py::none(),
        py::arg("likelihood") = "gaussian", py::arg("noise") = true, py::arg("prior") = py::none());
  m.def("run_bytes", &run_bytes, py::arg("model"), py::arg("schedule"), py::arg("n"),
        py::arg("options"));
  m.def("vae_run_bytes", &vae_run_bytes, py::arg("decoder"), py::arg("n"), py::arg("threads"),
        py::arg("tile"), py::arg("likelihood") = "gaussian", py::arg("noise") = true,
        py::arg("components") = 0);
}

void install_fork_guard() {
  // Once per process (a module can be initialised again in a sub-interpreter). Should
  // registration fail (out of memory), a child forked after a parallel run may hang in its
  // first parallel region; nothing else changes, so import does not fail over it.
  static const bool installed = pthread_atfork(nullptr, nullptr, note_fork_child) == 0;
  (void)installed;
}

}  // namespace

void register_samplers(py::module_& m) {
  bind_run_options(m);
  bind_schedules(m);
  bind_runs(m);
  install_fork_guard();
  install_exit_guard();
}
