#include "gensamp/sampler.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "gensamp/philox.hpp"
#include "noise.hpp"

#ifdef GENSAMP_HAVE_OPENMP
#include <omp.h>
#endif

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

using Clock = std::chrono::steady_clock;

// Shared state of one run: cancellation and the first exception thrown by any thread.
// Exceptions must never leave an OpenMP region (that terminates the process), so every tile
// is wrapped and the exception is re-thrown after the region.
struct RunState {
  std::atomic<bool> cancel{false};
  std::atomic<bool> poll_cancelled{false};
  std::mutex mu;
  std::exception_ptr error;
  Clock::time_point last_poll = Clock::now();

  void fail(std::exception_ptr e) {
    std::lock_guard<std::mutex> g(mu);
    if (!error) error = e;
    cancel = true;
  }
};

// Calls opt.poll at most every 50 ms, from the thread that started the run only.
inline void maybe_poll(const RunOptions& opt, RunState& st, bool on_caller) {
  if (!on_caller || !opt.poll) return;
  const auto now = Clock::now();
  if (now - st.last_poll < std::chrono::milliseconds(50)) return;
  st.last_poll = now;
  if (opt.poll()) {
    st.poll_cancelled = true;
    st.cancel = true;
  }
}

// Runs body(tile_index, on_caller) over all tiles, in parallel when allowed.
template <class Body>
void for_tiles(int64_t ntiles, const RunOptions& opt, RunState& st, Body body) {
  const int threads = opt.threads;
  auto guarded = [&](int64_t t, bool on_caller) {
    if (st.cancel.load(std::memory_order_relaxed)) return;
    try {
      body(t, on_caller);
    } catch (...) {
      st.fail(std::current_exception());
    }
  };
#ifdef GENSAMP_HAVE_OPENMP
  if (threads > 1 && ntiles > 1 && !openmp_disabled()) {
    std::atomic<int64_t> finished{0};
#pragma omp parallel num_threads(int(std::min<int64_t>(threads, ntiles)))
    {
      const bool on_caller = omp_get_thread_num() == 0;
#pragma omp for schedule(dynamic, 1) nowait
      for (int64_t t = 0; t < ntiles; ++t) {
        guarded(t, on_caller);
        finished.fetch_add(1);
      }
      // Only the caller may poll (Ctrl-C): it keeps doing so while the others finish.
      if (on_caller)
        while (finished.load() < ntiles && !st.cancel.load()) {
          maybe_poll(opt, st, true);
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }
    return;
  }
#else
  (void)threads;
#endif
  for (int64_t t = 0; t < ntiles; ++t) guarded(t, true);
}

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

inline int round_up(int v, int m) { return (v + m - 1) / m * m; }

// Tiles of >= kLane chains are padded to whole SIMD registers; narrower ones (n < 16, or a
// tiny tile option) run unpadded on the output-vectorised kernel. Same bits either way.
inline int tile_width(int w) { return w < kLane ? w : round_up(w, kLane); }

}  // namespace

bool openmp_disabled() { return g_omp_disabled.load(); }
void note_fork_child() {
  // Unconditionally: the parent's libgomp pool may have been started by another library that
  // shares it (torch), so whether gensamp itself ran a parallel region does not tell.
  g_omp_disabled = true;
}

RunResult run_langevin(const ScoreModel& model, const Schedule& sched, int64_t n, float* x,
                       double init_std, float* traj, const RunOptions& opt) {
  const std::unique_ptr<Levels> levels = model.prepare(sched.sigmas);
  const int d = model.dim();
  const int tile = round_up(std::max(opt.tile, kLane), kLane);
  const int64_t ntiles = (n + tile - 1) / tile;
  const float* shift = model.shift();
  const float* scale = model.scale();
  const long nlev = long(sched.sigmas.size());
  RunState st;

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
  const int tile = round_up(std::max(opt.tile, kLane), kLane);
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
