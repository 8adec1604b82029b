// Starting an OpenMP team without risking the process. GNU libgomp ends the process ("Thread
// creation failed", exit status 1) when it cannot create one of a team's threads: under an
// address-space limit (RLIMIT_AS), a thread limit (RLIMIT_NPROC, a cgroup's pids.max) or short
// memory. So before each parallel region the engine creates the team's extra threads itself,
// with the stack size the OpenMP runtime will give them, lets them end, and starts a team of
// only as many threads as started. Results never depend on the team size.
#pragma once
#include <cstddef>
#include <mutex>

namespace gensamp {

// The largest team, the calling thread included and at most `want`, whose other threads could
// all be created just now (threads OpenMP already keeps for this caller come on top). When
// every limit that could refuse a thread is far off (the address-space room, RLIMIT_NPROC and
// the kernel's thread limits against the system's thread count; no cgroup pids limit, no
// strict overcommit), that is `want`, known from a few system calls; otherwise probe_team().
int startable_team(int want);

// Creates want - 1 threads with OpenMP's attributes, all alive at once, then ends them:
// 1 + the number that started. Tens of microseconds per thread.
int probe_team(int want);

// Held from startable_team() until the team has started, so that runs starting at the same
// time do not each count on the same room.
std::mutex& team_start_mutex();

// The stack size OpenMP gives its threads, read as libgomp reads it: OMP_STACKSIZE, else
// GOMP_STACKSIZE (a number with an optional B, K, M or G suffix, K by default). 0 when neither
// is set or valid: the pthread default (RLIMIT_STACK's soft limit, usually 8 MiB). LLVM's
// libomp defaults to 4 MiB, so the probe errs on the safe side there.
size_t omp_stack_bytes();

}  // namespace gensamp
