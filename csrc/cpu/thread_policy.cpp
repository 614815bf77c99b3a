// See thread_policy.h. Compiled once (not per instruction set): nothing here
// is hot, and the Python layer reads the same rule through the binding.
#include "thread_policy.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <dirent.h>
#include <sched.h>
#include <sys/stat.h>
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

int cores() { return cpu_cores(); }

bool read_file(const std::string& path, std::string* out) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return false;
  out->clear();
  char buf[4096];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) out->append(buf, got);
  std::fclose(f);
  return true;
}

// The tighter of two quotas in cores (0: none).
int tighter(int a, int b) { return a > 0 && b > 0 ? std::min(a, b) : std::max(a, b); }

// Cores allowed by quota / period (rounded up); 0 for none or nonsense.
int quota_cores(double quota, double period) {
  if (!(quota > 0.0) || !(period > 0.0)) return 0;
  const double c = std::ceil(quota / period - 1e-9);
  return c >= 1.0 ? (c < 1e6 ? static_cast<int>(c) : 0) : 1;
}

// The tightest quota over `path` and its ancestors under `root`, each
// read by `read_quota(dir)` (0: none there). 0 when none is set.
template <typename F>
int walk_quota(const std::string& root, std::string path, F read_quota) {
  struct stat st;
  if (stat(root.c_str(), &st) != 0) return 0;
  int best = 0;
  while (!path.empty() && path.back() == '/') path.pop_back();
  while (!path.empty()) {
    const std::string dir = root + path;
    if (stat(dir.c_str(), &st) == 0) best = tighter(best, read_quota(dir));
    const size_t cut = path.find_last_of('/');
    path = cut == std::string::npos ? std::string() : path.substr(0, cut);
  }
  return tighter(best, read_quota(root));
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

int cgroup_cpu_quota(const std::string& proc_cgroup, const std::string& root_v2, const std::string& root_v1) {
  std::istringstream lines(proc_cgroup);
  std::string line;
  int best = 0;
  while (std::getline(lines, line)) {
    // hierarchy-ID:controller-list:path
    const size_t a = line.find(':');
    const size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty()) {  // cgroup v2: "max 100000" or "200000 100000"
      best = tighter(best, walk_quota(root_v2, path, [](const std::string& dir) {
        std::string text;
        if (!read_file(dir + "/cpu.max", &text)) return 0;
        std::istringstream in(text);
        std::string quota;
        double period = 0.0;
        if (!(in >> quota >> period) || quota == "max") return 0;
        return quota_cores(std::atof(quota.c_str()), period);
      }));
      continue;
    }
    bool cpu = false;  // cgroup v1: the hierarchy with the cpu controller
    std::istringstream names(controllers);
    for (std::string name; std::getline(names, name, ',');) cpu = cpu || name == "cpu";
    if (!cpu) continue;
    best = tighter(best, walk_quota(root_v1, path, [](const std::string& dir) {
      std::string q, p;
      if (!read_file(dir + "/cpu.cfs_quota_us", &q) || !read_file(dir + "/cpu.cfs_period_us", &p)) return 0;
      return quota_cores(std::atof(q.c_str()), std::atof(p.c_str()));
    }));
  }
  return best;
}

int cpu_cores() {
  static const int cached = [] {
    int cpus = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = std::min(cpus, CPU_COUNT(&set));
    std::string self;
    if (read_file("/proc/self/cgroup", &self)) {
      int quota = 0;
      for (const char* v1 : {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"})
        for (const char* v2 : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"})
          quota = tighter(quota, cgroup_cpu_quota(self, v2, v1));
      if (quota > 0) cpus = std::min(cpus, quota);
    }
    return std::max(cpus, 1);
  }();
  return cached;
}

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
  return at(std::chrono::steady_clock::now(), [] { return available_threads(0); });
}

}  // namespace pcoreset
