// Exceptions out of OpenMP regions.
//
// An exception may not leave an OpenMP region: the runtime ends the process
// (std::terminate), so an allocation that fails on one thread of a step
// would lose the whole run instead of raising MemoryError. A region's work
// therefore runs through TeamErrors::run, which keeps the first exception
// and makes every later run() return at once; each thread still meets the
// region's worksharing loops and barriers. After the region the calling
// thread calls rethrow(). The work that raised is left half done; the
// caller treats it as it treats a step that raised on one thread (the state
// finishes the step before it is read again, see kcenter_cpu.cpp).
#pragma once

#include <atomic>
#include <exception>

namespace pcoreset {
namespace {  // internal linkage: included by translation units built for different instruction sets

class TeamErrors {
 public:
  template <typename Work>
  void run(Work&& work) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      work();
    } catch (...) {
      if (!claimed_.exchange(true)) first_ = std::current_exception();
      failed_.store(true);
    }
  }

  bool failed() const { return failed_.load(); }

  // On the calling thread, after the region (the region's end is a barrier,
  // so first_ is written before this reads it).
  void rethrow() {
    if (failed_.load()) std::rethrow_exception(first_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::atomic<bool> claimed_{false};
  std::exception_ptr first_;
};

}  // namespace
}  // namespace pcoreset
