#include "threads.hpp"

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define GENSAMP_HAVE_PTHREADS 1
#endif
#ifdef __linux__
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace gensamp {

namespace {

// libgomp's parse_stacksize(): false for an unset or malformed value (libgomp then warns and
// keeps the default).
bool parse_stacksize(const char* name, size_t* out) {
  const char* env = std::getenv(name);
  if (env == nullptr) return false;
  while (std::isspace(static_cast<unsigned char>(*env))) ++env;
  if (*env == '\0') return false;
  errno = 0;
  char* end = nullptr;
  const unsigned long long value = std::strtoull(env, &end, 10);
  if (errno != 0 || end == env) return false;
  while (std::isspace(static_cast<unsigned char>(*end))) ++end;
  int shift = 10;
  if (*end != '\0') {
    switch (std::tolower(static_cast<unsigned char>(*end))) {
      case 'b': shift = 0; break;
      case 'k': break;
      case 'm': shift = 20; break;
      case 'g': shift = 30; break;
      default: return false;
    }
    ++end;
    while (std::isspace(static_cast<unsigned char>(*end))) ++end;
    if (*end != '\0') return false;
  }
  if (((value << shift) >> shift) != value) return false;
  *out = size_t(value << shift);
  return true;
}

#ifdef __linux__
// The first number in a file, or -1 (unreadable, or no number: "max").
long long read_number(const char* path) {
  FILE* f = std::fopen(path, "r");
  if (!f) return -1;
  long long v = -1;
  if (std::fscanf(f, "%lld", &v) != 1) v = -1;
  std::fclose(f);
  return v;
}

bool is_dir(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Whether a cgroup pids.max below "max" applies to this process (its own cgroup or an
// ancestor, cgroup v2 or the v1 pids controller). Unknown counts as limited.
bool pids_limited() {
  FILE* f = std::fopen("/proc/self/cgroup", "r");
  if (!f) return true;
  bool limited = false;
  char line[4096];
  while (!limited && std::fgets(line, sizeof line, f)) {
    std::string l(line);
    if (!l.empty() && l.back() == '\n') l.pop_back();
    const size_t a = l.find(':'), b = a == std::string::npos ? a : l.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = l.substr(a + 1, b - a - 1);
    std::string base;
    if (controllers.empty())
      base = "/sys/fs/cgroup";  // v2
    else if (controllers == "pids" || controllers.find("pids,") == 0 ||
             controllers.find(",pids") != std::string::npos)
      base = "/sys/fs/cgroup/pids";
    else
      continue;
    std::string dir = base + l.substr(b + 1);
    if (!is_dir(dir)) dir = base;  // a cgroup namespace: our cgroup is the mount's root
    for (;;) {
      const std::string max_file = dir + "/pids.max";
      FILE* m = std::fopen(max_file.c_str(), "r");
      if (m) {
        char v[32] = {0};
        const bool got = std::fgets(v, sizeof v, m) != nullptr;
        std::fclose(m);
        if (got && std::string(v).find("max") != 0) limited = true;
      }
      if (limited || dir.size() <= base.size()) break;
      dir = dir.substr(0, dir.rfind('/'));
    }
  }
  std::fclose(f);
  return limited;
}

// What cannot change while the process runs, short of reconfiguring the machine.
struct FixedLimits {
  bool strict_overcommit;  // vm.overcommit_memory 2: every thread stack is charged up front
  bool pids_cgroup;        // a cgroup caps this process's threads
  long long system_max;    // kernel.threads-max and pid_max: threads in the whole system
};

const FixedLimits& fixed_limits() {
  static const FixedLimits f = [] {
    FixedLimits l;
    l.strict_overcommit = read_number("/proc/sys/vm/overcommit_memory") != 0 &&
                          read_number("/proc/sys/vm/overcommit_memory") != 1;
    l.pids_cgroup = pids_limited();
    const long long tmax = read_number("/proc/sys/kernel/threads-max");
    const long long pmax = read_number("/proc/sys/kernel/pid_max");
    l.system_max = tmax < 0 || pmax < 0 ? -1 : (tmax < pmax ? tmax : pmax);
    return l;
  }();
  return f;
}

// Threads in the whole system (/proc/loadavg's "running/total"): an upper bound on this user's.
long long system_threads() {
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return -1;
  double l1, l5, l15;
  long long running, total = -1;
  if (std::fscanf(f, "%lf %lf %lf %lld/%lld", &l1, &l5, &l15, &running, &total) != 5) total = -1;
  std::fclose(f);
  return total;
}

// True when `extra` threads with `stack`-byte stacks can certainly be created: every limit that
// could refuse one is far off. Cheap (a few system calls), so the probe below is left for runs
// near a limit.
bool clearly_room_for(int extra, size_t stack) {
  constexpr long long kSpare = 64;  // threads others may start meanwhile
  const FixedLimits& fixed = fixed_limits();
  if (fixed.strict_overcommit || fixed.pids_cgroup || fixed.system_max < 0) return false;
  const uint64_t page = uint64_t(sysconf(_SC_PAGESIZE));
  const uint64_t need = uint64_t(extra) * (uint64_t(stack) + 2 * page);  // and its guard page
  if (need > (uint64_t(1) << 40)) return false;  // a sizeable part of the address space
  rlimit lim;
  if (getrlimit(RLIMIT_AS, &lim) != 0) return false;
  if (lim.rlim_cur != RLIM_INFINITY) {
    const long long pages = read_number("/proc/self/statm");  // VmSize, in pages
    if (pages < 0) return false;
    const uint64_t used = uint64_t(pages) * page;
    if (used >= lim.rlim_cur || lim.rlim_cur - used < 2 * need + (uint64_t(256) << 20))
      return false;
  }
  const long long threads = system_threads();
  if (threads < 0 || threads + extra + kSpare > fixed.system_max) return false;
  if (getrlimit(RLIMIT_NPROC, &lim) != 0) return false;
  if (lim.rlim_cur != RLIM_INFINITY && getuid() != 0 &&
      threads + extra + kSpare > (long long)lim.rlim_cur)
    return false;
  return true;
}
#endif

#ifdef GENSAMP_HAVE_PTHREADS
void* wait_at_gate(void* gate) {
  auto* m = static_cast<std::mutex*>(gate);
  m->lock();
  m->unlock();
  return nullptr;
}
#endif

}  // namespace

size_t omp_stack_bytes() {
  size_t v = 0;
  if (parse_stacksize("OMP_STACKSIZE", &v) || parse_stacksize("GOMP_STACKSIZE", &v)) return v;
  return 0;
}

std::mutex& team_start_mutex() {
  static std::mutex m;
  return m;
}

#ifdef GENSAMP_HAVE_PTHREADS
namespace {

// The attributes OpenMP's threads get. A stack size pthreads refuses is one libgomp refuses
// too (it then keeps the default).
bool omp_thread_attr(pthread_attr_t* attr) {
  if (pthread_attr_init(attr) != 0) return false;
  const size_t stack = omp_stack_bytes();
  if (stack != 0) (void)pthread_attr_setstacksize(attr, stack);
  return true;
}

}  // namespace
#endif

int probe_team(int want) {
  if (want <= 1) return 1;
#ifdef GENSAMP_HAVE_PTHREADS
  pthread_attr_t attr;
  if (!omp_thread_attr(&attr)) return 1;
  std::vector<pthread_t> started;
  started.reserve(size_t(want - 1));
  // The threads must all exist at once, as a team's do: each waits at the gate until every
  // thread that could be created has been.
  std::mutex gate;
  gate.lock();
  for (int i = 1; i < want; ++i) {
    pthread_t t;
    if (pthread_create(&t, &attr, wait_at_gate, &gate) != 0) break;
    started.push_back(t);
  }
  gate.unlock();
  for (pthread_t t : started) pthread_join(t, nullptr);
  pthread_attr_destroy(&attr);
  return 1 + int(started.size());
#else
  return want;
#endif
}

int startable_team(int want) {
  if (want <= 1) return 1;
#ifdef __linux__
  pthread_attr_t attr;
  size_t stack = 0;
  const bool known = omp_thread_attr(&attr) && pthread_attr_getstacksize(&attr, &stack) == 0;
  if (known) pthread_attr_destroy(&attr);
  if (known && clearly_room_for(want - 1, stack)) return want;
#endif
  return probe_team(want);  // near a limit, or no cheap way to tell
}

}  // namespace gensamp
