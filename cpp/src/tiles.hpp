// How an engine call runs over its rows: in tiles of rows, on an OpenMP team when allowed, with
// one thread polling for Ctrl-C and the first exception carried out of the parallel region.
// Shared by the samplers (sampler.cpp) and the log-density integrator (density.cpp), so that
// both cancel, fail and size their teams the same way.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>

#include "gensamp/sampler.hpp"
#include "threads.hpp"

#ifdef GENSAMP_HAVE_OPENMP
#include <omp.h>
#endif
#ifdef __GLIBCXX__
#include <cxxabi.h>
#endif

namespace gensamp {

using RunClock = std::chrono::steady_clock;

// Shared state of one run: cancellation and the first exception thrown by any thread.
// Exceptions must never leave an OpenMP region (that terminates the process), so every tile
// is wrapped and the exception is re-thrown after the region.
struct RunState {
  std::atomic<bool> cancel{false};
  std::atomic<bool> poll_cancelled{false};
  std::mutex mu;
  std::exception_ptr error;
  RunClock::time_point last_poll = RunClock::now();
  std::atomic<int64_t> done{0};  // chain-steps (or rows) finished, for RunOptions::progress
  double total = 0;              // the run's chain-steps; 0 during set-up

  void fail(std::exception_ptr e) {
    std::lock_guard<std::mutex> g(mu);
    if (!error) error = e;
    cancel = true;
  }
};

// Calls opt.poll at most every 50 ms, from the thread that started the run only.
// opt.progress, when set, hears the fraction done just before.
inline void maybe_poll(const RunOptions& opt, RunState& st, bool on_caller) {
  if (!on_caller || (!opt.poll && !opt.progress)) return;
  const auto now = RunClock::now();
  if (now - st.last_poll < std::chrono::milliseconds(50)) return;
  st.last_poll = now;
  if (opt.progress)
    opt.progress(st.total > 0 ? std::min(1.0, double(st.done.load()) / st.total) : 0.0);
  if (opt.poll && opt.poll()) {
    st.poll_cancelled = true;
    st.cancel = true;
  }
}

// The threads a run asks OpenMP for: never more than there are tiles.
inline int team_size(int threads, int64_t ntiles) {
#ifdef GENSAMP_HAVE_OPENMP
  if (threads > 1 && ntiles > 1 && !openmp_disabled())
    return int(std::min<int64_t>(threads, ntiles));
#else
  (void)threads;
  (void)ntiles;
#endif
  return 1;
}

// Runs body(tile_index, on_caller) over all tiles, in parallel when allowed.
template <class Body>
void for_tiles(int64_t ntiles, const RunOptions& opt, RunState& st, Body body) {
  auto guarded = [&](int64_t t, bool on_caller) {
    if (st.cancel.load(std::memory_order_relaxed)) return;
    try {
      body(t, on_caller);
    } catch (...) {
#ifdef __GLIBCXX__
      // Not a C++ exception: abi::__forced_unwind, with which glibc unwinds a thread being
      // ended (pthread_exit, pthread_cancel); swallowing it aborts the process ("FATAL:
      // exception not rethrown"), and no exception_ptr can carry it. It can only come from
      // opt.poll, on the caller. Inside a parallel region it could not propagate either, so
      // the Python binding's poll never ends the thread (see cpp/bindings/exit_guard.cpp).
      if (abi::__cxa_current_exception_type() == nullptr) throw;
#endif
      st.fail(std::current_exception());
    }
  };
#ifdef GENSAMP_HAVE_OPENMP
  if (const int want = team_size(opt.threads, ntiles); want > 1) {
    std::unique_lock<std::mutex> starting(team_start_mutex());
    const int team = startable_team(want);
    if (team > 1) {
      std::atomic<int64_t> finished{0};
#pragma omp parallel num_threads(team)
      {
        const bool on_caller = omp_get_thread_num() == 0;
        if (on_caller) starting.unlock();  // the team exists: other runs may start theirs
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
  }
#endif
  for (int64_t t = 0; t < ntiles; ++t) guarded(t, true);
}

// A finished run's result: the first exception re-thrown, else whether it was cancelled and,
// if not, which of the n rows of x ([n][d]) hold a non-finite value.
inline RunResult finish(RunState& st, int64_t n, int d, const float* x) {
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

// Tiles of >= kLane rows are padded to whole SIMD registers; narrower ones (n < 16, or a
// tiny tile option) run unpadded on the output-vectorised kernel. Same bits either way.
inline int tile_width(int w) { return w < kLane ? w : round_up(w, kLane); }

// Rows per tile, and the widest tile a run of n rows has (its first).
inline int tile_chains(const RunOptions& opt) { return round_up(std::max(opt.tile, kLane), kLane); }
inline int widest_tile(int64_t n, int tile) { return tile_width(int(std::min<int64_t>(tile, n))); }

}  // namespace gensamp
