// The k-center state as the CUDA kernels see it: launch constants, the
// control block (Ctl), the device arrays (Dev, owned by the host class in
// state.cuh), and the argmax that ends every pass (finish_pass).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "dist.cuh"
#include "pcoreset/row_math.h"
#include "reduce.cuh"

namespace pcoreset {
namespace cuda {

// The launch's dynamic shared memory (the host emulation, csrc/cuda/emu,
// gives each emulated block its own buffer).
#if defined(PCS_CUDA_EMULATION)
#define PCS_DYNAMIC_SMEM(name) unsigned char* name = ::pcs_emu::dynamic_smem()
#else
#define PCS_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif

constexpr int kThreads = 256;  // 8 warps per block
constexpr int kWarpsPerBlock = kThreads / kLanes;
constexpr int kMaxGridBlocks = 4096;         // bound on the per-block argmax slots (float64)
constexpr int64_t kMeanBlock = 4096;         // rows per partial sum of the mean (as on the CPU)
constexpr int kGraphSteps = 32;              // steps per captured graph
constexpr int kBlocksPerSm = 4;              // step kernels: at most this many blocks per SM in a grid
constexpr size_t kSmemCenterMax = 32 << 10;  // the center in shared memory up to this size

// Register bound of the step kernels (blocks of 256 threads per SM), chosen
// from ptxas -v and the SASS (see benchmarks/RESULTS.md, GPU section):
//   float, no logits, plain pass: 3 blocks (80 registers). ptxas then issues
//     all 16 loads of a chunk before the first use; at 4 blocks (64
//     registers) it interleaves them with the math after 8-10, and 24 warps
//     x 16 loads keep more bytes in flight than 32 warps x ~8.
//   float, no logits, prefetching pass: 2 blocks (128 registers). The next
//     chunk's 16 values are live during this chunk's math; at 80 registers
//     the pass and the step kernel spill (sm_80 and sm_90). So each warp
//     keeps 16 loads in flight without a gap between chunks, in 16 warps per
//     SM instead of 24: which of the two moves more bytes is what the device
//     benchmark measures (benchmarks/gpu_bench.py, plain against prefetch).
//   float with logits: 3 blocks (8 loads per chunk, the exp per value makes
//     this path compute-bound; the step kernel spills on sm_80 at 4).
//   float64: 2 blocks (128 registers; the thread-per-row path holds 16
//     double sums, and the step kernel spills at 3 blocks).
//   float64 with logits (exp in double): no bound (it spills at 128
//     registers).
// No step kernel spills at these bounds.
template <typename A, bool kLogits, bool kPrefetch = false> struct MinBlocks {
  static constexpr int value = std::is_same<A, double>::value ? (kLogits ? 1 : 2) : (kPrefetch && !kLogits ? 2 : 3);
};

enum PassMode : int { kUpdate = 0, kProbe = 1, kScan = 2 };

// The control block, in device memory.
struct Ctl {
  long long t;           // picks recorded so far in the current run
  long long budget;      // picks the current run makes
  long long base;        // centers before the current run's first push
  long long mean_start;  // 1: pick 0 of the run came from the pool mean (radius +inf)
  long long error;       // 1: a step found no eligible row
  unsigned int done;     // blocks of the current pass that have finished (float64 argmax)
  unsigned int pad;
  unsigned long long rows_computed;  // rows whose distance to a new center was computed
  unsigned long long center_dists;   // center-to-center distances computed
};

// Everything the kernels read, by value.
template <typename S, typename A> struct Dev {
  const S* __restrict__ x;
  int64_t n, c;
  A inv_t;
  bool prune;
  A* mind;
  int32_t* nearest;
  const SoftmaxRow<A>* sm;  // null unless from_logits
  A* cm;                    // center values, k x c
  A* radius2;               // per center: upper bound of its rows' mind
  A* dcc2;                  // per center: d^2 to the new center, +inf when it cannot matter
  A* cvec;                  // the current center (or probe vector), c values
  unsigned long long* keys; // float distances: packed argmax per slot
  double* res_d;            // float64: argmax per slot (distance, row)
  long long* res_r;
  double* bb_d;  // float64: per-block best of the pass in progress
  long long* bb_r;
  Ctl* ctl;
  int64_t* picks;  // per run: picks and squared radii
  double* radii2;

  __device__ __forceinline__ SoftmaxRow<A> smrow(int64_t i) const {
    return sm ? sm[i] : SoftmaxRow<A>{A(0), A(1)};
  }
  __device__ __forceinline__ const S* row(int64_t i) const { return x + i * c; }
  __device__ __forceinline__ A* center(int64_t a) const { return cm + a * c; }
};

__device__ __forceinline__ int64_t global_warp() {
  return (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kLanes;
}
__device__ __forceinline__ int64_t total_warps() { return (static_cast<int64_t>(gridDim.x) * blockDim.x) / kLanes; }
__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t total_threads() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

template <typename T> __device__ __forceinline__ T ld_volatile(const T* p) {
  return *reinterpret_cast<const volatile T*>(p);
}

// ---- argmax ----------------------------------------------------------------

// A thread's best (distance, row) so far; ties to the lower row (row_math.h).
template <typename A> struct Arg;
template <> struct Arg<float> {
  unsigned long long key = 0;  // 0: none
  __device__ __forceinline__ void offer(float m, int64_t i) {
    const unsigned long long k = pack_key(m, static_cast<uint32_t>(i));
    key = k > key ? k : key;
  }
};
template <> struct Arg<double> {
  BestD best{0.0, -1};
  __device__ __forceinline__ void offer(double m, int64_t i) { best.offer(m, static_cast<long long>(i)); }
};

struct Pick {
  long long row;  // -1: no eligible row
  double d;
};

// The argmax recorded in a slot (after the pass that wrote it has finished:
// a kernel boundary or a grid barrier).
template <typename S, typename A> __device__ __forceinline__ Pick read_slot(const Dev<S, A>& s, int64_t slot) {
  if constexpr (std::is_same<A, float>::value) {
    const unsigned long long key = ld_shared_state(s.keys + slot);
    return key ? Pick{static_cast<long long>(key_row(key)), static_cast<double>(key_dist2(key))} : Pick{-1, -1.0};
  } else {
    const long long r = ld_shared_state(s.res_r + slot);
    return r >= 0 ? Pick{r, ld_shared_state(s.res_d + slot)} : Pick{-1, -1.0};
  }
}

// End of a pass, by every thread of the block: block reduction of the
// argmax, the new center's radius and the count of computed rows; one
// atomic per block (float), or a per-block slot folded by the last block to
// finish (float64; threadfence + counter, as in CUDA's threadFenceReduction).
template <typename S, typename A>
__device__ void finish_pass(const Dev<S, A>& s, int mode, int64_t slot, int64_t id, Arg<A> arg, A rad,
                            unsigned int computed) {
  __shared__ unsigned long long red_key[kWarpsPerBlock];
  __shared__ double red_d[kWarpsPerBlock];
  __shared__ long long red_r[kWarpsPerBlock];
  __shared__ A red_rad[kWarpsPerBlock];
  __shared__ unsigned int red_n[kWarpsPerBlock];
  __shared__ bool last_block;
  const int lane = threadIdx.x % kLanes, w = threadIdx.x / kLanes;
  if constexpr (std::is_same<A, float>::value) {
    const unsigned long long key = warp_max_u64(arg.key);
    if (lane == 0) red_key[w] = key;
  } else {
    const BestD b = warp_best(arg.best);
    if (lane == 0) {
      red_d[w] = b.d;
      red_r[w] = b.row;
    }
  }
  rad = warp_allmax(rad);
  if (lane == 0) {
    red_rad[w] = rad;
    red_n[w] = computed;  // ballot counts: the same on every lane
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    A r = A(0);
    unsigned long long nc = 0;
    for (int k = 0; k < kWarpsPerBlock; ++k) {
      r = red_rad[k] > r ? red_rad[k] : r;
      nc += red_n[k];
    }
    if (mode == kUpdate) {
      if (r > A(0)) atomic_max_nonneg(s.radius2 + id, r);
      if (nc) atomicAdd(&s.ctl->rows_computed, nc);
    }
    if constexpr (std::is_same<A, float>::value) {
      unsigned long long kk = 0;
      for (int k = 0; k < kWarpsPerBlock; ++k) kk = red_key[k] > kk ? red_key[k] : kk;
      if (kk) atomicMax(s.keys + slot, kk);
    } else {
      BestD all{0.0, -1};
      for (int k = 0; k < kWarpsPerBlock; ++k) all.merge(BestD{red_d[k], red_r[k]});
      s.bb_d[blockIdx.x] = all.d;
      s.bb_r[blockIdx.x] = all.row;
      __threadfence();
      const unsigned int prev = atomicAdd(&s.ctl->done, 1u);
      last_block = prev == gridDim.x - 1;
    }
  }
  if constexpr (std::is_same<A, double>::value) {
    __syncthreads();
    if (last_block) {
      __threadfence();
      BestD b{0.0, -1};
      for (unsigned int k = threadIdx.x; k < gridDim.x; k += blockDim.x) {
        const long long r = ld_shared_state(s.bb_r + k);
        if (r >= 0) b.offer(ld_shared_state(s.bb_d + k), r);
      }
      b = warp_best(b);
      if (lane == 0) {
        red_d[w] = b.d;
        red_r[w] = b.row;
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        BestD all{0.0, -1};
        for (int k = 0; k < kWarpsPerBlock; ++k) all.merge(BestD{red_d[k], red_r[k]});
        s.res_d[slot] = all.d;
        s.res_r[slot] = all.row;
        s.ctl->done = 0u;  // the next pass starts after a barrier or a kernel boundary
      }
    }
  }
}

}  // namespace cuda
}  // namespace pcoreset
