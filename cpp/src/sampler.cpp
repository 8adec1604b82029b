#include "gensamp/sampler.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "gensamp/philox.hpp"
#include "noise.hpp"
#include "tiles.hpp"

namespace gensamp {

Schedule annealed_schedule(const std::vector<double>& sigmas, double eps, int T) {
  Schedule s;
  s.sigmas = sigmas;
  s.T = T;
  const double sL2 = sigmas.back() * sigmas.back();
  for (double sg : sigmas) s.alphas.push_back(eps * sg * sg / sL2);
  return s;
}

Schedule plain_schedule(double sigma, double eps, int T) {
  Schedule s;
  s.sigmas = {sigma};
  s.alphas = {eps};
  s.T = T;
  return s;
}

namespace {

std::atomic<bool> g_omp_disabled{false};

RunResult finish(RunState& st, int64_t n, int d, const float* x) {
  if (st.error) std::rethrow_exception(st.error);
  RunResult r;
  r.cancelled = st.poll_cancelled;
  if (r.cancelled) return r;
  for (int64_t j = 0; j < n; ++j)
    for (int i = 0; i < d; ++i)
      if (!std::isfinite(x[j * d + i])) {
        r.diverged.push_back(j);
        break;
      }
  return r;
}

}  // namespace

bool openmp_disabled() { return g_omp_disabled.load(); }
void note_fork_child() {
  // Unconditionally: the parent's libgomp pool may have been started by another library that
  // shares it (torch), so whether gensamp itself ran a parallel region does not tell.
  g_omp_disabled = true;
}

RunBytes run_langevin_bytes(const ScoreModel& model, const Schedule& sched, int64_t n,
                            const RunOptions& opt) {
  const int tile = tile_chains(opt);
  const int width = widest_tile(n, tile);
  const uint64_t state = block_bytes(uint64_t(model.dim()) * uint64_t(width), sizeof(float));
  const uint64_t per_tile = sat_add(sat_add(state, state), model.workspace_bytes(width));  // u, s
  RunBytes b;
  b.levels = model.levels_bytes(sched.sigmas.size());
  b.tiles = sat_mul(uint64_t(team_size(opt.threads, (n + tile - 1) / tile)), per_tile);
  return b;
}

RunBytes vae_sample_bytes(const Mlp& dec, int64_t n, const RunOptions& opt) {
  const int tile = tile_chains(opt);
  const int width = widest_tile(n, tile);
  const int d = dec.output_dim() / 2;
  uint64_t per_tile = dec.workspace_bytes(width);
  for (int rows : {dec.input_dim(), 2 * d, d})  // zin, out, e
    per_tile = sat_add(per_tile, block_bytes(uint64_t(rows) * uint64_t(width), sizeof(float)));
  RunBytes b;
  b.tiles = sat_mul(uint64_t(team_size(opt.threads, (n + tile - 1) / tile)), per_tile);
  return b;
}

RunResult run_langevin(const ScoreModel& model, const Schedule& sched, int64_t n, float* x,
                       double init_std, float* traj, const RunOptions& opt) {
  RunState st;
  // Set-up polls like the chains do: a million levels or full covariances take seconds.
  const std::unique_ptr<Levels> levels = model.prepare(sched.sigmas, [&] {
    maybe_poll(opt, st, true);
    return st.cancel.load(std::memory_order_relaxed);
  });
  if (!levels) return finish(st, 0, 0, x);
  const int d = model.dim();
  const int tile = tile_chains(opt);
  const int64_t ntiles = (n + tile - 1) / tile;
  const float* shift = model.shift();
  const float* scale = model.scale();
  const long nlev = long(sched.sigmas.size());

  for_tiles(ntiles, opt, st, [&](int64_t ti, bool on_caller) {
    const int64_t j0 = ti * tile;
    const int w = int(std::min<int64_t>(tile, n - j0));
    const int width = tile_width(w);
    // Per-tile buffers; the step loop below allocates nothing.
    std::vector<float> u(size_t(d) * width, 0.f), s(size_t(d) * width);
    auto ws = model.workspace(width);
    auto to_data = [&](int i, float v) {
      return (scale ? scale[i] * v : v) + (shift ? shift[i] : 0.f);
    };

    if (init_std > 0) {
      tile_normals(opt.seed, opt.chain_offset + uint64_t(j0), w, kInitStep, d, u.data(), width);
      const float k = float(init_std);
      for (int i = 0; i < d; ++i)
        for (int c = 0; c < w; ++c) u[size_t(i) * width + c] *= k;
    } else {
      for (int c = 0; c < w; ++c)
        for (int i = 0; i < d; ++i) {
          const float v = x[(j0 + c) * d + i];
          u[size_t(i) * width + c] = (v - (shift ? shift[i] : 0.f)) / (scale ? scale[i] : 1.f);
        }
    }

    long gstep = 0;
    for (long l = 0; l < nlev; ++l) {
      const float half = float(sched.alphas[l] / 2.0);
      const float root = float(std::sqrt(sched.alphas[l]));
      for (int t = 0; t < sched.T; ++t, ++gstep) {
        if (st.cancel.load(std::memory_order_relaxed)) return;
        model.score(u.data(), width, *levels, int(l), s.data(), *ws);
        // x <- x + (alpha/2) s(x, sigma) + sqrt(alpha) z   (the seed deck's convention)
        tile_langevin_update(opt.seed, opt.chain_offset + uint64_t(j0), w, uint32_t(gstep), d,
                             u.data(), s.data(), width, half, root);
        if (opt.record_every > 0 && (gstep + 1) % opt.record_every == 0) {
          float* dst = traj + ((gstep + 1) / opt.record_every - 1) * n * d;
          for (int c = 0; c < w; ++c)
            for (int i = 0; i < d; ++i)
              dst[(j0 + c) * d + i] = to_data(i, u[size_t(i) * width + c]);
        }
        maybe_poll(opt, st, on_caller);
      }
    }
    if (opt.denoise) {  // Tweedie: E[x | x~] = x~ + sigma_L^2 s(x~, sigma_L)
      const float s2 = float(sched.sigmas.back() * sched.sigmas.back());
      model.score(u.data(), width, *levels, int(nlev - 1), s.data(), *ws);
      for (size_t k = 0; k < u.size(); ++k) u[k] = u[k] + s2 * s[k];
    }
    for (int c = 0; c < w; ++c)
      for (int i = 0; i < d; ++i) x[(j0 + c) * d + i] = to_data(i, u[size_t(i) * width + c]);
  });
  return finish(st, n, d, x);
}

RunResult vae_sample(const Mlp& dec, int64_t n, float* x, const RunOptions& opt) {
  const int k = dec.input_dim();
  const int d = dec.output_dim() / 2;
  const int tile = tile_chains(opt);
  const int64_t ntiles = (n + tile - 1) / tile;
  const float* shift = dec.shift();
  const float* scale = dec.scale();
  RunState st;
  for_tiles(ntiles, opt, st, [&](int64_t ti, bool on_caller) {
    const int64_t j0 = ti * tile;
    const int w = int(std::min<int64_t>(tile, n - j0));
    const int width = tile_width(w);
    std::vector<float> zin(size_t(k) * width, 0.f), out(size_t(2 * d) * width),
        e(size_t(d) * width, 0.f);
    auto ws = dec.workspace(width);
    // z ~ N(0, I) from step 0 of chain j's stream, the decoder noise from step 1.
    tile_normals(opt.seed, opt.chain_offset + uint64_t(j0), w, 0u, k, zin.data(), width);
    tile_normals(opt.seed, opt.chain_offset + uint64_t(j0), w, 1u, d, e.data(), width);
    dec.forward(zin.data(), width, out.data(), *ws);
    for (int c = 0; c < w; ++c)
      for (int i = 0; i < d; ++i) {
        const float mu = out[size_t(i) * width + c];
        const float lv = out[size_t(d + i) * width + c];
        const float v = mu + std::exp(0.5f * lv) * e[size_t(i) * width + c];
        x[(j0 + c) * d + i] = (scale ? scale[i] * v : v) + (shift ? shift[i] : 0.f);
      }
    maybe_poll(opt, st, on_caller);
  });
  return finish(st, n, d, x);
}

void map_tiles(int64_t n, int in_dim, int out_dim, int width, const float* in, float* out,
               const std::function<void(const float* tile_in, float* tile_out)>& tile_fn) {
  std::vector<float> xt(size_t(in_dim) * width), yt(size_t(out_dim) * width);
  for (int64_t j0 = 0; j0 < n; j0 += width) {
    const int w = int(std::min<int64_t>(width, n - j0));
    std::fill(xt.begin(), xt.end(), 0.f);
    for (int c = 0; c < w; ++c)
      for (int i = 0; i < in_dim; ++i) xt[size_t(i) * width + c] = in[(j0 + c) * in_dim + i];
    tile_fn(xt.data(), yt.data());
    for (int c = 0; c < w; ++c)
      for (int i = 0; i < out_dim; ++i) out[(j0 + c) * out_dim + i] = yt[size_t(i) * width + c];
  }
}

}  // namespace gensamp
