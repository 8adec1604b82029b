#include "gensamp/sampler.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "gensamp/philox.hpp"
#include "noise.hpp"
#include "tiles.hpp"

namespace gensamp {

long Schedule::total_steps() const {
  long t = 0;
  for (const Step& st : steps) t += st.repeat;
  return t;
}

long Schedule::score_evals() const {
  long e = 0;
  for (const Step& st : steps)
    e += long(st.repeat) * (st.kind == Step::heun && st.level2 >= 0 ? 2 : 1);
  return e;
}

Schedule annealed_schedule(const std::vector<double>& sigmas, double eps, int T) {
  Schedule s;
  s.sigmas = sigmas;
  s.T = T;
  const double sL2 = sigmas.back() * sigmas.back();
  for (double sg : sigmas) s.alphas.push_back(eps * sg * sg / sL2);
  for (size_t l = 0; l < sigmas.size(); ++l) {
    Step st;
    st.level = int(l);
    st.a = s.alphas[l] / 2.0;
    st.b = std::sqrt(s.alphas[l]);
    st.repeat = T;
    s.steps.push_back(st);
  }
  return s;
}

Schedule plain_schedule(double sigma, double eps, int T) {
  Schedule s = annealed_schedule({sigma}, eps, T);
  s.alphas = {eps};  // sigma may be 0: alpha = eps, not eps * 0 / 0
  s.steps[0].a = eps / 2.0;
  s.steps[0].b = std::sqrt(eps);
  return s;
}

namespace {

void check_grid(const std::vector<double>& sigmas) {
  if (sigmas.empty()) throw std::invalid_argument("sigmas is empty");
  for (size_t i = 0; i < sigmas.size(); ++i)
    if (!(sigmas[i] > 0) || !std::isfinite(sigmas[i]) || (i && !(sigmas[i] < sigmas[i - 1])))
      throw std::invalid_argument("sigmas must be finite, > 0 and strictly decreasing");
}

inline double next_sigma(const std::vector<double>& sg, size_t i) {
  return i + 1 < sg.size() ? sg[i + 1] : 0.0;
}

}  // namespace

Schedule pc_schedule(const std::vector<double>& sigmas, double snr, int corrector) {
  check_grid(sigmas);
  if (!(snr > 0) || corrector < 0) throw std::invalid_argument("need snr > 0, corrector >= 0");
  Schedule s;
  s.sigmas = sigmas;
  for (size_t i = 0; i < sigmas.size(); ++i) {
    if (corrector > 0) {
      Step c;
      c.kind = Step::corrector;
      c.level = int(i);
      c.a = snr;
      c.c = 1.0 / (sigmas[i] * sigmas[i]);
      c.repeat = corrector;
      s.steps.push_back(c);
    }
    const double nx = next_sigma(sigmas, i);
    Step p;
    p.level = int(i);
    p.a = sigmas[i] * sigmas[i] - nx * nx;
    p.b = nx > 0 ? std::sqrt(p.a) : 0.0;  // the last step returns the predictor's mean
    s.steps.push_back(p);
  }
  return s;
}

Schedule cas_schedule(const std::vector<double>& sigmas, double refresh) {
  check_grid(sigmas);
  if (!(refresh >= 0 && refresh <= 1)) throw std::invalid_argument("refresh must be in [0, 1]");
  Schedule s;
  s.sigmas = sigmas;
  for (size_t i = 0; i < sigmas.size(); ++i) {
    const double nx = next_sigma(sigmas, i);
    const double left = nx * std::pow(nx / sigmas[i], refresh);  // (1 - kappa) sigma_i
    Step st;
    st.level = int(i);
    st.a = (sigmas[i] - left) * sigmas[i];  // kappa sigma_i^2
    st.b = std::sqrt(std::max(0.0, nx * nx - left * left));
    s.steps.push_back(st);
  }
  return s;
}

Schedule ode_schedule(const std::vector<double>& sigmas, bool heun, double churn, double s_tmin,
                      double s_tmax, double s_noise) {
  check_grid(sigmas);
  if (!(churn >= 0) || !std::isfinite(churn) || !(s_noise >= 0) || !std::isfinite(s_noise) ||
      !(s_tmin <= s_tmax))
    throw std::invalid_argument("need churn >= 0, s_noise >= 0, s_tmin <= s_tmax");
  Schedule s;
  s.sigmas = sigmas;
  const size_t N = sigmas.size();
  const double gamma = std::min(churn / double(N), std::sqrt(2.0) - 1.0);
  for (size_t i = 0; i < N; ++i) {
    const double nx = next_sigma(sigmas, i);
    Step st;
    st.kind = Step::heun;
    double hat = sigmas[i];
    st.level = int(i);
    if (gamma > 0 && sigmas[i] >= s_tmin && sigmas[i] <= s_tmax) {
      hat = sigmas[i] * (1.0 + gamma);
      st.b = std::sqrt(hat * hat - sigmas[i] * sigmas[i]) * s_noise;
      st.level = int(s.sigmas.size());  // sigma^ joins the prepared levels
      s.sigmas.push_back(hat);
    }
    st.a = (hat - nx) * hat;
    if (heun && nx > 0) {
      st.level2 = int(i + 1);
      st.c = (hat - nx) * nx / 2.0;
    }
    s.steps.push_back(st);
  }
  return s;
}

namespace {

std::atomic<bool> g_omp_disabled{false};

bool needs_scratch(const Schedule& sched) {
  for (const Step& st : sched.steps)
    if (st.kind != Step::langevin) return true;
  return false;
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
  // u and s; z, u' and s' for the steps that keep noise or a second evaluation apart.
  const int blocks = needs_scratch(sched) ? 5 : 2;
  const uint64_t per_tile = sat_add(sat_mul(uint64_t(blocks), state), model.workspace_bytes(width));
  RunBytes b;
  b.levels = model.levels_bytes(sched.sigmas.size());
  b.tiles = sat_mul(uint64_t(team_size(opt.threads, (n + tile - 1) / tile)), per_tile);
  return b;
}

RunResult run_langevin(const ScoreModel& model, const Schedule& sched, int64_t n, float* x,
                       double init_std, float* traj, const RunOptions& opt,
                       const float* init_mean) {
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
  const bool scratch = needs_scratch(sched);
  std::atomic<int64_t> chain_evals{0};
  st.total = double(n) * double(std::max(1L, sched.total_steps()));

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
        for (int c = 0; c < w; ++c)
          u[size_t(i) * width + c] = init_mean ? init_mean[i] + u[size_t(i) * width + c] * k
                                               : u[size_t(i) * width + c] * k;
    } else {
      for (int c = 0; c < w; ++c)
        for (int i = 0; i < d; ++i) {
          const float v = x[(j0 + c) * d + i];
          u[size_t(i) * width + c] = (v - (shift ? shift[i] : 0.f)) / (scale ? scale[i] : 1.f);
        }
    }

