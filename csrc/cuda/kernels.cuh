// CUDA k-center kernels: the whole GPU on one pool, no host sync per step.
//
// Device state (owned by the host class in state.cuh): running minimum
// mind[i] (negative: taken, i.e. labeled, picked or excluded), nearest center
// nearest[i], per-row softmax parameters for logits, the centers' values
// (k x c, accumulation type), a radius bound per center, center-to-center
// distances of the current step, the current center vector, argmax slots,
// and a control block (Ctl).
//
// Slot t holds the argmax that becomes pick t of a run (slot 0: the first
// pick, from the pool mean or the seeded state). Step t of a run:
//   - pick t is decoded from slot t and recorded; unless it is the run's
//     last, it becomes center base + t (values stored once, softmax applied
//     once) and is marked taken;
//   - dcc: d^2(c_a, c_new) for every center with rows (radius > 0), early
//     exit at the bound under which none of its rows can move;
//   - pass: every eligible row: per-row triangle test (8 bytes per row), the
//     surviving rows' distances in the shared lane order, update of
//     mind/nearest, argmax into slot t + 1 (packed 64-bit key + atomicMax for
//     float distances; per-block pairs folded by the last block to finish for
//     float64).
//
// Two ways to run the steps:
//   - step_kernel: one persistent cooperative kernel per segment of steps,
//     the phases separated by grid barriers, the center in every block's
//     shared memory. This is the default. Of the issue's options for small
//     pools (a warp per row, prep in the last block of the pass, a
//     persistent kernel) it is the one that removes every per-step launch:
//     two grid barriers per step replace three dependent graph nodes, and
//     prep's work runs in every block at once (each block decodes the slot
//     and expands the center itself), so no block waits for another to
//     finish it.
//   - prep_kernel, dcc_kernel, pass_kernel: three kernels per step, which
//     read the step number from ctl->t so that one captured CUDA graph of 32
//     steps serves every step (or plain launches). Used when a cooperative
//     launch is not possible, for the v1 pass, and to compare.
#pragma once

#include <cooperative_groups.h>
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
constexpr int kBlocksPerSm = 4;              // v2 kernels: at most this many blocks per SM in a grid
constexpr size_t kSmemCenterMax = 32 << 10;  // v2: the center in shared memory up to this size

// Register bound of the v2 kernels (blocks of 256 threads per SM), chosen
// from ptxas -v and the SASS (see benchmarks/RESULTS.md, GPU section):
//   float, no logits: 3 blocks (80 registers). ptxas then issues all 16
//     loads of a chunk before the first use; at 4 blocks (64 registers) it
//     interleaves them with the math after 8-10, and 24 warps x 16 loads
//     keep more bytes in flight than 32 warps x ~8.
//   float with logits: 3 blocks too (8 loads per chunk, the exp per value
//     makes this path compute-bound; the step kernel spills on sm_80 at 4).
//   float64: 2 blocks (128 registers; the thread-per-row path holds 16
//     double sums, and the step kernel spills at 3 blocks).
//   float64 with logits (exp in double): no bound, as the first kernel (it
//     spills at 128 registers).
// No v2 kernel spills at these bounds.
template <typename A, bool kLogits> struct MinBlocks {
  static constexpr int value = std::is_same<A, double>::value ? (kLogits ? 1 : 2) : 3;
};

// The v1 pass as the first kernel compiled for sm_90: 32 registers (8 blocks
// per SM) for float accumulation without logits; no bound otherwise, and no
// bound on other architectures (sm_80 spills at 32 registers).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ != 900
constexpr int kV1FloatBlocks = 1;
#else
constexpr int kV1FloatBlocks = 8;
#endif
template <typename A, bool kLogits> struct MinBlocksV1 {
  static constexpr int value = (std::is_same<A, float>::value && !kLogits) ? kV1FloatBlocks : 1;
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

// ---- v2 pass and dcc -------------------------------------------------------

// Rows per warp and columns per lane of one chunk in the v2 pass and dcc:
// the loads in flight per lane are kRows * kCols (16 for float accumulation,
// 8 for float64 or logits, where the exp per value makes the pass
// compute-bound), chosen so that the kernels fit the 64 registers of
// MinBlocks without spilling.
template <typename A, bool kLogits> struct Shape {
  static constexpr bool kWide = std::is_same<A, float>::value && !kLogits;
  static constexpr int kRows = kWide ? 4 : 2;
  static constexpr int kCols = 4;
};

// Distances of the rows set in `mask` (bits of the 32-row group at `base`),
// four at a time; returns this lane's row's distance (when its bit was set).
// prune: each row may stop early at its own running minimum m.
template <typename S, typename A, bool kLogits>
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
    dist_batch<R, U, S, A, kLogits, true>(rows, sm, s.inv_t, ctr, s.c, stop, prune, out, lane);
#pragma unroll
    for (int r = 0; r < R; ++r)
      if (lane == src[r]) mine = out[r];
  }
  return mine;
}

