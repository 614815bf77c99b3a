// See thread_policy.h. Compiled once (not per instruction set): nothing here
// is hot, and the Python layer reads the same rule through the binding.
#include "thread_policy.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <dirent.h>
#include <sched.h>
#include <unistd.h>

namespace pcoreset {
namespace {

// Running tasks on the machine (the fourth field of /proc/loadavg), -1 when
// it cannot be read.
int running_tasks() {
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return -1;
  double a, b, c;
  int running = -1, total = 0;
  if (std::fscanf(f, "%lf %lf %lf %d/%d", &a, &b, &c, &running, &total) != 5) running = -1;
  std::fclose(f);
  return running;
}

// This process's threads in state R (at least 1: the caller runs).
int own_running_tasks() {
  DIR* d = opendir("/proc/self/task");
  if (!d) return 1;
  int count = 0;
  char path[64], buf[512];
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
    FILE* f = std::fopen(path, "r");
    if (!f) continue;
    const size_t got = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[got] = 0;
    const char* close = std::strrchr(buf, ')');  // the state follows the command name
    if (close && close[1] == ' ' && close[2] == 'R') ++count;
  }
  closedir(d);
  return std::max(count, 1);
}

int cores() {
  int cpus = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = std::min(cpus, CPU_COUNT(&set));
  return std::max(cpus, 1);
}

int max_threads(int requested, int64_t values) {
#ifdef _OPENMP
  if (values < ThreadPolicy::kMinParallelValues) return 1;
  return requested > 0 ? requested : omp_get_max_threads();
#else
  (void)requested;
  (void)values;
  return 1;
#endif
}

}  // namespace

int available_threads(int requested) {
  if (requested > 0) return requested;
  const int cpus = cores();
  const int running = running_tasks();
  if (running <= 0) return cpus;
  const int others = std::max(0, running - own_running_tasks());
  return std::max(1, std::min(cpus, cpus - others));
}

ThreadPolicy::ThreadPolicy(int requested, int64_t values)
    : max_(max_threads(requested, values)), adaptive_(requested == 0) {}

int ThreadPolicy::now() {
  if (max_ <= 1 || !adaptive_) return max_;
  const auto t = std::chrono::steady_clock::now();
  if (cached_ > 0 && t < next_) return cached_;
  const int read = std::max(1, std::min(max_, available_threads(0)));
  if (cached_ > 0 && read < cached_ && !confirming_) {
    confirming_ = true;  // keep the count until a second reading agrees
    next_ = t + kConfirm;
    return cached_;
  }
  // the first reading, a reading at or above the count, or the second lower one
  confirming_ = false;
  cached_ = read;
  next_ = t + kInterval;
  return cached_;
}

}  // namespace pcoreset