    std::vector<float> z, u2, s2;
    if (scratch) {
      z.assign(size_t(d) * width, 0.f);
      u2.assign(size_t(d) * width, 0.f);
      s2.assign(size_t(d) * width, 0.f);
    }
    const uint64_t chain0 = opt.chain_offset + uint64_t(j0);
    const size_t len = size_t(d) * width;
    uint32_t noise_step = 0;  // the next step of the chains' noise streams
    long rstep = 0;           // steps done: the trajectory's clock
    long evals = 0;
    auto eval = [&](const float* at, int level, float* out) {
      model.score(at, width, *levels, level, out, *ws);
      ++evals;
    };
    for (const Step& op : sched.steps) {
      const float a = float(op.a), b = float(op.b), c2 = float(op.c);
      for (int r = 0; r < op.repeat; ++r, ++rstep) {
        if (st.cancel.load(std::memory_order_relaxed)) return;
        switch (op.kind) {
          case Step::langevin:
            eval(u.data(), op.level, s.data());
            if (op.b > 0) {  // x <- (x + a s) + b z, the noise generated in the same pass
              tile_langevin_update(opt.seed, chain0, w, noise_step++, d, u.data(), s.data(), width,
                                   a, b);
            } else {
              for (size_t k = 0; k < len; ++k) u[k] = u[k] + a * s[k];
            }
            break;
          case Step::corrector: {
            eval(u.data(), op.level, s.data());
            tile_normals(opt.seed, chain0, w, noise_step++, d, z.data(), width);
            // Each chain's own step from its own score norm: no chain depends on another.
            for (int ch = 0; ch < w; ++ch) {
              double sn = 0;
              for (int i = 0; i < d; ++i) {
                const double sv = s[size_t(i) * width + ch];
                sn += sv * sv;
              }
              const double ratio = op.a * std::sqrt(double(d) / std::max(sn, double(d) * op.c));
              const float e = float(2.0 * ratio * ratio), root = float(2.0 * ratio);
              for (int i = 0; i < d; ++i) {
                const size_t k = size_t(i) * width + ch;
                u[k] = (u[k] + e * s[k]) + root * z[k];
              }
            }
            break;
          }
          case Step::heun:
            if (op.b > 0) {
              tile_normals(opt.seed, chain0, w, noise_step++, d, z.data(), width);
              for (size_t k = 0; k < len; ++k) u[k] = u[k] + b * z[k];
            }
            eval(u.data(), op.level, s.data());
            if (op.level2 < 0) {
              for (size_t k = 0; k < len; ++k) u[k] = u[k] + a * s[k];
            } else {
              for (size_t k = 0; k < len; ++k) u2[k] = u[k] + a * s[k];
              eval(u2.data(), op.level2, s2.data());
              const float half = a / 2.f;
              for (size_t k = 0; k < len; ++k) u[k] = (u[k] + half * s[k]) + c2 * s2[k];
            }
            break;
        }
        if (opt.record_every > 0 && (rstep + 1) % opt.record_every == 0) {
          float* dst = traj + ((rstep + 1) / opt.record_every - 1) * n * d;
          for (int c = 0; c < w; ++c)
            for (int i = 0; i < d; ++i)
              dst[(j0 + c) * d + i] = to_data(i, u[size_t(i) * width + c]);
        }
        st.done.fetch_add(w, std::memory_order_relaxed);
        maybe_poll(opt, st, on_caller);
      }
    }
    if (opt.denoise) {  // Tweedie: E[x | x~] = x~ + sigma_L^2 s(x~, sigma_L)
      const float sl2 = float(sched.sigmas.back() * sched.sigmas.back());
      eval(u.data(), int(nlev - 1), s.data());
      for (size_t k = 0; k < u.size(); ++k) u[k] = u[k] + sl2 * s[k];
    }
    for (int c = 0; c < w; ++c)
      for (int i = 0; i < d; ++i) x[(j0 + c) * d + i] = to_data(i, u[size_t(i) * width + c]);
    chain_evals.fetch_add(evals * w, std::memory_order_relaxed);
  });
  RunResult r = finish(st, n, d, x);
  r.score_evals = n > 0 ? double(chain_evals.load()) / double(n) : 0.0;
  return r;
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
