// The device memory of a k-center state and the protocol of one method
// call (the private stream joined to the caller's at both ends,
// temporaries freed in stream order). The state (state.cuh) derives from it.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "kcenter_cuda.h"
#include "device_state.cuh"
#include "runtime.cuh"

namespace pcoreset {
namespace cuda {

template <typename S, typename A> class DeviceMemory {
 protected:
  DeviceMemory(const KCenterParams& p, int device) : p_(p), device_(device) {}
  ~DeviceMemory() = default;

  // Frees every buffer, then the stream and its events; reports nothing (at
  // interpreter exit the context may be gone).
  void release_memory() noexcept {
    for (void* p : owned_) release(p);
    owned_.clear();
    if (stream_) cudaStreamSynchronize(stream_);
    if (ev_in_) cudaEventDestroy(ev_in_);
    if (ev_out_) cudaEventDestroy(ev_out_);
    if (stream_) cudaStreamDestroy(stream_);
    stream_ = nullptr;
    ev_in_ = ev_out_ = nullptr;
  }

  // One method call: the device set, the private stream joined to the
  // caller's, temporaries freed in stream order, and at the end the caller's
  // stream made to wait for this call's work and the host synchronised.
  class Call {
   public:
    Call(DeviceMemory& st, void* caller) : st_(st), guard_(st.device_), caller_(static_cast<cudaStream_t>(caller)) {
      if (!st_.broken_.empty())
        throw std::runtime_error("pcoreset CUDA: this state cannot be used after an error inside run() (" +
                                 st_.broken_ + "); make a new one");
      check(cudaEventRecord(st_.ev_in_, caller_), "cudaEventRecord(caller stream)");
      check(cudaStreamWaitEvent(st_.stream_, st_.ev_in_, 0), "cudaStreamWaitEvent");
    }
    ~Call() {
      if (!finished_) {  // an exception: still order the caller after what was queued
        cudaEventRecord(st_.ev_out_, st_.stream_);
        cudaStreamWaitEvent(caller_, st_.ev_out_, 0);
        cudaStreamSynchronize(st_.stream_);
        for (void* p : temps_) st_.release(p);
        cudaGetLastError();
      }
    }
    template <typename T> T* temp(size_t count) {
      T* p = st_.template raw_alloc<T>(count, "a temporary buffer");
      temps_.push_back(p);
      return p;
    }
    template <typename T> const T* upload(const T* host, size_t count) {
      T* p = temp<T>(count);
      if (count) check(cudaMemcpyAsync(p, host, count * sizeof(T), cudaMemcpyHostToDevice, st_.stream_), "cudaMemcpyAsync(upload)");
      return p;
    }
    void finish() {
      for (void* p : temps_) st_.release(p);
      temps_.clear();
      check(cudaEventRecord(st_.ev_out_, st_.stream_), "cudaEventRecord");
      check(cudaStreamWaitEvent(caller_, st_.ev_out_, 0), "cudaStreamWaitEvent(caller stream)");
      // Surfaces any fault of the call here, with its name, rather than in an unrelated later call.
      check(cudaStreamSynchronize(st_.stream_), "k-center call (cudaStreamSynchronize)");
      finished_ = true;
    }

   private:
    DeviceMemory& st_;
    DeviceGuard guard_;
    cudaStream_t caller_;
    std::vector<void*> temps_;
    bool finished_ = false;
  };

  // ---- memory --------------------------------------------------------------------

  template <typename T> T* raw_alloc(size_t count, const char* what) {
    const size_t bytes = std::max<size_t>(1, count * sizeof(T));
    void* p = nullptr;
    const cudaError_t err = async_alloc_ ? cudaMallocAsync(&p, bytes, stream_) : cudaMalloc(&p, bytes);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw DeviceOutOfMemory(bytes, what);
    }
    check(err, "cudaMallocAsync");
    return static_cast<T*>(p);
  }
  template <typename T> T* alloc(size_t count, const char* what) {
    T* p = raw_alloc<T>(count, what);
    owned_.push_back(p);
    bytes_ += std::max<size_t>(1, count * sizeof(T));
    return p;
  }
  void release(void* p) {
    if (!p) return;
    if (async_alloc_) cudaFreeAsync(p, stream_);
    else cudaFree(p);
  }
  // Room for `needed` centers. All new buffers are allocated before any old
  // one is replaced, so a failure leaves the state as it was.
  void ensure_centers(int64_t needed) {
    if (needed <= kcap_) return;
    if (needed >= int64_t(std::numeric_limits<int32_t>::max()))
      throw std::length_error("pcoreset CUDA: more than 2^31 - 1 centers");
    const int64_t cap = std::max<int64_t>({needed, 2 * kcap_, 64});
    const size_t c = static_cast<size_t>(p_.c), k = static_cast<size_t>(k_), uc = static_cast<size_t>(cap);
    A* cm = raw_alloc<A>(uc * c, "the center values");
    A* r2 = nullptr;
    A* dcc = nullptr;
    try {
      r2 = raw_alloc<A>(uc, "the center radii");
      dcc = raw_alloc<A>(uc, "the center distances");
    } catch (...) {
      release(cm);
      release(r2);
      throw;
    }
    auto swap_in = [&](A*& p, A* q, size_t old_count, size_t new_count, size_t keep) {
      if (p && keep)
        check(cudaMemcpyAsync(q, p, keep * sizeof(A), cudaMemcpyDeviceToDevice, stream_), "cudaMemcpyAsync(grow)");
      if (p) {
        owned_.erase(std::find(owned_.begin(), owned_.end(), static_cast<void*>(p)));
        release(p);
        bytes_ -= std::max<size_t>(1, old_count * sizeof(A));
      }
      owned_.push_back(q);
      bytes_ += std::max<size_t>(1, new_count * sizeof(A));
      p = q;
    };
    const size_t old = static_cast<size_t>(kcap_);
    swap_in(s_.cm, cm, old * c, uc * c, k * c);
    swap_in(s_.radius2, r2, old, uc, k);
    swap_in(s_.dcc2, dcc, old, uc, 0);
    kcap_ = cap;
    ++generation_;
  }

