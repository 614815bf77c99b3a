// The fused pass of a greedy step (every eligible row: triangle test,
// distance to the new center, update of its running minimum, argmax) and
// the center-to-center distances (dcc) that the triangle test reads.
#pragma once

#include <cstdint>
#include <type_traits>

#include "device_state.cuh"

namespace pcoreset {
namespace cuda {

// Rows per warp and columns per lane of one chunk in the pass and dcc:
// the loads in flight per lane are kRows * kCols (16 for float accumulation,
// 8 for float64 or logits, where the exp per value makes the pass
// compute-bound), chosen so that the kernels fit the registers of
// MinBlocks without spilling.
template <typename A, bool kLogits> struct Shape {
  static constexpr bool kWide = std::is_same<A, float>::value && !kLogits;
  static constexpr int kRows = kWide ? 4 : 2;
  static constexpr int kCols = 4;
};

// Distances of the rows set in `mask` (bits of the 32-row group at `base`),
// four at a time; returns this lane's row's distance (when its bit was set).
// prune: each row may stop early at its own running minimum m.
// kPrefetch: see dist_batch.
template <typename S, typename A, bool kLogits, bool kPrefetch>
__device__ __forceinline__ A warp_rows(const Dev<S, A>& s, unsigned mask, int64_t base, A m, bool prune,
                                       const A* ctr, int lane) {
  constexpr int R = Shape<A, kLogits>::kRows, U = Shape<A, kLogits>::kCols;
  A mine = A(0);
  while (mask) {
    const S* rows[R];
    SoftmaxRow<A> sm[R];
    A stop[R];
    int src[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      src[r] = mask ? __ffs(mask) - 1 : -1;
      mask = mask ? (mask & (mask - 1)) : 0u;
      rows[r] = src[r] >= 0 ? s.row(base + src[r]) : nullptr;
      if constexpr (kLogits) sm[r] = src[r] >= 0 ? s.smrow(base + src[r]) : SoftmaxRow<A>{A(0), A(1)};
      else sm[r] = SoftmaxRow<A>{A(0), A(1)};
      stop[r] = __shfl_sync(kFullMask, m, src[r] >= 0 ? src[r] : 0);
    }
    A out[R];
    dist_batch<R, U, S, A, kLogits, true, kPrefetch>(rows, sm, s.inv_t, ctr, s.c, stop, prune, out, lane);
#pragma unroll
    for (int r = 0; r < R; ++r)
      if (lane == src[r]) mine = out[r];
  }
  return mine;
}

// The fused pass over every 32-row group of this warp. mode kUpdate:
// new center `ctr` with id `id`, rows updated; kProbe: distances to `ctr`
// (the pool mean) without touching the state; kScan: argmax of mind.
// The count of rows computed goes to this warp's slot in shared memory
// (*computed, lane 0), not a register held across the pass.
//
// Row indices are 32-bit here (n < 2^32 - 64, checked when the state is
// made): fewer registers held across the pass, which lets ptxas issue a
// chunk's loads before their first use.
template <typename S, typename A, bool kLogits, bool kPrefetch>
__device__ __forceinline__ void fused_pass(const Dev<S, A>& s, int mode, int32_t id, const A* ctr,
                                           uint32_t warp, uint32_t nwarps, Arg<A>& arg, A& rad,
                                           unsigned int* computed) {
  const int lane = threadIdx.x % kLanes;
  const uint32_t n = static_cast<uint32_t>(s.n);
  const uint32_t ngroups = (n + kLanes - 1) / kLanes;
  const bool prune = mode == kUpdate && s.prune;
  const bool narrow = s.c <= kLanes;
  // The next group's mind and nearest are loaded while this group is
  // processed (its rows are not touched by this group's updates), so a group
  // starts without a memory round trip.
  auto load_mind = [&](uint32_t g) {
    const uint32_t i = g * kLanes + lane;
    return g < ngroups && i < n ? ld_shared_state(s.mind + i) : taken_mind<A>();
  };
  // (read on every update: a row with no center yet takes this one even at
  // +inf, as the CPU kernel's dense step does)
  auto load_nearest = [&](uint32_t g) {
    const uint32_t i = g * kLanes + lane;
    return mode == kUpdate && g < ngroups && i < n ? ld_shared_state(s.nearest + i) : int32_t(-1);
  };
  A m_next = load_mind(warp);
  int32_t a_next = load_nearest(warp);
  for (uint32_t g = warp; g < ngroups; g += nwarps) {
    const uint32_t base = g * kLanes;
    const uint32_t i = base + lane;
    A m = m_next;
    const int32_t a = a_next;
    m_next = load_mind(g + nwarps);
    a_next = load_nearest(g + nwarps);
    const bool eligible = is_eligible(m);
    bool need = eligible && mode != kScan;
    if (need && prune) need = !(a >= 0 && can_skip_row(ld_shared_state(s.dcc2 + a), m));
    const unsigned mask = __ballot_sync(kFullMask, need);
    if (lane == 0) *computed += __popc(mask);
    A mine = A(0);
    if (narrow) {
      if (need) mine = thread_dist<S, A, kLogits, true>(s.row(i), s.smrow(i), s.inv_t, ctr, static_cast<int>(s.c));
    } else if (mask) {
      mine = warp_rows<S, A, kLogits, kPrefetch>(s, mask, base, m, prune, ctr, lane);
    }
    if (need) {
      if (mode == kProbe) {
        m = mine;
      } else if (mine < m || a < 0) {
        m = mine;
        s.mind[i] = m;
        s.nearest[i] = id;
        rad = m > rad ? m : rad;
      }
    }
    if (eligible) arg.offer(m, i);
  }
}

// Center-to-center distances for the new center `ctr` (id `id`) against
// every earlier center [0, id): +inf for centers with no rows (radius 0) or
// too far to move any of their rows.
template <typename S, typename A>
__device__ __forceinline__ void dcc_pass(const Dev<S, A>& s, int64_t id, const A* ctr, int64_t warp, int64_t nwarps) {
  constexpr int R = Shape<A, false>::kRows, U = Shape<A, false>::kCols;
  const int lane = threadIdx.x % kLanes;
  const int64_t c = s.c;
  unsigned int computed = 0;
  if (c <= kLanes) {  // a center per thread
    for (int64_t a = warp * kLanes + lane; a - lane < id; a += nwarps * kLanes) {
      if (a < id) {
        const A r2 = ld_shared_state(s.radius2 + a);
        A out = inf_of<A>();
        if (r2 > A(0)) {
          const A bound = prune_bound(r2);
          const A d = thread_dist<A, A, false, false>(s.center(a), SoftmaxRow<A>{A(0), A(1)}, A(1), ctr,
                                                      static_cast<int>(c));
          out = d >= bound ? inf_of<A>() : d;
          ++computed;
        }
        s.dcc2[a] = out;
      }
    }
    computed = warp_allsum(computed);
  } else {  // four centers per warp
    for (int64_t a0 = warp * R; a0 < id; a0 += nwarps * R) {
      const A* rows[R];
      SoftmaxRow<A> sm[R];
      A bound[R];
      const A* first = nullptr;  // an active center of the batch (dist_batch needs rows[0])
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t a = a0 + r;
        const A r2 = a < id ? ld_shared_state(s.radius2 + a) : A(0);
        bound[r] = prune_bound(r2);
        rows[r] = r2 > A(0) ? s.center(a) : nullptr;
        sm[r] = SoftmaxRow<A>{A(0), A(1)};
        computed += rows[r] ? 1 : 0;
        if (!first) first = rows[r];
      }
      A out[R];
      if (first) {
        const A* batch[R];
#pragma unroll
        for (int r = 0; r < R; ++r) batch[r] = rows[r];
        if (!batch[0]) batch[0] = first;  // its result is not read (bound[0] == 0)
        dist_batch<R, U, A, A, false, false>(batch, sm, A(1), ctr, c, bound, true, out, lane);
      }
      if (lane == 0) {  // bound > 0 <=> the center has rows (rows[r] may be cleared by an early exit)
#pragma unroll
        for (int r = 0; r < R; ++r)
          if (a0 + r < id) s.dcc2[a0 + r] = (bound[r] > A(0) && out[r] < bound[r]) ? out[r] : inf_of<A>();
      }
    }
  }
  if (lane == 0 && computed) atomicAdd(&s.ctl->center_dists, static_cast<unsigned long long>(computed));
}

}  // namespace cuda
}  // namespace pcoreset
