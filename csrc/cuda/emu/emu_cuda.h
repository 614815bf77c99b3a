// A host emulation of the CUDA subset that csrc/cuda uses, for tests on
// machines without a GPU (tests/test_cuda.py builds the real kernels.cuh,
// state.cuh and bind_cuda.cpp with g++ against it and compares every result
// with the CPU kernel).
//
// Execution model: a launch runs every block of its grid at once, one OS
// thread per block; the threads of a block are fibers on that OS thread
// (a small x86-64 context switch), so `__shared__` variables are per-block
// thread_locals. A warp collective (shuffle, ballot) is a barrier of the
// warp's 32 fibers, __syncthreads a barrier of the block's, and a grid
// barrier (cooperative_groups) a barrier of all blocks. A collective that
// not every lane reaches deadlocks, and the scheduler then aborts with a
// message, as it should: on the GPU that is undefined behaviour.
//
// The runtime API runs every operation at once (streams are synchronous),
// graph capture records launches and replays them, device memory is host
// memory filled with 0xFF bytes (NaN floats, -1 integers) so that reading
// memory nobody initialised shows up in the results.
//
// Not emulated: timing, memory-model reorderings between blocks (loads and
// stores are sequentially consistent here), the device's expf (the host
// libm's is used, as in the CPU kernel).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define PCS_CUDA_EMULATION 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __align__(n) alignas(n)
#define CUDART_VERSION 13000
#define __CUDACC_VER_MAJOR__ 13
#define __CUDACC_VER_MINOR__ 0

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3() = default;
  dim3(unsigned a, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorCooperativeLaunchTooLarge = 720,
  cudaErrorNotSupported = 801,
  cudaErrorStreamCaptureInvalidated = 901,
};
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
enum cudaDeviceAttr {
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrCooperativeLaunch = 95,
  cudaDevAttrMemoryPoolsSupported = 115,
};
enum cudaStreamCaptureMode { cudaStreamCaptureModeThreadLocal = 1 };
constexpr unsigned cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDisableTiming = 2;

namespace pcs_emu {
struct Stream {
  bool capturing = false;
  std::vector<std::function<void()>> captured;
};
struct Graph {
  std::vector<std::function<void()>> launches;
};
}  // namespace pcs_emu
using cudaStream_t = pcs_emu::Stream*;
using cudaEvent_t = int*;
using cudaGraph_t = pcs_emu::Graph*;
using cudaGraphExec_t = pcs_emu::Graph*;

// ---- runtime API (emu_cuda.cpp) -------------------------------------------------
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int device);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t s);
cudaError_t cudaFree(void* p);
cudaError_t cudaFreeAsync(void* p, cudaStream_t s);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s);
cudaError_t cudaGetLastError();
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t g, unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);
template <typename K>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, K, int, size_t) {
  *blocks = 2;  // with 2 SMs (cudaDeviceGetAttribute): grids of up to 4 blocks
  return cudaSuccess;
}

namespace pcs_emu {

// ---- execution --------------------------------------------------------------------
void run_grid(const std::function<void()>& body, unsigned grid, unsigned block, size_t smem, bool cooperative);
dim3 thread_idx();
extern thread_local dim3 block_idx, block_dim, grid_dim;
unsigned char* dynamic_smem();
void warp_barrier();
void block_barrier();
void grid_barrier();
// A slot of this lane's warp for exchanges: (parity, lane) -> 8 bytes.
uint64_t* warp_slot(int parity, int lane);
int warp_parity();

// False when the emulated device refuses this cooperative launch (see
// PCS_EMU_COOPERATIVE_LIMIT in emu_cuda.cpp; tests of the fallback).
bool cooperative_allowed();
// False for the launch that PCS_EMU_FAIL_LAUNCH names (see emu_cuda.cpp;
// tests of the error paths): it does not run and reports
// cudaErrorLaunchOutOfResources, through cudaGetLastError too.
bool launch_allowed();
void set_last_error(cudaError_t e);

template <typename... P, typename... Args>
cudaError_t launch(void (*kernel)(P...), unsigned grid, unsigned block, size_t smem, cudaStream_t stream,
                   bool cooperative, Args&&... args) {
  if (cooperative && !cooperative_allowed()) return cudaErrorCooperativeLaunchTooLarge;
  if (!launch_allowed()) {
    set_last_error(cudaErrorLaunchOutOfResources);
    return cudaErrorLaunchOutOfResources;
  }
  std::tuple<std::decay_t<P>...> params(static_cast<P>(std::forward<Args>(args))...);
  auto body = [kernel, params]() { std::apply(kernel, params); };
  auto run = [body, grid, block, smem, cooperative]() { run_grid(body, grid, block, smem, cooperative); };
  if (stream && stream->capturing) stream->captured.push_back(run);
  else run();
  return cudaSuccess;
}

template <typename T> T exchange(T v, int src) {
  static_assert(sizeof(T) <= 8, "exchange of at most 8 bytes");
  const int lane = static_cast<int>(thread_idx().x % 32);
  const int parity = warp_parity();
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  *warp_slot(parity, lane) = bits;
  warp_barrier();
  T out;
  const uint64_t got = *warp_slot(parity, src);
  std::memcpy(&out, &got, sizeof(T));
  return out;
}

}  // namespace pcs_emu

#define threadIdx (::pcs_emu::thread_idx())
#define blockIdx (::pcs_emu::block_idx)
#define blockDim (::pcs_emu::block_dim)
#define gridDim (::pcs_emu::grid_dim)

// ---- device intrinsics -------------------------------------------------------------
inline void __syncthreads() { pcs_emu::block_barrier(); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
template <typename T> T __shfl_sync(unsigned, T v, int src) { return pcs_emu::exchange(v, src & 31); }
template <typename T> T __shfl_down_sync(unsigned, T v, unsigned delta) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int src = lane + static_cast<int>(delta);
  const T got = pcs_emu::exchange(v, src < 32 ? src : lane);
  return got;
}
template <typename T> T __shfl_xor_sync(unsigned, T v, int mask) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  return pcs_emu::exchange(v, (lane ^ mask) & 31);
}
inline unsigned __ballot_sync(unsigned, int pred) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int parity = pcs_emu::warp_parity();
  *pcs_emu::warp_slot(parity, lane) = pred ? 1u : 0u;
  pcs_emu::warp_barrier();
  unsigned out = 0;
  for (int k = 0; k < 32; ++k)
    if (*pcs_emu::warp_slot(parity, k)) out |= 1u << k;
  return out;
}
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __ffs(unsigned v) { return __builtin_ffs(static_cast<int>(v)); }
template <typename T> T __ldg(const T* p) { return *p; }
template <typename T> T __ldcg(const T* p) { return *reinterpret_cast<const volatile T*>(p); }
inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline float __uint_as_float(unsigned v) { float f; std::memcpy(&f, &v, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned v; std::memcpy(&v, &f, 4); return v; }
inline double __longlong_as_double(long long v) { double d; std::memcpy(&d, &v, 8); return d; }
inline long long __double_as_longlong(double d) { long long v; std::memcpy(&v, &d, 8); return v; }
template <typename T> T atomic_max_emu(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return old;
}
inline unsigned atomicMax(unsigned* p, unsigned v) { return atomic_max_emu(p, v); }
inline unsigned long long atomicMax(unsigned long long* p, unsigned long long v) { return atomic_max_emu(p, v); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}

namespace cooperative_groups {
struct grid_group {
  void sync() { pcs_emu::grid_barrier(); }
};
inline grid_group this_grid() { return {}; }
}  // namespace cooperative_groups
