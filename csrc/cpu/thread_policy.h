// The load-adaptive thread rule, the one implementation in the package
// (pcoreset._threads asks it through the extension).
//
// A parallel region whose threads spin at a barrier while the scheduler has
// preempted one of them waits a whole time slice per barrier: on a busy
// machine the kernel's OpenMP steps ran up to 16 times slower on two threads
// than on one. The default thread count therefore follows the machine: the
// cores this process may run on, minus the tasks other processes are running
// right now (/proc/loadavg counts running tasks; this process's own running
// threads, read from /proc/self/task, are not counted against it).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>

namespace pcoreset {

// Threads to use now: `requested` when > 0 (the caller's choice), else the
// cores that other processes leave free (at least 1; all of them when the
// load cannot be read).
int available_threads(int requested);

// The cores this process may use: the online CPUs it may run on (its
// affinity mask), fewer when a cgroup CPU quota allows fewer (a container
// limited to 2 CPUs on a 64-core host sees 64 CPUs but runs 2 at a time).
// Read once per process.
int cpu_cores();

// The CPU quota, in cores rounded up (0: no quota), of the cgroup that
// `proc_cgroup` (the text of /proc/self/cgroup) names and of its ancestors,
// their files read under `root_v2` (the cgroup2 mount: cpu.max) and
// `root_v1` (the cgroup v1 cpu controller's mount: cpu.cfs_quota_us and
// cpu.cfs_period_us); the tightest one counts. A path that does not exist
// under the mount (a container whose own cgroup is mounted as the root)
// is read from the mount's root. cpu_cores() passes the real files; tests
// pass trees of their own.
int cgroup_cpu_quota(const std::string& proc_cgroup, const std::string& root_v2, const std::string& root_v1);

// Threads of one kernel state. A caller that asked for a number gets it; the
// default (0) re-reads available_threads at most every kInterval, capped at
// the OpenMP maximum. A reading below the count in use is believed only when
// a second one, taken at least kConfirm later, agrees: the kernel's own
// OpenMP threads sleep between steps, and on Linux 6.x a task that has just
// gone to sleep can stay in the run-queue count for up to a time slice, so
// a reading taken then counts it as another process's task (3-7% of the
// eligible steps at 1M x 100 ran on one thread on a quiet machine). A
// process that keeps a core busy is there at both readings. Pools below
// kMinParallelValues values run on one thread: a parallel region costs more
// than the pass itself there (and far more on a busy machine).
class ThreadPolicy {
 public:
  static constexpr int64_t kMinParallelValues = int64_t(1) << 16;
  static constexpr std::chrono::milliseconds kInterval{50};
  static constexpr std::chrono::milliseconds kConfirm{3};

  ThreadPolicy(int requested, int64_t values);

  // The most threads a region may get (per-thread scratch is sized by it).
  int max() const { return max_; }
  // Threads for the next parallel region.
  int now();
  // The rule at time t, with `read()` giving available_threads(0) when a
  // reading is due: now() is at(steady_clock::now(), available_threads).
  // Apart for the tests, which script the clock and the readings.
  template <typename Read>
  int at(std::chrono::steady_clock::time_point t, Read read);
  // An adaptive policy of at most `max` threads (the tests' scripted rule).
  static ThreadPolicy adaptive(int max) { return ThreadPolicy(max, true); }

 private:
  ThreadPolicy(int max, bool adaptive) : max_(max), adaptive_(adaptive) {}
  int max_;
  bool adaptive_;
  int cached_ = 0;
  bool confirming_ = false;  // a lower reading waits for a second one
  std::chrono::steady_clock::time_point next_{};
};

template <typename Read>
int ThreadPolicy::at(std::chrono::steady_clock::time_point t, Read read) {
  if (max_ <= 1 || !adaptive_) return max_;
  if (cached_ > 0 && t < next_) return cached_;
  const int got = std::max(1, std::min(max_, static_cast<int>(read())));
  if (cached_ > 0 && got < cached_ && !confirming_) {
    confirming_ = true;  // keep the count until a second reading agrees
    next_ = t + kConfirm;
    return cached_;
  }
  // the first reading, a reading at or above the count, or the second lower one
  confirming_ = false;
  cached_ = got;
  next_ = t + kInterval;
  return cached_;
}

}  // namespace pcoreset
