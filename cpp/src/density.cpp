#include "gensamp/density.hpp"

#include <cmath>
#include <stdexcept>

#include "noise.hpp"
#include "tiles.hpp"

namespace gensamp {

std::unique_ptr<Workspace> ScoreModel::div_workspace(int, int) const {
  throw std::logic_error("this score model has no divergence");
}

uint64_t ScoreModel::div_workspace_bytes(int, int) const {
  throw std::logic_error("this score model has no divergence");
}

void ScoreModel::score_div(const float*, int, const Levels&, int, const float*, int, float*,
                           double*, Workspace&) const {
  throw std::logic_error("this score model has no divergence");
}

std::vector<double> ode_levels(const std::vector<double>& grid) {
  std::vector<double> levels;
  if (grid.empty()) return levels;
  levels.reserve(2 * grid.size() - 1);
  for (size_t i = 0; i + 1 < grid.size(); ++i) {
    levels.push_back(grid[i]);
    levels.push_back(grid[i] + 0.5 * (grid[i + 1] - grid[i]));
  }
  levels.push_back(grid.back());
  return levels;
}

namespace {

// One tile's buffers: the state and stage derivatives in double ([d][width]), the point the
// model sees and its score in float, the trace terms per chain, the probe directions.
struct OdeTile {
  std::vector<double> u, k, ksum, q, qsum, acc, div;
  std::vector<float> x, s, v;
  OdeTile(int d, int width, int probes)
      : u(size_t(d) * width, 0.0),
        k(size_t(d) * width, 0.0),
        ksum(size_t(d) * width, 0.0),
        q(size_t(width), 0.0),
        qsum(size_t(width), 0.0),
        acc(size_t(width), 0.0),
        div(size_t(width), 0.0),
        x(size_t(d) * width, 0.f),
        s(size_t(d) * width, 0.f),
        v(size_t(d) * size_t(probes) * width, 0.f) {}
  static uint64_t bytes(int d, int width, int probes) {
    const uint64_t dw = sat_mul(uint64_t(d), uint64_t(width));
    const uint64_t state = block_bytes(dw, sizeof(double));
    const uint64_t lane = block_bytes(uint64_t(width), sizeof(double));
    const uint64_t tile = block_bytes(dw, sizeof(float));
    uint64_t b = sat_add(sat_add(state, state), state);
    b = sat_add(b, sat_mul(4, lane));
    b = sat_add(b, sat_add(tile, tile));
    return sat_add(b, block_bytes(sat_mul(dw, uint64_t(probes)), sizeof(float)));
  }
};

}  // namespace

RunBytes log_density_ode_bytes(const ScoreModel& model, uint64_t grid_points, int probes, int64_t n,
                               const RunOptions& opt) {
  const int tile = tile_chains(opt);
  const int width = widest_tile(n, tile);
  const uint64_t levels = grid_points == 0 ? 0 : 2 * grid_points - 1;
  RunBytes b;
  b.levels = sat_add(block_bytes(levels, sizeof(double)), model.levels_div_bytes(levels));
  const uint64_t per_tile =
      sat_add(OdeTile::bytes(model.dim(), width, probes), model.div_workspace_bytes(width, probes));
  b.tiles = sat_mul(uint64_t(team_size(opt.threads, (n + tile - 1) / tile)), per_tile);
  return b;
}

RunResult log_density_ode(const ScoreModel& model, const std::vector<double>& grid, int probes,
                          int64_t n, double* u, double* delta, const RunOptions& opt) {
  if (grid.size() < 2) throw std::invalid_argument("the sigma grid needs at least two points");
  if (probes < 0) throw std::invalid_argument("probes must be >= 0");
  RunState st;
  const std::vector<double> sig = ode_levels(grid);
  const std::unique_ptr<Levels> levels = model.prepare_div(sig, [&] {
    maybe_poll(opt, st, true);
    return st.cancel.load(std::memory_order_relaxed);
  });
  RunResult res;
  if (!levels) {
    if (st.error) std::rethrow_exception(st.error);
    res.cancelled = st.poll_cancelled;
    return res;
  }
  const int d = model.dim();
  const int tile = tile_chains(opt);
  const int64_t ntiles = (n + tile - 1) / tile;
  const long steps = long(grid.size()) - 1;

  for_tiles(ntiles, opt, st, [&](int64_t ti, bool on_caller) {
    const int64_t j0 = ti * tile;
    const int w = int(std::min<int64_t>(tile, n - j0));
    const int width = tile_width(w);
    const size_t dw = size_t(d) * width;
    OdeTile b(d, width, probes);
    auto ws = model.div_workspace(width, probes);
    for (int c = 0; c < w; ++c)
      for (int i = 0; i < d; ++i) b.u[size_t(i) * width + c] = u[(j0 + c) * d + i];

    // b.k, b.q <- the right-hand sides -sigma s and sigma tr grad s at u + coef * b.k.
    auto stage = [&](long level, double coef, uint32_t e) {
      const double sigma = sig[size_t(level)];
      if (sigma == 0.0) {  // both vanish: no evaluation (a mixture's sigma_0 = 0)
        std::fill(b.k.begin(), b.k.end(), 0.0);
        std::fill(b.q.begin(), b.q.end(), 0.0);
        return;
      }
      for (size_t r = 0; r < dw; ++r)
        b.x[r] = coef == 0.0 ? float(b.u[r]) : float(b.u[r] + coef * b.k[r]);
      if (probes > 0)
        tile_signs(opt.seed, opt.chain_offset + uint64_t(j0), w, e, d, probes, b.v.data(), width);
      model.score_div(b.x.data(), width, *levels, int(level), probes > 0 ? b.v.data() : nullptr,
                      probes, b.s.data(), b.div.data(), *ws);
      for (size_t r = 0; r < dw; ++r) b.k[r] = -sigma * double(b.s[r]);
      for (int c = 0; c < width; ++c) b.q[size_t(c)] = sigma * b.div[size_t(c)];
    };
    // ksum, qsum <- (or +=) weight times the stage's k, q
    auto add = [&](double weight, bool first) {
      for (size_t r = 0; r < dw; ++r) b.ksum[r] = first ? b.k[r] : b.ksum[r] + weight * b.k[r];
      for (size_t c = 0; c < b.q.size(); ++c)
        b.qsum[c] = first ? b.q[c] : b.qsum[c] + weight * b.q[c];
    };

    for (long i = 0; i < steps; ++i) {
      if (st.cancel.load(std::memory_order_relaxed)) return;
      const double h = grid[size_t(i + 1)] - grid[size_t(i)];
      const uint32_t e = uint32_t(4 * i);
      stage(2 * i, 0.0, e);
      add(1.0, true);
      stage(2 * i + 1, 0.5 * h, e + 1);
      add(2.0, false);
      stage(2 * i + 1, 0.5 * h, e + 2);
      add(2.0, false);
      stage(2 * i + 2, h, e + 3);
      add(1.0, false);
      const double h6 = h / 6.0;
      for (size_t r = 0; r < dw; ++r) b.u[r] += h6 * b.ksum[r];
      for (size_t c = 0; c < b.acc.size(); ++c) b.acc[c] += h6 * b.qsum[c];
      maybe_poll(opt, st, on_caller);
    }
    for (int c = 0; c < w; ++c) {
      for (int i = 0; i < d; ++i) u[(j0 + c) * d + i] = b.u[size_t(i) * width + c];
      delta[j0 + c] = b.acc[size_t(c)];
    }
  });

  if (st.error) std::rethrow_exception(st.error);
  res.cancelled = st.poll_cancelled;
  if (res.cancelled) return res;
  for (int64_t j = 0; j < n; ++j) {
    bool ok = std::isfinite(delta[j]);
    for (int i = 0; ok && i < d; ++i) ok = std::isfinite(u[j * d + i]);
    if (!ok) res.diverged.push_back(j);
  }
  return res;
}

}  // namespace gensamp
