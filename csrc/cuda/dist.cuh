// Squared distances for the CUDA k-center kernels, all in the lane order of
// row_math.h (lane k sums the columns j = k, k + 32, ... in increasing j, then
// the 32 lane sums fold by halving), so every distance has the bits of the
// CPU kernel's (nvcc --fmad=false, g++ -ffp-contract=off).
//
// Three shapes, one order:
//   warp_dist    (the start): one row per warp, 8 columns per lane per
//                chunk; the center read through a functor (global memory).
//   dist_batch   (the steps' pass and dcc): up to 4 rows per warp at once, U
//                columns per lane per chunk; the R*U loads of a chunk are
//                issued before any of them is used (16 loads in flight per
//                lane for 2- and 4-byte values, 8 for float64 or logits), and
//                with kPrefetch the next chunk's loads are issued before this
//                chunk's math. The center is read from shared memory (or from
//                global memory when it does not fit).
//   thread_dist  (the steps' pass, c <= 32): one row per thread; with at most
//                one column per lane, the thread's 32 "lanes" are its 32
//                columns and the same halving fold gives the same bits.
#pragma once

#include <type_traits>

#include "pcoreset/row_math.h"
#include "reduce.cuh"

namespace pcoreset {
namespace cuda {

// Early exit, as on the CPU: a partial sum of non-negative terms above the
// stop value by this margin cannot fold to less than it.
template <typename A> struct ExitSlack;
template <> struct ExitSlack<float> { static constexpr float value = 1.0f + 1e-3f; };
template <> struct ExitSlack<double> { static constexpr double value = 1.0 + 1e-9; };

template <typename A> __device__ __forceinline__ A inf_of() {
  if constexpr (std::is_same<A, float>::value) return __int_as_float(0x7f800000);
  else return __longlong_as_double(0x7ff0000000000000LL);
}

// Loads of state that other blocks of a persistent kernel may have written
// go to L2 (ld.global.cg): an L1 line cached in an earlier step can never be
// read stale. The pool itself never changes and goes through the read-only
// path (ld.global.nc).
template <typename T> __device__ __forceinline__ T ld_shared_state(const T* p) { return __ldcg(p); }

// One stored value as it is loaded (16-bit types as their raw bits) and
// converted to the accumulation type, through row_math.h's conversions.
template <typename T> struct Raw {
  using type = T;
  template <bool kConst> __device__ static __forceinline__ T load(const T* p) {
    if constexpr (kConst) return __ldg(p);
    else return ld_shared_state(p);
  }
};
template <> struct Raw<f16_t> {
  using type = unsigned short;
  template <bool kConst> __device__ static __forceinline__ unsigned short load(const f16_t* p) {
    return __ldg(&p->bits);
  }
};
template <> struct Raw<bf16_t> {
  using type = unsigned short;
  template <bool kConst> __device__ static __forceinline__ unsigned short load(const bf16_t* p) {
    return __ldg(&p->bits);
  }
};

template <typename T, typename A> __device__ __forceinline__ A raw_value(typename Raw<T>::type r) {
  if constexpr (std::is_same<T, f16_t>::value) return static_cast<A>(half_bits_to_float(r));
  else if constexpr (std::is_same<T, bf16_t>::value) return static_cast<A>(bf16_bits_to_float(r));
  else return static_cast<A>(r);
}

// Loads a lane keeps in flight in dist_batch: R * U.
template <typename A> struct LoadsInFlight { static constexpr int value = 16; };
template <> struct LoadsInFlight<double> { static constexpr int value = 8; };

// ---- one row per warp (the start) ----------------------------------------------

constexpr int kUnroll = 8;  // warp_dist: columns per lane per chunk; also its early-exit period

template <typename A> struct VecCenter {
  const A* v;
  __device__ __forceinline__ A operator()(int64_t j) const { return v[j]; }
};

// Squared distance between a stored row and a center, computed by a whole
// warp. All lanes return the same value. With stop in [0, inf) it may return
// early with a value > stop (no update follows).
template <typename S, typename A, bool kLogits, typename Center>
__device__ A warp_dist(const S* __restrict__ row, SoftmaxRow<A> sm, A inv_t, const Center& ctr, int64_t c, A stop,
                       int lane) {
  A acc = A(0);
  const bool early = stop >= A(0) && stop < inf_of<A>();
  const A stop_slack = stop * ExitSlack<A>::value;
  int64_t j0 = 0;
  for (; j0 + kUnroll * kLanes <= c; j0 += kUnroll * kLanes) {
    A v[kUnroll], w[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t j = j0 + u * kLanes + lane;
      v[u] = row_value<S, A>(row, j, kLogits, sm, inv_t);
      w[u] = ctr(j);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const A d = v[u] - w[u];
      acc = acc + d * d;
    }
    if (early) {
      const A partial = warp_allsum(acc);
      if (partial > stop_slack) return partial;
    }
  }
  for (int64_t j = j0 + lane; j < c; j += kLanes) {
    const A d = row_value<S, A>(row, j, kLogits, sm, inv_t) - ctr(j);
    acc = acc + d * d;
  }
  return warp_fold(acc);
}

// ---- several rows per warp, one row per thread (the steps) ----------------------

// Squared distances of R rows (null = no row; rows[0] must be set) to the
// center `ctr`, U columns per lane per chunk: the R * U loads of a chunk are
// issued before any is used, and each center value is read once for the R
// rows. Each lane walks its own pointer per row, advanced once per chunk, so
// the loads of a chunk use immediate offsets. Rows are of type T (the pool's
// storage, or the accumulation type for center vectors); kConst: T is the
// read-only pool.
//
// kPrefetch: the loads of the next chunk (the last, partial one included) go
// out before this chunk's math, so a warp never waits for memory between two
// chunks of a row; without it a warp loads a chunk, computes, then loads the
// next (kept to compare the two on a device, benchmarks/gpu_bench.py). Only
// the time of the loads differs: every lane adds the same values in the same
// order, so both give the same bits.
//
// With early, row r may stop at a chunk boundary (every 256 columns or more)
// once its partial sum exceeds stop[r] by the slack: out[r] is then that
// partial sum (> stop[r]). A missing or stopped row keeps loading, from the
// pointer of a row still running (the same addresses: L1 hits, no memory
// traffic), so that no load needs a predicate; its sums are never read.
// Every lane returns the same values; out[r] of a null row is not written.
template <int R, int U, typename T, typename A, bool kLogits, bool kConst, bool kPrefetch = false>
__device__ __forceinline__ void dist_batch(const T* const (&rows)[R], const SoftmaxRow<A> (&sm)[R], A inv_t,
                                           const A* ctr, int64_t c, const A (&stop)[R], bool early, A (&out)[R],
                                           int lane) {
  using RawT = typename Raw<T>::type;
  constexpr int64_t kChunk = int64_t(U) * kLanes;
  constexpr int64_t kCheck = kChunk >= 256 ? kChunk : 256;  // columns between early-exit checks
  const T* p[R];
  unsigned live = 0;  // bit r: row r still running (the same on every lane)
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (rows[r]) live |= 1u << r;
    p[r] = (rows[r] ? rows[r] : rows[0]) + lane;
  }
  const A* w_lane = ctr + lane;
  A acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = A(0);
  // The values of the chunk at column j0 (offset `ahead` from p): a lane's
  // columns past c load nothing and read as 0 (never added, see below).
  auto load = [&](RawT(&dst)[R][U], int64_t j0, int64_t ahead, bool full) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
      for (int u = 0; u < U; ++u)
        dst[r][u] = (full || j0 + u * kLanes + lane < c) ? Raw<T>::template load<kConst>(p[r] + ahead + u * kLanes)
                                                         : RawT(0);
    }
  };
  // Adds the chunk at column j0; full: no column of it is past c.
  auto add = [&](const RawT(&raw)[R][U], int64_t j0, bool full) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (full || j0 + u * kLanes + lane < c) {
        const A w = w_lane[u * kLanes];
#pragma unroll
        for (int r = 0; r < R; ++r) {
          A v = raw_value<T, A>(raw[r][u]);
          if constexpr (kLogits) v = logit_to_prob(v, sm[r], inv_t);
          const A d = v - w;
          acc[r] = acc[r] + d * d;
        }
      }
    }
  };
  RawT next[R][U];
  if constexpr (kPrefetch) {
    if (kChunk <= c) load(next, 0, 0, true);
  }
  int64_t j0 = 0;
  for (; j0 + kChunk <= c; j0 += kChunk) {
    RawT raw[R][U];
    if constexpr (kPrefetch) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int u = 0; u < U; ++u) raw[r][u] = next[r][u];
      }
      if (j0 + 2 * kChunk <= c) load(next, j0 + kChunk, kChunk, true);
      else if (j0 + kChunk < c) load(next, j0 + kChunk, kChunk, false);
    } else {
      load(raw, j0, 0, true);
    }
    add(raw, j0, true);
