// Warp and block reductions for the CUDA k-center kernel.
#pragma once

#include <cstdint>

#include "pcoreset/row_math.h"

namespace pcoreset {
namespace cuda {

constexpr unsigned kFullMask = 0xFFFFFFFFu;

// Fold one partial sum per lane in the shared lane order (row_math.h
// fold_lanes: lane k += lane k + offset for offset 16, 8, 4, 2, 1) and
// broadcast lane 0's total, so every lane returns the same bits.
template <typename A> __device__ __forceinline__ A warp_fold(A v) {
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset >>= 1) v = v + __shfl_down_sync(kFullMask, v, offset);
  return __shfl_sync(kFullMask, v, 0);
}

// Butterfly sum: every lane gets the same value (each step adds the same
// pair in either order). Only used for early-exit decisions, which carry
// a slack, never for a distance that is compared or stored.
template <typename A> __device__ __forceinline__ A warp_allsum(A v) {
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset >>= 1) v = v + __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

template <typename A> __device__ __forceinline__ A warp_allmax(A v) {
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset >>= 1) {
    const A o = __shfl_xor_sync(kFullMask, v, offset);
    v = o > v ? o : v;
  }
  return v;
}

__device__ __forceinline__ unsigned long long warp_max_u64(unsigned long long v) {
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset >>= 1) {
    const unsigned long long o = __shfl_xor_sync(kFullMask, v, offset);
    v = o > v ? o : v;
  }
  return v;
}

// (distance, row) candidate for the float64 path, where the distance does
// not fit a packed 64-bit key. row < 0: none.
struct BestD {
  double d;
  long long row;
  __device__ __forceinline__ void offer(double d2, long long i) {
    if (row < 0 || better(d2, static_cast<int64_t>(i), d, static_cast<int64_t>(row))) {
      d = d2;
      row = i;
    }
  }
  __device__ __forceinline__ void merge(const BestD& o) {
    if (o.row >= 0) offer(o.d, o.row);
  }
};

__device__ __forceinline__ BestD warp_best(BestD b) {
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset >>= 1) {
    BestD o;
    o.d = __shfl_xor_sync(kFullMask, b.d, offset);
    o.row = __shfl_xor_sync(kFullMask, b.row, offset);
    b.merge(o);
  }
  return b;
}

// atomicMax on a non-negative float / double through its bit pattern
// (order-preserving for non-negative values).
__device__ __forceinline__ void atomic_max_nonneg(float* p, float v) {
  atomicMax(reinterpret_cast<unsigned int*>(p), __float_as_uint(v));
}
__device__ __forceinline__ void atomic_max_nonneg(double* p, double v) {
  atomicMax(reinterpret_cast<unsigned long long*>(p),
            static_cast<unsigned long long>(__double_as_longlong(v)));
}

}  // namespace cuda
}  // namespace pcoreset
