// Log-densities: the probability-flow ODE integrator, what it allocates, and the score's
// divergence at one noise level (for tests and users checking a model). Argument checks: see
// the rule at the top of module.cpp.
#include <pybind11/stl.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "gensamp/density.hpp"
#include "gensamp/model.hpp"
#include "gensamp/sampler.hpp"
#include "noise.hpp"

using namespace gensamp;
using namespace gensamp_py;

namespace {

constexpr int kRowTile = 64;  // rows per tile for divergence()

void check_grid(const std::vector<double>& grid) {
  if (grid.size() < 2) throw py::value_error("the sigma grid needs at least two points");
  // The Philox step of evaluation 4 i + stage must fit its 32-bit counter word.
  if (grid.size() > (size_t(1) << 30)) throw py::value_error("the sigma grid is too long");
}

// (u at sigma_N [n, d], int sigma tr grad s dsigma [n], rows that ended non-finite); u [n, d]
// holds the starting points, in the model's coordinates. The model is held by shared_ptr so
// that it outlives a call still stopping when the interpreter exits (as in bind_samplers.cpp).
py::tuple ode(std::shared_ptr<ScoreModel> model_ptr, const std::vector<double>& grid, const F64& u0,
              int probes, const RunOptions& options) {
  const ScoreModel& model = *model_ptr;
  const int d = model.dim();
  check_grid(grid);
  if (probes < 0) throw py::value_error("probes must be >= 0");
  if (u0.ndim() != 2 || u0.shape(1) != d || u0.shape(0) < 1)
    throw py::value_error("u must be [n, d] with n >= 1");
  const int64_t n = u0.shape(0);
  F64 u({py::ssize_t(n), py::ssize_t(d)});
  F64 delta(py::ssize_t{n});
  std::copy(u0.data(), u0.data() + u0.size(), u.mutable_data());
  RunOptions opt = options;
  opt.poll = [] { return poll_signals(); };
  double* up = u.mutable_data();
  double* dp = delta.mutable_data();
  RunResult res;
  {
    WithoutGil nogil;
    res = log_density_ode(model, grid, probes, n, up, dp, opt);
  }
  if (res.cancelled) throw py::error_already_set();
  py::array_t<int64_t> bad(py::ssize_t(res.diverged.size()));
  std::copy(res.diverged.begin(), res.diverged.end(), bad.mutable_data());
  return py::make_tuple(u, delta, bad);
}

std::map<std::string, uint64_t> ode_bytes(const ScoreModel& model, uint64_t grid_points, int probes,
                                          int64_t n, const RunOptions& options) {
  if (n < 1) throw py::value_error("n must be >= 1");
  if (probes < 0) throw py::value_error("probes must be >= 0");
  const RunBytes b = log_density_ode_bytes(model, grid_points, probes, n, options);
  return {{"levels", b.levels}, {"tiles", b.tiles}};
}

// The score [n, d] and its divergence [n] at one noise level: exact (probes 0) or the
// Hutchinson estimate with the directions log_density_ode() draws at evaluation `step`.
py::tuple divergence(std::shared_ptr<ScoreModel> model_ptr, const F32& u, double sigma, int probes,
                     uint64_t seed, uint32_t step) {
  const ScoreModel& model = *model_ptr;
  const int d = model.dim();
  if (probes < 0) throw py::value_error("probes must be >= 0");
  if (u.ndim() != 2 || u.shape(1) != d) throw py::value_error("u must be [n, d]");
  const int64_t n = u.shape(0);
  F32 s = rows(n, d);
  F64 div(py::ssize_t{n});
  const float* up = u.data();
  float* sp = s.mutable_data();
  double* dp = div.mutable_data();
  bool cancelled = false;
  {
    WithoutGil nogil;
    const auto levels = model.prepare_div({sigma}, ThrottledPoll());
    cancelled = !levels;
    if (levels) {
      auto ws = model.div_workspace(kRowTile, probes);
      std::vector<float> xt(size_t(d) * kRowTile), st(xt.size());
      std::vector<float> v(size_t(d) * size_t(probes) * kRowTile);
      std::vector<double> dt(kRowTile);
      for (int64_t j0 = 0; j0 < n; j0 += kRowTile) {
        const int w = int(std::min<int64_t>(kRowTile, n - j0));
        std::fill(xt.begin(), xt.end(), 0.f);
        for (int c = 0; c < w; ++c)
          for (int i = 0; i < d; ++i) xt[size_t(i) * kRowTile + c] = up[(j0 + c) * d + i];
        if (probes > 0) tile_signs(seed, uint64_t(j0), w, step, d, probes, v.data(), kRowTile);
        model.score_div(xt.data(), kRowTile, *levels, 0, probes > 0 ? v.data() : nullptr, probes,
                        st.data(), dt.data(), *ws);
        for (int c = 0; c < w; ++c) {
          for (int i = 0; i < d; ++i) sp[(j0 + c) * d + i] = st[size_t(i) * kRowTile + c];
          dp[j0 + c] = dt[size_t(c)];
        }
      }
    }
  }
  if (cancelled) throw py::error_already_set();
  return py::make_tuple(s, div);
}

}  // namespace

void register_density(py::module_& m) {
  m.def("log_density_ode", &ode, py::arg("model"), py::arg("grid"), py::arg("u"), py::arg("probes"),
        py::arg("options"));
  m.def("log_density_ode_bytes", &ode_bytes, py::arg("model"), py::arg("grid_points"),
        py::arg("probes"), py::arg("n"), py::arg("options"));
  m.def("divergence", &divergence, py::arg("model"), py::arg("u"), py::arg("sigma"),
        py::arg("probes") = 0, py::arg("seed") = 0, py::arg("step") = 0,
        "Score and its divergence (exact, or Hutchinson with `probes` directions) at one "
        "noise level, in the model's coordinates.");
  m.def(
      "ode_levels", [](const std::vector<double>& grid) { return ode_levels(grid); },
      py::arg("grid"));
}