// The fused pass over every 32-row group of this warp (v2). mode kUpdate:
// new center `ctr` with id `id`, rows updated; kProbe: distances to `ctr`
// (the pool mean) without touching the state; kScan: argmax of mind.
// The count of rows computed goes to this warp's slot in shared memory
// (*computed, lane 0), not a register held across the pass.
//
// Row indices are 32-bit here (n < 2^32 - 64, checked when the state is
// made): fewer registers held across the pass, which lets ptxas issue a
// chunk's loads before their first use.
template <typename S, typename A, bool kLogits>
__device__ __forceinline__ void pass_v2(const Dev<S, A>& s, int mode, int32_t id, const A* ctr,
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
  auto load_nearest = [&](uint32_t g) {
    const uint32_t i = g * kLanes + lane;
    return prune && g < ngroups && i < n ? ld_shared_state(s.nearest + i) : int32_t(-1);
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
      mine = warp_rows<S, A, kLogits>(s, mask, base, m, prune, ctr, lane);
    }
    if (need) {
      if (mode == kProbe) {
        m = mine;
      } else if (mine < m) {
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
__device__ __forceinline__ void dcc_v2(const Dev<S, A>& s, int64_t id, const A* ctr, int64_t warp, int64_t nwarps) {
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
          const A bound = PruneSlack<A>::value * r2;
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
        bound[r] = PruneSlack<A>::value * r2;
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

// ---- v1 pass (the first kernel's pass, kept to compare) -----------------------

template <typename S, typename A, bool kLogits>
__device__ __forceinline__ void pass_v1(const Dev<S, A>& s, int mode, int64_t id, Arg<A>& arg, A& rad,
                                        unsigned int& computed) {
  const int lane = threadIdx.x % kLanes;
  const bool use_prune = mode == kUpdate && s.prune;
  const VecCenter<A> ctr{s.cvec};
  for (int64_t base = global_warp() * kLanes; base < s.n; base += total_warps() * kLanes) {
    const int64_t i = base + lane;
    A m = i < s.n ? s.mind[i] : taken_mind<A>();
    const bool valid = is_eligible(m);
    bool need = false;
    if (valid && mode != kScan) {
      need = true;
      if (use_prune) {
        const int32_t a = s.nearest[i];
        need = !(a >= 0 && can_skip_row(s.dcc2[a], m));
      }
    }
    unsigned mask = __ballot_sync(kFullMask, need);
    computed += __popc(mask);
    A mine = A(0);
    while (mask) {
      const int src = __ffs(mask) - 1;
      mask &= mask - 1;
      const int64_t r = base + src;
      const A m_src = __shfl_sync(kFullMask, m, src);
      const A d = warp_dist<S, A, kLogits>(s.row(r), s.smrow(r), s.inv_t, ctr, s.c, use_prune ? m_src : A(-1), lane);
      if (lane == src) mine = d;
    }
    if (need) {
      if (mode == kProbe) {
        m = mine;
      } else if (mine < m) {
        m = mine;
        s.mind[i] = m;
        s.nearest[i] = static_cast<int32_t>(id);
        rad = m > rad ? m : rad;
      }
    }
    if (valid) arg.offer(m, i);
  }
}

// ---- kernels: start --------------------------------------------------------

template <typename S, typename A> __global__ void init_kernel(Dev<S, A> s) {
  for (int64_t i = global_thread(); i < s.n; i += total_threads()) {
    s.mind[i] = inf_of<A>();
    s.nearest[i] = -1;
  }
}

// Per-row softmax parameters, as the CPU kernel computes them: exact max,
// then the sum of exponentials in the lane order.
template <typename S, typename A> __global__ void softmax_kernel(Dev<S, A> s, SoftmaxRow<A>* out) {
  const int lane = threadIdx.x % kLanes;
  for (int64_t i = global_warp(); i < s.n; i += total_warps()) {
    const S* row = s.row(i);
    A mx = -inf_of<A>();
    for (int64_t j = lane; j < s.c; j += kLanes) {
      const A v = Load<S, A>::get(row + j);
      mx = v > mx ? v : mx;
    }
    mx = warp_allmax(mx);
    A acc = A(0);
    for (int64_t j = lane; j < s.c; j += kLanes) acc = acc + exp_acc((Load<S, A>::get(row + j) - mx) * s.inv_t);
    const A total = warp_fold(acc);
    if (lane == 0) out[i] = SoftmaxRow<A>{mx, A(1) / total};
  }
}

// Rows [rows[0], ..) become centers first, first + 1, ...: values stored,
// rows taken. One warp per center.
template <typename S, typename A, bool kLogits>
__global__ void add_row_centers_kernel(Dev<S, A> s, const int64_t* __restrict__ rows, int64_t count, int64_t first) {
  const int lane = threadIdx.x % kLanes;
  for (int64_t a = global_warp(); a < count; a += total_warps()) {
    const int64_t r = rows[a];
    const S* xr = s.row(r);
    const SoftmaxRow<A> sm = s.smrow(r);
    A* out = s.center(first + a);
    for (int64_t j = lane; j < s.c; j += kLanes) out[j] = row_value<S, A>(xr, j, kLogits, sm, s.inv_t);
    if (lane == 0) {
      s.mind[r] = taken_mind<A>();
      s.nearest[r] = static_cast<int32_t>(first + a);
      s.radius2[first + a] = A(0);
    }
  }
}

// External center vectors (float64, count x c) become centers first, ...
template <typename S, typename A>
__global__ void add_vec_centers_kernel(Dev<S, A> s, const double* __restrict__ vecs, int64_t count, int64_t first) {
  for (int64_t t = global_thread(); t < count * s.c; t += total_threads()) {
    s.cm[first * s.c + t] = static_cast<A>(vecs[t]);
    if (t % s.c == 0) s.radius2[first + t / s.c] = A(0);
  }
}

// Exact nearest center among [first, end) against each row's current one:
// every center in order, early exit at the best so far, strict < (the lower
// center index keeps ties), as the CPU kernel's assign_nearest.
template <typename S, typename A, bool kLogits>
__global__ void assign_exact_kernel(Dev<S, A> s, int64_t first, int64_t end) {
  const int lane = threadIdx.x % kLanes;
  for (int64_t i = global_warp(); i < s.n; i += total_warps()) {
    A best = s.mind[i];
    if (!is_eligible(best)) continue;
    int32_t best_c = s.nearest[i];
    const SoftmaxRow<A> sm = s.smrow(i);
    for (int64_t a = first; a < end; ++a) {
      const A d = warp_dist<S, A, kLogits>(s.row(i), sm, s.inv_t, VecCenter<A>{s.center(a)}, s.c,
                                           s.prune ? best : A(-1), lane);
      if (d < best) {
        best = d;
        best_c = static_cast<int32_t>(a);
      }
    }
    if (lane == 0) {
      s.mind[i] = best;
      s.nearest[i] = best_c;
    }
  }
}

// Nearest center among k candidates first + cand[i][t] (indices into the
// centers just added; -1 or out of range: none), distances recomputed
// exactly, as the CPU kernel's refine_candidates.
template <typename S, typename A, bool kLogits>
__global__ void assign_candidates_kernel(Dev<S, A> s, const int64_t* __restrict__ cand, int64_t k, int64_t first,
                                         int64_t count) {
  const int lane = threadIdx.x % kLanes;
  for (int64_t i = global_warp(); i < s.n; i += total_warps()) {
    A best = s.mind[i];
    if (!is_eligible(best)) continue;
    int64_t best_c = s.nearest[i];
    const SoftmaxRow<A> sm = s.smrow(i);
    for (int64_t t = 0; t < k; ++t) {
      const int64_t a = cand[i * k + t];
      if (a < 0 || a >= count) continue;
      const A d = warp_dist<S, A, kLogits>(s.row(i), sm, s.inv_t, VecCenter<A>{s.center(first + a)}, s.c, A(-1),
                                           lane);
      if (closer_center(d, first + a, best, best_c)) {
        best = d;
        best_c = first + a;
      }
    }
    if (lane == 0) {
      s.mind[i] = best;
      s.nearest[i] = static_cast<int32_t>(best_c);
    }
  }
}

// Exact radius of every center (radius2 zeroed before): max mind of its rows.
template <typename S, typename A> __global__ void radius_kernel(Dev<S, A> s) {
  for (int64_t i = global_thread(); i < s.n; i += total_threads()) {
    const int32_t a = s.nearest[i];
    const A m = s.mind[i];
    if (a >= 0 && m > A(0)) atomic_max_nonneg(s.radius2 + a, m);
  }
}

template <typename S, typename A>
__global__ void exclude_kernel(Dev<S, A> s, const int64_t* __restrict__ rows, int64_t count) {
  for (int64_t t = global_thread(); t < count; t += total_threads()) s.mind[rows[t]] = taken_mind<A>();
}

// Mean of the rows in float64 with the CPU kernel's order: 4096-row blocks
// summed row by row, then the blocks in order.
template <typename S, typename A, bool kLogits>
__global__ void mean_part_kernel(Dev<S, A> s, double* part, int64_t nblocks) {
  for (int64_t t = global_thread(); t < nblocks * s.c; t += total_threads()) {
    const int64_t b = t / s.c, j = t % s.c;
    const int64_t end = (b + 1) * kMeanBlock < s.n ? (b + 1) * kMeanBlock : s.n;
    double acc = 0.0;
    for (int64_t i = b * kMeanBlock; i < end; ++i)
      acc += static_cast<double>(row_value<S, A>(s.row(i), j, kLogits, s.smrow(i), s.inv_t));
    part[t] = acc;
  }
}

template <typename S, typename A>
__global__ void mean_final_kernel(Dev<S, A> s, const double* part, int64_t nblocks, double* out) {
  for (int64_t j = global_thread(); j < s.c; j += total_threads()) {
    double acc = 0.0;
    for (int64_t b = 0; b < nblocks; ++b) acc += part[b * s.c + j];
    out[j] = acc / static_cast<double>(s.n);
  }
}

// cvec = a float64 vector (the mean, a probe, an external center) in A.
template <typename S, typename A> __global__ void set_cvec_kernel(Dev<S, A> s, const double* __restrict__ vec) {
  for (int64_t j = global_thread(); j < s.c; j += total_threads()) s.cvec[j] = static_cast<A>(vec[j]);
}

// Rows as the kernel sees them, in A (count x c).
template <typename S, typename A, bool kLogits>
__global__ void rows_values_kernel(Dev<S, A> s, const int64_t* __restrict__ rows, int64_t count, A* out) {
  for (int64_t t = global_thread(); t < count * s.c; t += total_threads()) {
    const int64_t a = t / s.c, j = t % s.c, r = rows[a];
    out[t] = row_value<S, A>(s.row(r), j, kLogits, s.smrow(r), s.inv_t);
  }
}

template <typename S, typename A> __global__ void min_dist_kernel(Dev<S, A> s, double* out) {
  for (int64_t i = global_thread(); i < s.n; i += total_threads()) {
    const A m = s.mind[i];
    out[i] = m > A(0) ? static_cast<double>(m) : 0.0;
  }
}

// The state as float64 / int64 arrays (export_state) and back (load_state),
// as the CPU state writes and reads them: taken rows have mind -1.
template <typename S, typename A> __global__ void export_kernel(Dev<S, A> s, double* mind, long long* nearest) {
  for (int64_t i = global_thread(); i < s.n; i += total_threads()) {
    const A m = s.mind[i];
    mind[i] = is_eligible(m) ? static_cast<double>(m) : -1.0;
    nearest[i] = s.nearest[i];
  }
}

template <typename S, typename A>
__global__ void import_kernel(Dev<S, A> s, const double* __restrict__ mind, const long long* __restrict__ nearest) {
  for (int64_t i = global_thread(); i < s.n; i += total_threads()) {
    s.mind[i] = mind[i] < 0.0 ? taken_mind<A>() : static_cast<A>(mind[i]);
    s.nearest[i] = static_cast<int32_t>(nearest[i]);
  }
}

template <typename S, typename A> __global__ void centers_out_kernel(Dev<S, A> s, int64_t count, double* out) {
  for (int64_t t = global_thread(); t < count * s.c; t += total_threads()) out[t] = static_cast<double>(s.cm[t]);
}

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
    if (t >= budget) return;
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
      if (row < 0) s.ctl->error = 1;  // no eligible row: cannot happen for a valid budget
      s.ctl->t = row < 0 ? ld_volatile(&s.ctl->budget) : t + 1;
    }
  }
}

// cvec = center `id` (push_center).
template <typename S, typename A> __global__ void center_to_cvec_kernel(Dev<S, A> s, long long id) {
  for (int64_t j = global_thread(); j < s.c; j += total_threads()) s.cvec[j] = s.cm[id * s.c + j];
}

// In a run (fixed_id < 0): the step number from ctl; nothing to do before
// the first push or after the last pick.
template <typename S, typename A>
__device__ __forceinline__ bool step_id(const Dev<S, A>& s, long long fixed_id, long long& id, long long& slot) {
  if (fixed_id >= 0) {
    id = fixed_id;
    slot = 0;
    return true;
  }
  const long long t = ld_volatile(&s.ctl->t);
  if (t >= ld_volatile(&s.ctl->budget) || t == 0) return false;
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
    dcc_v2(s, id, static_cast<const A*>(ctr), global_warp(), total_warps());
  } else {
    dcc_v2(s, id, static_cast<const A*>(s.cvec), global_warp(), total_warps());
  }
}

