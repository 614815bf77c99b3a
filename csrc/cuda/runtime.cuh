// Host-side CUDA plumbing of the state: errors, grid sizes, the device
// guard, and the two launch paths (nvcc's launches, or the host emulation's
// fibers on the CPU, csrc/cuda/emu).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace pcoreset {
namespace cuda {

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("pcoreset CUDA: ") + what + " failed: " + cudaGetErrorName(err) + " (" +
                             cudaGetErrorString(err) + ")");
}

inline int grid_for(int64_t per_block, int64_t work, int64_t cap) {
  const int64_t g = (work + per_block - 1) / per_block;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(g, cap)));
}

// Sets the device for the duration of a call and restores the caller's.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&prev_), "cudaGetDevice");
    if (prev_ != device) check(cudaSetDevice(device), "cudaSetDevice");
    device_ = device;
  }
  ~DeviceGuard() {
    if (prev_ >= 0 && prev_ != device_) cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1, device_ = -1;
};

// Every kernel launch goes through these two: with nvcc the <<<>>> launch
// and the cooperative launch; in the host emulation (csrc/cuda/emu, a test)
// fibers on the CPU.
template <typename... P, typename... Args>
inline void launch(void (*kernel)(P...), unsigned grid, unsigned block, size_t smem, cudaStream_t stream,
                   Args&&... args) {
#if defined(PCS_CUDA_EMULATION)
  pcs_emu::launch(kernel, grid, block, smem, stream, false, std::forward<Args>(args)...);
#else
  kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
#endif
}

template <typename... P>
inline cudaError_t launch_cooperative(void (*kernel)(P...), unsigned grid, unsigned block, size_t smem,
                                      cudaStream_t stream, P... args) {
#if defined(PCS_CUDA_EMULATION)
  return pcs_emu::launch(kernel, grid, block, smem, stream, true, args...);
#else
  void* ptrs[] = {static_cast<void*>(&args)...};
  return cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(kernel), dim3(grid), dim3(block), ptrs, smem,
                                     stream);
#endif
}

}  // namespace cuda
}  // namespace pcoreset
