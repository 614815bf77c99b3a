// The greedy steps of a run: three kernels per step (prep, dcc, pass; the
// graph and plain-launch modes) or one persistent cooperative kernel per
// segment of steps (step_kernel).
#pragma once

#include <cooperative_groups.h>

#include <cstdint>
#include <type_traits>

#include "pass.cuh"

namespace pcoreset {
namespace cuda {

// ---- kernels: one step as three launches --------------------------------------

// The center of the next step: pick t decoded from slot t, recorded, and
// (unless it is the run's last) made center base + t. Or, with given_row >= 0
// (push_row), that row made center `given_id`.
template <typename S, typename A, bool kLogits>
__global__ void __launch_bounds__(kThreads) prep_kernel(Dev<S, A> s, long long given_row, long long given_id) {
  __shared__ long long sh_row;
  long long t = 0, id = given_id;
  bool push = true;
  if (given_row >= 0) {
    if (threadIdx.x == 0) sh_row = given_row;
  } else {
    t = ld_volatile(&s.ctl->t);
    const long long budget = ld_volatile(&s.ctl->budget);
    if (t >= budget || ld_volatile(&s.ctl->error)) return;
    push = t + 1 < budget;
    id = ld_volatile(&s.ctl->base) + t;
    if (threadIdx.x == 0) {
      const Pick p = read_slot(s, t);
      sh_row = p.row;
      s.picks[t] = p.row;
      s.radii2[t] = (t == 0 && ld_volatile(&s.ctl->mean_start)) ? static_cast<double>(inf_of<double>()) : p.d;
    }
  }
  __syncthreads();
  const long long row = sh_row;
  if (row >= 0 && push) {
    const S* xr = s.row(row);
    const SoftmaxRow<A> sm = s.smrow(row);
    A* out = s.center(id);
    for (int64_t j = threadIdx.x; j < s.c; j += blockDim.x) {
      const A v = row_value<S, A>(xr, j, kLogits, sm, s.inv_t);
      out[j] = v;
      s.cvec[j] = v;
    }
    if (threadIdx.x == 0) {
      s.mind[row] = taken_mind<A>();
      s.nearest[row] = static_cast<int32_t>(id);
      s.radius2[id] = A(0);
    }
  }
  if (given_row < 0) {
    __syncthreads();  // every thread has read ctl->t before it moves on
    if (threadIdx.x == 0) {
      // No eligible row (a budget larger than the eligible rows): the run
      // stops with t picks recorded, every one of them a center, and every
      // later kernel of the run does nothing.
      if (row < 0) s.ctl->error = 1;
      else s.ctl->t = t + 1;
    }
  }
}

// cvec = center `id` (push_center).
template <typename S, typename A> __global__ void center_to_cvec_kernel(Dev<S, A> s, long long id) {
  for (int64_t j = global_thread(); j < s.c; j += total_threads()) s.cvec[j] = s.cm[id * s.c + j];
}

// In a run (fixed_id < 0): the step number from ctl; nothing to do before
// the first push, after the last pick, or after a step found no row.
template <typename S, typename A>
__device__ __forceinline__ bool step_id(const Dev<S, A>& s, long long fixed_id, long long& id, long long& slot) {
  if (fixed_id >= 0) {
    id = fixed_id;
    slot = 0;
    return true;
  }
  const long long t = ld_volatile(&s.ctl->t);
  if (t >= ld_volatile(&s.ctl->budget) || t == 0 || ld_volatile(&s.ctl->error)) return false;
  id = ld_volatile(&s.ctl->base) + t - 1;
  slot = t;
  return true;
}

// Copies cvec into shared memory (the caller checked that it fits).
template <typename S, typename A> __device__ __forceinline__ void stage_center(const Dev<S, A>& s, A* smem) {
  for (int64_t j = threadIdx.x; j < s.c; j += blockDim.x) smem[j] = s.cvec[j];
  __syncthreads();
}

// kSmem: the center in shared memory (c * sizeof(A) <= kSmemCenterMax),
// else read from cvec in global memory.
template <typename S, typename A, bool kLogits, bool kSmem>
__global__ void __launch_bounds__(kThreads, (MinBlocks<A, kLogits>::value))
    dcc_kernel(Dev<S, A> s, long long fixed_id) {
  PCS_DYNAMIC_SMEM(smem_raw);
  long long id, slot;
  if (!step_id(s, fixed_id, id, slot)) return;
  if constexpr (kSmem) {
    A* ctr = reinterpret_cast<A*>(smem_raw);
    stage_center(s, ctr);
    dcc_pass(s, id, static_cast<const A*>(ctr), global_warp(), total_warps());
  } else {
    dcc_pass(s, id, static_cast<const A*>(s.cvec), global_warp(), total_warps());
  }
}

// The fused pass as its own kernel. mode kUpdate with fixed_slot < 0: the
// step of a run (slot and center id from ctl); otherwise slot fixed_slot and
// center fixed_id. kSmem: the center staged in shared memory (c * sizeof(A)
// <= kSmemCenterMax), else read from cvec in global memory (wide rows).
// kPrefetch: see dist_batch.
template <typename S, typename A, bool kLogits, bool kSmem, bool kPrefetch>
__global__ void __launch_bounds__(kThreads, (MinBlocks<A, kLogits, kPrefetch>::value))
    pass_kernel(Dev<S, A> s, int mode, long long fixed_slot, long long fixed_id) {
  PCS_DYNAMIC_SMEM(smem_raw);
  __shared__ unsigned int warp_computed[kWarpsPerBlock];
  long long id = fixed_id, slot = fixed_slot;
  if (mode == kUpdate && fixed_slot < 0) {
    if (!step_id(s, -1, id, slot)) return;
  }
  Arg<A> arg;
  A rad = A(0);
  unsigned int* computed = warp_computed + threadIdx.x / kLanes;
  if (threadIdx.x % kLanes == 0) *computed = 0;
  const A* ctr = s.cvec;
  if constexpr (kSmem) {
    A* staged = reinterpret_cast<A*>(smem_raw);
    if (mode != kScan) stage_center(s, staged);
    ctr = staged;
  }
  fused_pass<S, A, kLogits, kPrefetch>(s, mode, static_cast<int32_t>(id), ctr, static_cast<uint32_t>(global_warp()),
                                       static_cast<uint32_t>(total_warps()), arg, rad, computed);
  finish_pass(s, mode, slot, id, arg, rad, *computed);  // lane 0's count (the only one finish_pass reads)
}

// ---- kernel: steps [t0, t1) of a run in one cooperative launch --------------------

// Each step: every block reads slot t (the same value everywhere, so every
// block takes the same branch and reaches the same barriers), block 0
// records pick t, every block expands the pick into its shared-memory copy
// of the center (block 0 also stores it as center base + t), the block that
// owns the pick's row marks it taken, then the dcc phase, a grid barrier,
// the pass into slot t + 1, a grid barrier. Without pruning the first
// barrier is not needed. radius2 of the run's new centers is zeroed by the
// host before the run (the pass's atomicMax must not race with a store).
//
// A step that finds no eligible row (a budget larger than the eligible
// rows) sets ctl->error and leaves ctl->t at the picks recorded, all of them
// centers; the segments queued after it then do nothing. kPrefetch: see
// dist_batch.
template <typename S, typename A, bool kLogits, bool kPrefetch>
__global__ void __launch_bounds__(kThreads, (MinBlocks<A, kLogits, kPrefetch>::value))
    step_kernel(Dev<S, A> s, long long t0, long long t1) {
  namespace cg = cooperative_groups;
  PCS_DYNAMIC_SMEM(smem_raw);
  A* ctr = reinterpret_cast<A*>(smem_raw);
  __shared__ long long sh_row, sh_budget, sh_base, sh_mean_start, sh_error;
  __shared__ double sh_d;
  __shared__ unsigned int warp_computed[kWarpsPerBlock];
  if (threadIdx.x == 0) {  // loop invariants in shared memory: registers go to the pass
    sh_budget = ld_volatile(&s.ctl->budget);
    sh_base = ld_volatile(&s.ctl->base);
    sh_mean_start = ld_volatile(&s.ctl->mean_start);
    sh_error = ld_volatile(&s.ctl->error);  // written by an earlier launch: the same in every block
  }
  __syncthreads();
  if (sh_error) return;
  // 32-bit step counter: t < budget <= n < 2^32 - 1 (one register less across the pass)
  for (uint32_t t = static_cast<uint32_t>(t0); t < static_cast<uint32_t>(t1); ++t) {
    if (threadIdx.x == 0) {
      const Pick p = read_slot(s, t);
      sh_row = p.row;
      sh_d = p.d;
    }
    __syncthreads();
    const long long budget = sh_budget;
    const long long row = sh_row;
    if (row < 0) {  // no eligible row: every block read the same slot and stops here
      if (blockIdx.x == 0 && threadIdx.x == 0) s.ctl->error = 1;
      return;
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) {
      s.picks[t] = row;
      s.radii2[t] = (t == 0 && sh_mean_start) ? static_cast<double>(inf_of<double>()) : sh_d;
      s.ctl->t = t + 1;
    }
    if (int64_t(t) + 1 >= budget) return;  // the run's last pick is not pushed
    const int64_t id = sh_base + t;
    const S* xr = s.row(row);
    const SoftmaxRow<A> sm = s.smrow(row);
    for (int64_t j = threadIdx.x; j < s.c; j += blockDim.x) {
      const A v = row_value<S, A>(xr, j, kLogits, sm, s.inv_t);
      ctr[j] = v;
      if (blockIdx.x == 0) s.cm[id * s.c + j] = v;
    }
    // The new center's row is taken. The block whose warp owns its 32-row
    // group (group g goes to warp g mod total_warps) writes that itself, so
    // its pass sees it after this block's barrier; no other block reads it.
    if (threadIdx.x == 0 && (row / kLanes) % total_warps() / kWarpsPerBlock == blockIdx.x) {
      s.mind[row] = taken_mind<A>();
      s.nearest[row] = static_cast<int32_t>(id);
    }
    __syncthreads();
    if (s.prune) {
      dcc_pass(s, id, ctr, global_warp(), total_warps());
      cg::this_grid().sync();  // the handle is fetched at each barrier, not held in registers
    }
    Arg<A> arg;
    A rad = A(0);
    unsigned int* computed = warp_computed + threadIdx.x / kLanes;
    if (threadIdx.x % kLanes == 0) *computed = 0;
    fused_pass<S, A, kLogits, kPrefetch>(s, kUpdate, static_cast<int32_t>(id), ctr,
                                         static_cast<uint32_t>(global_warp()), static_cast<uint32_t>(total_warps()),
                                         arg, rad, computed);
    finish_pass(s, kUpdate, int64_t(t) + 1, id, arg, rad, *computed);
    cg::this_grid().sync();  // the handle is fetched at each barrier, not held in registers
  }
}

}  // namespace cuda
}  // namespace pcoreset