#pragma unroll
    for (int r = 0; r < R; ++r) p[r] += kChunk;
    w_lane += kChunk;
    if (early && (j0 + kChunk) % kCheck == 0 && j0 + kChunk < c) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (live & (1u << r)) {
          const A partial = warp_allsum(acc[r]);
          if (partial > stop[r] * ExitSlack<A>::value) {
            out[r] = partial;
            live &= ~(1u << r);
          }
        }
      }
      if (!live) return;
      // A stopped row's prefetched values came from its own row (addresses
      // inside it); its sums are never read again.
      const T* any_live = p[0];  // constant indices only: p stays in registers
#pragma unroll
      for (int r = R - 1; r >= 0; --r)
        if (live & (1u << r)) any_live = p[r];
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (!(live & (1u << r))) p[r] = any_live;
    }
  }
  if (j0 < c) {  // the last, partial chunk: a lane's columns past c add nothing
    if constexpr (kPrefetch) {
      if (j0 == 0) load(next, 0, 0, false);  // no full chunk came before it
      add(next, j0, false);
    } else {
      RawT raw[R][U];
      load(raw, j0, 0, false);
      add(raw, j0, false);
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
    if (live & (1u << r)) out[r] = warp_fold(acc[r]);
}

// One row per thread, c <= kLanes: column k is lane k of sq_dist_lanes
// (lanes past c hold 0, and adding +0 changes no sum), folded in the same
// halving order. The fold's first level (lane k += lane k + 16) is applied
// as the second half of the columns arrives, so 16 sums stay live instead of
// 32; the tree, hence every rounding, is that of fold_lanes. Loads go out 16
// at a time ahead of their uses.
template <typename T, typename A, bool kLogits, bool kConst>
__device__ __forceinline__ A thread_dist(const T* row, SoftmaxRow<A> sm, A inv_t, const A* ctr, int c) {
  using RawT = typename Raw<T>::type;
  constexpr int kHalf = kLanes / 2;
  constexpr int kGroup = sizeof(A) == 8 ? 8 : 16;  // loads issued together (registers: 16 sums + kGroup values)
  A lanes[kHalf];
#pragma unroll
  for (int k0 = 0; k0 < kLanes; k0 += kGroup) {
    if (k0 >= kHalf && c <= kHalf) break;
    RawT raw[kGroup];
#pragma unroll
    for (int k = 0; k < kGroup; ++k)
      raw[k] = k0 + k < c ? Raw<T>::template load<kConst>(row + k0 + k) : RawT(0);
#pragma unroll
    for (int k = 0; k < kGroup; ++k) {
      const int col = k0 + k;
      A t = A(0);
      if (col < c) {
        A v = raw_value<T, A>(raw[k]);
        if constexpr (kLogits) v = logit_to_prob(v, sm, inv_t);
        const A d = v - ctr[col];
        t = t + d * d;  // lane col of sq_dist_lanes: 0 + d * d
      }
      if (col < kHalf) lanes[col] = t;
      else if (col < c) lanes[col - kHalf] = lanes[col - kHalf] + t;  // fold level 16, as the columns arrive
    }
  }
  // fold levels 8, 4, 2, 1, spelled out so that the array stays in registers
#pragma unroll
  for (int k = 0; k < 8; ++k) lanes[k] = lanes[k] + lanes[k + 8];
#pragma unroll
  for (int k = 0; k < 4; ++k) lanes[k] = lanes[k] + lanes[k + 4];
#pragma unroll
  for (int k = 0; k < 2; ++k) lanes[k] = lanes[k] + lanes[k + 2];
  return lanes[0] + lanes[1];
}

}  // namespace cuda
}  // namespace pcoreset
