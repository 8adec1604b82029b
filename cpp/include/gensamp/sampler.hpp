// The samplers: plain and annealed Langevin over any ScoreModel, and ancestral sampling
// from a VAE decoder. Pure C++; the caller validates argument values (gensamp's Python layer,
// see cpp/bindings/module.cpp).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gensamp/model.hpp"

namespace gensamp {

struct RunOptions {
  uint64_t seed = 0;
  // Global index of chain 0 of this run: its noise (and default start) is that of chain
  // chain_offset + j, so runs over [a, b) reproduce rows a..b-1 of one run over [0, b) whatever
  // the split. The caller keeps chain_offset + n <= 2^64.
  uint64_t chain_offset = 0;
  // >= 1; an upper bound: a run starts fewer threads when no more can be created (a thread or
  // address-space limit), rather than let the OpenMP runtime end the process.
  int threads = 1;
  int tile = 64;         // chains per tile (rounded up to kLane)
  int record_every = 0;  // 0: no trajectory
  bool denoise = false;  // final Tweedie step x + sigma_L^2 s(x, sigma_L)
  // Called now and then (every 50 ms at most) from the thread that started the run, never
  // concurrently, during set-up (ScoreModel::prepare) and the chains alike; returning true
  // cancels the run (used for Ctrl-C). May be empty.
  std::function<bool()> poll;
  // Called just before each poll with the fraction of the run's chain-steps done, in [0, 1]
  // (0 during set-up). May be empty. For progress bars.
  std::function<void(double)> progress;
};

// One instruction of a sampler: what every chain of a tile does next. Built by the *_schedule
// functions below only (they check what the run loop relies on). s = score at `level`, z a
// fresh standard normal vector from the chain's noise stream (one stream step per draw).
struct Step {
  enum Kind {
    // u <- (u + a s) + b z; b == 0 draws no noise (a deterministic step).
    langevin,
    // Langevin with the step from the signal-to-noise ratio a of each chain alone (Song et
    // al. 2021, per chain): e = 2 a^2 d / max(|s|^2, d c), u <- (u + e s) + sqrt(2 e) z.
    // The noise norm is its expectation sqrt(d), not the |z| of the z the step then adds:
    // a step growing with |z|^2 makes the noise's variance E[2 e z^2] exceed 2 E[e] (three
    // times over in 1-D, since E z^4 = 3), a hotter chain. c = 1/sigma^2 caps e at
    // 2 a^2 sigma^2, its value where |s| is typical of N(mu, sigma^2 I), so a chain near a mode
    // (|s| ~ 0) takes a bounded step.
    corrector,
    // b > 0: u <- u + b z first (EDM's churn). Then s = score(u, level), and u <- u + a s
    // (Euler) when level2 < 0, else Heun's correction: u' = u + a s,
    // u <- (u + (a/2) s) + c score(u', level2).
    heun,
  };
  Kind kind = langevin;
  int level = 0;
  int level2 = -1;
  double a = 0, b = 0, c = 0;
  int repeat = 1;  // the step done this many times in a row
};

struct Schedule {
  std::vector<double> sigmas;  // the noise levels the model prepares
  std::vector<double> alphas;  // Langevin schedules: step size per level (else empty)
  int T = 1;                   // Langevin schedules: steps per level
  std::vector<Step> steps;     // the program
  // Steps (each repetition counted): the trajectory's clock and the noise stream's bound.
  long total_steps() const;
  long score_evals() const;  // per chain, without RunOptions::denoise's one
};

// Algorithm 1 of Song & Ermon (2019): alpha_i = eps * sigma_i^2 / sigma_L^2, T steps of
// u <- u + (alpha_i/2) s + sqrt(alpha_i) z per level.
Schedule annealed_schedule(const std::vector<double>& sigmas, double eps, int T);
// Plain Langevin at one (possibly zero) noise level: alpha = eps.
Schedule plain_schedule(double sigma, double eps, int T);
// The schedules below take a decreasing grid sigma_0 > ... > sigma_{N-1} > 0 and end at
// sigma_N = 0 (their last step leaves no noise), all in model coordinates.
// Predictor-corrector for the VE SDE (Song et al. 2021): per level, `corrector` Langevin
// corrector steps with signal-to-noise ratio snr, then the reverse-diffusion predictor
// u <- u + (sigma_i^2 - sigma_{i+1}^2) s + sqrt(sigma_i^2 - sigma_{i+1}^2) z.
Schedule pc_schedule(const std::vector<double>& sigmas, double snr, int corrector);
// Consistent annealed sampling (Jolicoeur-Martineau et al. 2021): one step per level,
// u <- u + kappa_i sigma_i^2 s + beta_i z, with beta_i making the noise left exactly
// sigma_{i+1}: beta_i^2 = sigma_{i+1}^2 - (1 - kappa_i)^2 sigma_i^2. kappa_i =
// 1 - (sigma_{i+1}/sigma_i)^(1 + refresh), refresh in [0, 1]: on a geometric grid (ratio gamma)
// kappa is constant, the paper's eta = sigma_L^2 (1 - gamma^-(1 + refresh)); refresh = 0 is the
// Euler step of the probability-flow ODE (beta = 0), refresh = 1 the VE SDE's ancestral step.
// The last level takes kappa = 1, the Tweedie step to sigma = 0.
Schedule cas_schedule(const std::vector<double>& sigmas, double refresh);
// The probability-flow ODE du/dsigma = -sigma s(u, sigma) (Karras et al. 2022), Euler or
// Heun (no second evaluation on the last step, which ends at sigma = 0). With churn > 0,
// EDM's stochastic sampler (their Algorithm 2): each step whose sigma_i lies in
// [s_tmin, s_tmax] first raises the noise to sigma^ = sigma_i (1 + gamma),
// gamma = min(churn / N, sqrt(2) - 1), by adding sqrt(sigma^2 - sigma_i^2) s_noise z.
Schedule ode_schedule(const std::vector<double>& sigmas, bool heun, double churn = 0,
                      double s_tmin = 0, double s_tmax = 1e300, double s_noise = 1);

struct RunResult {
  bool cancelled = false;
  std::vector<int64_t> diverged;  // rows of x (local, 0..n-1) whose final state is not finite
  double score_evals = 0;         // score evaluations per chain, counted as they ran
};

// x: [n][d] row-major, data space. On entry holds x0 unless init_std > 0, in which case the
// initial state is u0 = init_std * z(seed, j, kInitStep) in model coordinates. On exit holds
// the final state. traj: [n_records][n][d], n_records = total_steps / record_every.
// init_mean (d values, model coordinates; null = 0) centres that draw.
RunResult run_langevin(const ScoreModel& model, const Schedule& sched, int64_t n, float* x,
                       double init_std, float* traj, const RunOptions& opt,
                       const float* init_mean = nullptr);

// ---- VAE decoders ------------------------------------------------------------------------
// What a decoder's outputs mean, and how x is drawn from them.
enum class Likelihood {
  // 2d outputs [mean | log-variance] in model coordinates: x = mean + exp(logvar / 2) e.
  gaussian,
  // d logits l, lambda = sigmoid(l): x_i = 1 if u_i < lambda_i else 0.
  bernoulli,
  // d logits: the continuous Bernoulli on [0, 1] (Loaiza-Ganem & Cunningham 2019), density
  // C(lambda) lambda^x (1 - lambda)^(1 - x), drawn by its inverse CDF
  // x = log(1 + u (2 lambda - 1) / (1 - lambda)) / log(lambda / (1 - lambda)), x = u at 1/2.
  continuous_bernoulli,
};
Likelihood parse_likelihood(const std::string& name);  // throws std::invalid_argument

// Everything ancestral sampling needs besides the network.
struct VaeSpec {
  Likelihood likelihood = Likelihood::gaussian;
  // The latent prior: N(0, I) when `weights` is empty, else the Gaussian mixture
  // sum_k w_k N(means_k, L_k L_k^T) with K = weights.size() components: weights [K] (> 0; the
  // pick uses their running sums over their total), means [K][latent], chol [K][latent][latent]
  // row-major, L_k lower triangular (its upper triangle is never read).
  std::vector<float> weights, means, chol;
  // false: x is the decoder's mean (the Gaussian mean, lambda, or the continuous Bernoulli's
  // mean) instead of a draw from p(x | z); z is drawn from the prior either way.
  bool noise = true;
};

// Shapes only (the Python layer checks the values): a Gaussian decoder's even output width,
// the prior's sizes against the decoder's latent dimension. Throws std::invalid_argument.
void check_vae(const Mlp& decoder, const VaeSpec& spec);
int vae_data_dim(const Mlp& decoder, Likelihood likelihood);  // d

// Ancestral sampling: z from the prior, x from p(x | z). x: [n][d] output in data space.
// The noise of chain j (as in run_langevin: j = chain_offset + row): z's standard normals e
// (latent values) from step 0, z = e or z = means_k + L_k e; the decoder's noise from step 1
// (d normals for a Gaussian, d uniforms, chain_uniforms(), otherwise); the mixture component
// from uniform 0 of step 2: the first k with u * total < w_0 + ... + w_k (running sums in
// double), else the last.
RunResult vae_sample(const Mlp& decoder, int64_t n, float* x, const RunOptions& opt,
                     const VaeSpec& spec = {});

// The memory the two calls above allocate besides x and traj (the caller's), so a caller can
// refuse a run that cannot fit before anything is allocated: the noise-level tables, and one
// tile's buffers per thread in flight. Left out: the list of diverged chains (8 bytes per
// chain that ended non-finite, allocated after the tile buffers are freed) and the OpenMP
// runtime's own per-thread state (thread stacks are checked separately, see RunOptions).
struct RunBytes {
  uint64_t levels = 0;  // ScoreModel::prepare()'s tables
  uint64_t tiles = 0;   // per-tile state and model workspaces, all threads together
};
RunBytes run_langevin_bytes(const ScoreModel& model, const Schedule& sched, int64_t n,
                            const RunOptions& opt);
// For vae_sample, `levels` holds the mixture's running sums (components = K, 0 for N(0, I)).
RunBytes vae_sample_bytes(const Mlp& decoder, int64_t n, const RunOptions& opt,
                          Likelihood likelihood = Likelihood::gaussian, bool noise = true,
                          int64_t components = 0);

// Maps row-major rows in [n][in_dim] to out [n][out_dim] through a function of feature-major
// tiles, the layout ScoreModel::score and Mlp::forward work in: tile_fn(tile_in, tile_out) with
// tile_in [in_dim][width] and tile_out [out_dim][width]. A last, partial tile has its unused
// lanes zeroed. For callers that hold row-major data and evaluate a model outside a run.
void map_tiles(int64_t n, int in_dim, int out_dim, int width, const float* in, float* out,
               const std::function<void(const float* tile_in, float* tile_out)>& tile_fn);

}  // namespace gensamp

namespace gensamp {
// After fork() in a process whose parent already used OpenMP, GNU libgomp's thread pool is
// unusable in the child (a parallel region there deadlocks). The binding layer calls this from
// a pthread_atfork child handler; if the parent had run a parallel region, every later run in
// the child uses the serial path (same results: they never depend on the thread count).
void note_fork_child();
bool openmp_disabled();
}  // namespace gensamp
