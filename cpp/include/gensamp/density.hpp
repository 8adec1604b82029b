// Log-densities under a score model by the probability-flow ODE of the variance-exploding
// process, sigma as time: du/dsigma = -sigma s(u, sigma), and along it
// d/dsigma log p_sigma(u(sigma)) = sigma tr grad_u s(u(sigma), sigma). So
//   log p_{sigma_0}(u_0) = log p_{sigma_N}(u(sigma_N)) - int_{sigma_0}^{sigma_N} sigma tr grad s,
// both integrated here; the caller (python/gensamp/density.py) adds the prior at sigma_N and
// the change of coordinates. Pure C++, argument values checked by the caller.
#pragma once
#include <cstdint>
#include <vector>

#include "gensamp/model.hpp"
#include "gensamp/sampler.hpp"

namespace gensamp {

// Classic fourth-order Runge-Kutta on the grid sigma_0 < ... < sigma_N (grid.size() = N + 1 >=
// 2; sigma_0 may be 0, where the right-hand side vanishes and is not evaluated), four
// evaluations of score_div() per step at sigma_i, the midpoint (twice) and sigma_{i+1}.
// The state and both integrals are carried in double; the model sees float32 points.
//
// u: [n][d] row-major, model coordinates: on entry the points at sigma_0, on exit the ends of
// their trajectories at sigma_N. delta: [n], out: int sigma tr grad s dsigma along each.
// probes == 0: the exact trace; probes > 0: the Hutchinson estimate with that many Rademacher
// directions per evaluation, those of row j at evaluation e = 4 i + stage drawn from the noise
// stream (opt.seed, chain opt.chain_offset + j, step e) (tile_signs in noise.hpp). Results
// depend on nothing else: not on threads, tiling or the SIMD level. opt.record_every and
// opt.denoise are ignored. RunResult::diverged lists the rows whose u or delta ended non-finite.
RunResult log_density_ode(const ScoreModel& model, const std::vector<double>& grid, int probes,
                          int64_t n, double* u, double* delta, const RunOptions& opt);

// What log_density_ode allocates besides u and delta (see run_langevin_bytes).
RunBytes log_density_ode_bytes(const ScoreModel& model, uint64_t grid_points, int probes, int64_t n,
                               const RunOptions& opt);

// The levels the integrator evaluates: sigma_0, mid_0, sigma_1, ..., mid_{N-1}, sigma_N.
std::vector<double> ode_levels(const std::vector<double>& grid);

}  // namespace gensamp