// The fused pass as its own kernel. mode kUpdate with fixed_slot < 0: the
// step of a run (slot and center id from ctl); otherwise slot fixed_slot and
// center fixed_id.
template <typename S, typename A, bool kLogits, bool kV2>
__global__ void __launch_bounds__(kThreads, (kV2 ? MinBlocks<A, kLogits>::value : MinBlocksV1<A, kLogits>::value))
    pass_kernel(Dev<S, A> s, int mode, long long fixed_slot, long long fixed_id) {
  PCS_DYNAMIC_SMEM(smem_raw);
  long long id = fixed_id, slot = fixed_slot;
  if (mode == kUpdate && fixed_slot < 0) {
    if (!step_id(s, -1, id, slot)) return;
  }
  Arg<A> arg;
  A rad = A(0);
  unsigned int computed = 0;
  if constexpr (kV2) {
    __shared__ unsigned int warp_computed[kWarpsPerBlock];
    unsigned int* mine = warp_computed + threadIdx.x / kLanes;
    if (threadIdx.x % kLanes == 0) *mine = 0;
    A* ctr = reinterpret_cast<A*>(smem_raw);
    if (mode != kScan) stage_center(s, ctr);
    pass_v2<S, A, kLogits>(s, mode, static_cast<int32_t>(id), static_cast<const A*>(ctr),
                           static_cast<uint32_t>(global_warp()), static_cast<uint32_t>(total_warps()), arg, rad, mine);
    computed = *mine;  // lane 0's count (the only one finish_pass reads)
  } else {
    pass_v1<S, A, kLogits>(s, mode, id, arg, rad, computed);
  }
  finish_pass(s, mode, slot, id, arg, rad, computed);
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
template <typename S, typename A, bool kLogits>
__global__ void __launch_bounds__(kThreads, (MinBlocks<A, kLogits>::value))
    step_kernel(Dev<S, A> s, long long t0, long long t1) {
  namespace cg = cooperative_groups;
  PCS_DYNAMIC_SMEM(smem_raw);
  A* ctr = reinterpret_cast<A*>(smem_raw);
  __shared__ long long sh_row, sh_budget, sh_base, sh_mean_start;
  __shared__ double sh_d;
  __shared__ unsigned int warp_computed[kWarpsPerBlock];
  if (threadIdx.x == 0) {  // loop invariants in shared memory: registers go to the pass
    sh_budget = ld_volatile(&s.ctl->budget);
    sh_base = ld_volatile(&s.ctl->base);
    sh_mean_start = ld_volatile(&s.ctl->mean_start);
  }
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
    if (row < 0) {  // no eligible row: cannot happen for a valid budget
      if (blockIdx.x == 0 && threadIdx.x == 0) {
        s.ctl->error = 1;
        s.ctl->t = budget;
      }
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
      dcc_v2(s, id, ctr, global_warp(), total_warps());
      cg::this_grid().sync();  // the handle is fetched at each barrier, not held in registers
    }
    Arg<A> arg;
    A rad = A(0);
    unsigned int* computed = warp_computed + threadIdx.x / kLanes;
    if (threadIdx.x % kLanes == 0) *computed = 0;
    pass_v2<S, A, kLogits>(s, kUpdate, static_cast<int32_t>(id), ctr, static_cast<uint32_t>(global_warp()),
                           static_cast<uint32_t>(total_warps()), arg, rad, computed);
    finish_pass(s, kUpdate, int64_t(t) + 1, id, arg, rad, *computed);
    cg::this_grid().sync();  // the handle is fetched at each barrier, not held in registers
  }
}

}  // namespace cuda
}  // namespace pcoreset