  // Room for a run of `budget` picks: slots 0..budget, picks and radii.
  void ensure_run(int64_t budget) {
    if (budget + 1 <= slot_cap_) return;
    const int64_t cap = std::max<int64_t>({budget + 1, 2 * slot_cap_, 64});
    const size_t uc = static_cast<size_t>(cap), old = static_cast<size_t>(slot_cap_);
    // allocate first, then swap (see ensure_centers)
    int64_t* picks = raw_alloc<int64_t>(uc, "the picks");
    double* radii = nullptr;
    unsigned long long* keys = nullptr;
    double* res_d = nullptr;
    long long* res_r = nullptr;
    try {
      radii = raw_alloc<double>(uc, "the radii");
      if (std::is_same<A, float>::value) {
        keys = raw_alloc<unsigned long long>(uc, "the argmax slots");
      } else {
        res_d = raw_alloc<double>(uc, "the argmax slots");
        res_r = raw_alloc<long long>(uc, "the argmax slots");
      }
    } catch (...) {
      release(picks);
      release(radii);
      release(keys);
      release(res_d);
      throw;
    }
    auto swap_in = [&](auto*& p, auto* q) {
      using T = std::remove_pointer_t<std::remove_reference_t<decltype(p)>>;
      if (p) {
        owned_.erase(std::find(owned_.begin(), owned_.end(), static_cast<void*>(p)));
        release(p);
        bytes_ -= std::max<size_t>(1, old * sizeof(T));
      }
      if (q) {
        owned_.push_back(q);
        bytes_ += std::max<size_t>(1, uc * sizeof(T));
      }
      p = q;
    };
    swap_in(s_.picks, picks);
    swap_in(s_.radii2, radii);
    if (std::is_same<A, float>::value) {
      swap_in(s_.keys, keys);
    } else {
      swap_in(s_.res_d, res_d);
      swap_in(s_.res_r, res_r);
    }
    slot_cap_ = cap;
    ++generation_;
  }

  KCenterParams p_;
  int device_;
  bool async_alloc_ = false;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ev_in_ = nullptr, ev_out_ = nullptr;
  Dev<S, A> s_{};
  int64_t k_ = 0, kcap_ = 0, slot_cap_ = 0;  // centers, their capacity, run slots' capacity
  int64_t generation_ = 0;                    // bumped when a buffer moves (graphs capture pointers)
  std::vector<void*> owned_;
  size_t bytes_ = 0;
  std::string broken_;  // why the state refuses every call (an error inside run()), or empty
};

}  // namespace cuda
}  // namespace pcoreset
