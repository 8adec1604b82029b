// The samplers: plain and annealed Langevin over any ScoreModel, and ancestral sampling
// from a VAE decoder. Pure C++; the caller validates argument values (gensamp's Python layer,
// see cpp/bindings/module.cpp).
#pragma once
#include <cstdint>
#include <functional>
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
};

struct Schedule {
  std::vector<double> sigmas;  // levels; plain Langevin uses one level
  std::vector<double> alphas;  // step size per level
  int T = 1;                   // steps per level
  long total_steps() const { return long(sigmas.size()) * T; }
};

// Algorithm 1 of Song & Ermon (2019): alpha_i = eps * sigma_i^2 / sigma_L^2.
Schedule annealed_schedule(const std::vector<double>& sigmas, double eps, int T);
// Plain Langevin at one (possibly zero) noise level: alpha = eps.
Schedule plain_schedule(double sigma, double eps, int T);

struct RunResult {
  bool cancelled = false;
  std::vector<int64_t> diverged;  // rows of x (local, 0..n-1) whose final state is not finite
};

// x: [n][d] row-major, data space. On entry holds x0 unless init_std > 0, in which case the
// initial state is u0 = init_std * z(seed, j, kInitStep) in model coordinates. On exit holds
// the final state. traj: [n_records][n][d], n_records = total_steps / record_every.
RunResult run_langevin(const ScoreModel& model, const Schedule& sched, int64_t n, float* x,
                       double init_std, float* traj, const RunOptions& opt);

// decoder: latent_dim -> 2*d outputs [mean | log-variance] in model coordinates.
// x: [n][d] output in data space.
RunResult vae_sample(const Mlp& decoder, int64_t n, float* x, const RunOptions& opt);

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
RunBytes vae_sample_bytes(const Mlp& decoder, int64_t n, const RunOptions& opt);

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
