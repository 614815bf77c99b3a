// CUDA k-center greedy: the whole GPU on one pool, no host sync per step.
//
// Device state (one workspace, carved by Layout): running minimum mind[i],
// nearest center nearest[i], taken[i] (labeled or picked), per-row softmax
// parameters for logits, center rows, per-center radius bound, center-to-
// center distances, the current center vector, and the argmax slots.
//
// One greedy step is three launches on one stream, all reading the step
// number from device memory (ctl[0] = picks recorded so far) so that the
// same launches can be captured once into a CUDA graph and replayed:
//   prep  (1 block): decode the previous pass's argmax into pick t, record it,
//         mark the row taken and expand it into the center vector (softmax
//         applied once, in the accumulation type);
//   dcc   (grid):    d^2(c_a, c_new) for every center with rows (radius > 0),
//         early exit at the bound under which none of its rows can move;
//   pass  (grid):    a warp per 32-row group: each lane applies the per-row
//         triangle test (8 bytes per row), the warp then computes the
//         surviving rows one by one (32 lanes = the shared lane order of
//         row_math.h, so the distances equal the CPU kernel's bit for bit
//         with --fmad=false), updates mind/nearest and reduces the argmax:
//         packed 64-bit key + atomicMax (float accumulation) or per-block
//         (distance, row) pairs folded by the next prep (float64).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kcenter_cuda.h"
#include "pcoreset/row_math.h"
#include "reduce.cuh"

#ifndef PCS_CUDA_ARCHS
#define PCS_CUDA_ARCHS "unknown"
#endif

namespace pcoreset {
namespace cuda {
namespace {

constexpr int kThreads = 256;                 // 8 warps per block
constexpr int kWarpsPerBlock = kThreads / kLanes;
constexpr int kMaxPassBlocks = 4096;          // bound on the per-block reduction slots
constexpr int64_t kMeanBlock = 4096;          // rows per partial sum of the mean (as on CPU)
constexpr int kUnroll = 8;                    // loads in flight per lane; also the early-exit period
constexpr int kGraphSteps = 32;               // steps per captured graph

// Early exit, as on the CPU: a partial sum of non-negative terms above the
// stop value by this margin cannot fold to less than it.
template <typename A> struct ExitSlack;
template <> struct ExitSlack<float> { static constexpr float value = 1.0f + 1e-3f; };
template <> struct ExitSlack<double> { static constexpr double value = 1.0 + 1e-9; };

template <typename A> __device__ __forceinline__ A inf_of() {
  if constexpr (std::is_same<A, float>::value) return __int_as_float(0x7f800000);
  else return __longlong_as_double(0x7ff0000000000000LL);
}

enum PassMode : int { kUpdate = 0, kProbe = 1, kScan = 2 };

// Everything the kernels read, by value.
template <typename S, typename A> struct Dev {
  const S* __restrict__ x;
  int64_t n, c;
  A inv_t;
  A* mind;
  int32_t* nearest;
  uint8_t* taken;
  SoftmaxRow<A>* sm;  // null unless from_logits
  int64_t* center_row;
  A* radius2;
  A* dcc2;
  A* cvec;
  double* mean_part;
  unsigned long long* keys;  // float: (budget + 1) packed argmax keys, slot t -> pick t
  double* bb_d;              // float64: per-block best of the last pass
  long long* bb_r;
  long long* ctl;            // ctl[0]: picks recorded so far; ctl[1]: error flag
  int64_t n_labeled, budget;
  bool prune, mean_start;
  int64_t* picks;
  double* radii2;
  unsigned long long* stats;  // [1] rows computed, [3] center distances

  __device__ __forceinline__ SoftmaxRow<A> smrow(int64_t i) const {
    return sm ? sm[i] : SoftmaxRow<A>{A(0), A(1)};
  }
  __device__ __forceinline__ const S* row(int64_t i) const { return x + i * c; }
};

template <typename A> struct VecCenter {
  const A* v;
  __device__ __forceinline__ A operator()(int64_t j) const { return v[j]; }
};
template <typename S, typename A, bool kLogits> struct RowCenter {
  const S* row;
  SoftmaxRow<A> sm;
  A inv_t;
  __device__ __forceinline__ A operator()(int64_t j) const {
    return row_value<S, A>(row, j, kLogits, sm, inv_t);
  }
};

// Squared distance between a stored row and a center, computed by a whole
// warp in the lane order of sq_dist_lanes: lane k sums j = k, k+32, ... in
// increasing j, then warp_fold. All lanes return the same value. With stop
// in [0, inf) it may return early with a value > stop (no update follows).
template <typename S, typename A, bool kLogits, typename Center>
__device__ A warp_dist(const S* __restrict__ row, SoftmaxRow<A> sm, A inv_t, const Center& ctr,
                       int64_t c, A stop, int lane) {
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

__device__ __forceinline__ int64_t global_warp() {
  return (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kLanes;
}
__device__ __forceinline__ int64_t total_warps() {
  return (static_cast<int64_t>(gridDim.x) * blockDim.x) / kLanes;
}

// ---- start -----------------------------------------------------------------

template <typename S, typename A>
__global__ void init_kernel(Dev<S, A> s) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < s.n; i += stride) {
    s.mind[i] = inf_of<A>();
    s.nearest[i] = -1;
    s.taken[i] = 0;
  }
}

template <typename S, typename A>
__global__ void label_kernel(Dev<S, A> s, const int64_t* __restrict__ labeled) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t a = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; a < s.n_labeled; a += stride) {
    const int64_t r = labeled[a];
    s.center_row[a] = r;
    s.taken[r] = 1;
    s.mind[r] = A(0);
    s.nearest[r] = static_cast<int32_t>(a);
  }
}

// Per-row softmax parameters, as the CPU kernel computes them: exact max,
// then the sum of exponentials in the lane order.
template <typename S, typename A>
__global__ void softmax_kernel(Dev<S, A> s) {
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
    if (lane == 0) s.sm[i] = SoftmaxRow<A>{mx, A(1) / total};
  }
}

// Exact nearest labeled center: every labeled row in order, early exit at
// the best so far; the lowest center index wins ties (strict <), as on CPU.
template <typename S, typename A, bool kLogits>
__global__ void seed_exact_kernel(Dev<S, A> s) {
  const int lane = threadIdx.x % kLanes;
  for (int64_t i = global_warp(); i < s.n; i += total_warps()) {
    if (s.taken[i]) continue;
    A best = s.mind[i];
    int32_t best_c = s.nearest[i];
    const SoftmaxRow<A> sm = s.smrow(i);
    for (int64_t a = 0; a < s.n_labeled; ++a) {
      const int64_t ra = s.center_row[a];
      const RowCenter<S, A, kLogits> ctr{s.row(ra), s.smrow(ra), s.inv_t};
      const A d = warp_dist<S, A, kLogits>(s.row(i), sm, s.inv_t, ctr, s.c, s.prune ? best : A(-1), lane);
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

// Nearest labeled center among k candidates (from a GEMM search), distances
// recomputed exactly; ties to the lower center index.
template <typename S, typename A, bool kLogits>
__global__ void seed_candidates_kernel(Dev<S, A> s, const int64_t* __restrict__ cand, int64_t k) {
  const int lane = threadIdx.x % kLanes;
  for (int64_t i = global_warp(); i < s.n; i += total_warps()) {
    if (s.taken[i]) continue;
    A best = s.mind[i];
    int32_t best_c = s.nearest[i];
    const SoftmaxRow<A> sm = s.smrow(i);
    for (int64_t t = 0; t < k; ++t) {
      const int64_t a = cand[i * k + t];
      if (a < 0 || a >= s.n_labeled) continue;
      const int64_t ra = s.center_row[a];
      const RowCenter<S, A, kLogits> ctr{s.row(ra), s.smrow(ra), s.inv_t};
      const A d = warp_dist<S, A, kLogits>(s.row(i), sm, s.inv_t, ctr, s.c, A(-1), lane);
      if (d < best || (d == best && a < best_c)) {
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

// Exact radius of every center after the start (max mind of its rows).
template <typename S, typename A>
__global__ void radius_kernel(Dev<S, A> s) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < s.n; i += stride) {
    const int32_t a = s.nearest[i];
    if (a >= 0 && !s.taken[i]) {
      const A m = s.mind[i];
      if (m > A(0)) atomic_max_nonneg(s.radius2 + a, m);
    }
  }
}

// Mean of the rows in float64 with the CPU kernel's order: 4096-row blocks
// summed row by row, then the blocks in order.
template <typename S, typename A, bool kLogits>
__global__ void mean_part_kernel(Dev<S, A> s, int64_t nblocks) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < nblocks * s.c; t += stride) {
    const int64_t b = t / s.c, j = t % s.c;
    const int64_t end = (b + 1) * kMeanBlock < s.n ? (b + 1) * kMeanBlock : s.n;
    double acc = 0.0;
    for (int64_t i = b * kMeanBlock; i < end; ++i)
      acc += static_cast<double>(row_value<S, A>(s.row(i), j, kLogits, s.smrow(i), s.inv_t));
    s.mean_part[t] = acc;
  }
}

template <typename S, typename A>
__global__ void mean_final_kernel(Dev<S, A> s, int64_t nblocks) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < s.c; j += stride) {
    double out = 0.0;
    for (int64_t b = 0; b < nblocks; ++b) out += s.mean_part[b * s.c + j];
    out /= static_cast<double>(s.n);
    s.cvec[j] = static_cast<A>(out);
  }
}

// ---- one greedy step -------------------------------------------------------

template <typename S, typename A, bool kLogits>
__global__ void __launch_bounds__(kThreads) prep_kernel(Dev<S, A> s, int pass_blocks) {
  __shared__ long long sh_row;
  __shared__ double sh_d;
  __shared__ double red_d[kThreads / kLanes];
  __shared__ long long red_r[kThreads / kLanes];
  const long long t = *reinterpret_cast<volatile long long*>(s.ctl);
  if (t >= s.budget) return;
  if constexpr (std::is_same<A, float>::value) {
    (void)pass_blocks;
    if (threadIdx.x == 0) {
      const unsigned long long key = s.keys[t];
      sh_row = key ? static_cast<long long>(key_row(key)) : -1;
      sh_d = static_cast<double>(key_dist2(key));
    }
  } else {
    BestD b{0.0, -1};
    for (int k = threadIdx.x; k < pass_blocks; k += blockDim.x)
      if (s.bb_r[k] >= 0) b.offer(s.bb_d[k], s.bb_r[k]);
    b = warp_best(b);
    const int w = threadIdx.x / kLanes;
    if (threadIdx.x % kLanes == 0) {
      red_d[w] = b.d;
      red_r[w] = b.row;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      BestD all{0.0, -1};
      for (int k = 0; k < kWarpsPerBlock; ++k) all.merge(BestD{red_d[k], red_r[k]});
      sh_row = all.row;
      sh_d = all.d;
    }
  }
  __syncthreads();
  const long long row = sh_row;
  if (threadIdx.x == 0) {
    s.picks[t] = row;
    s.radii2[t] = (t == 0 && s.mean_start) ? inf_of<double>() : sh_d;
  }
  if (row >= 0 && t + 1 < s.budget) {
    const int64_t id = s.n_labeled + t;
    const S* xr = s.row(row);
    const SoftmaxRow<A> sm = s.smrow(row);
    for (int64_t j = threadIdx.x; j < s.c; j += blockDim.x) s.cvec[j] = row_value<S, A>(xr, j, kLogits, sm, s.inv_t);
    if (threadIdx.x == 0) {
      s.center_row[id] = row;
      s.taken[row] = 1;
      s.mind[row] = A(0);
      s.nearest[row] = static_cast<int32_t>(id);
      s.radius2[id] = A(0);
    }
  }
  __syncthreads();  // every thread has read ctl[0] before it moves on
  if (threadIdx.x == 0) {
    if (row < 0) s.ctl[1] = 1;  // no eligible row: cannot happen for a validated budget
    s.ctl[0] = row < 0 ? s.budget : t + 1;
  }
}

template <typename S, typename A, bool kLogits>
__global__ void __launch_bounds__(kThreads) dcc_kernel(Dev<S, A> s) {
  const long long t = *reinterpret_cast<volatile long long*>(s.ctl);
  if (t >= s.budget || t == 0) return;
  const int64_t id = s.n_labeled + t - 1;  // the center prep just added
  const int lane = threadIdx.x % kLanes;
  unsigned long long computed = 0;
  for (int64_t a = global_warp(); a < id; a += total_warps()) {
    const A r2 = s.radius2[a];
    A out = inf_of<A>();
    if (r2 > A(0)) {
      const A bound = PruneSlack<A>::value * r2;
      const int64_t ra = s.center_row[a];
      const A d = warp_dist<S, A, kLogits>(s.row(ra), s.smrow(ra), s.inv_t, VecCenter<A>{s.cvec}, s.c, bound, lane);
      out = d >= bound ? inf_of<A>() : d;
      ++computed;
    }
    if (lane == 0) s.dcc2[a] = out;
  }
  if (lane == 0 && computed) atomicAdd(s.stats + 3, computed);
}

// The fused pass. kUpdate: new center = cvec, update + argmax into slot t.
// kProbe: distance to cvec (the pool mean) without touching the state,
// argmax into slot 0. kScan: argmax of mind into slot 0.
template <typename S, typename A, bool kLogits>
__global__ void __launch_bounds__(kThreads) pass_kernel(Dev<S, A> s, int mode) {
  __shared__ unsigned long long red_key[kWarpsPerBlock];
  __shared__ double red_d[kWarpsPerBlock];
  __shared__ long long red_r[kWarpsPerBlock];
  __shared__ A red_rad[kWarpsPerBlock];
  __shared__ unsigned long long red_n[kWarpsPerBlock];
  int64_t slot = 0, id = -1;
  if (mode == kUpdate) {
    const long long t = *reinterpret_cast<volatile long long*>(s.ctl);
    if (t >= s.budget || t == 0) return;
    slot = t;
    id = s.n_labeled + t - 1;
  }
  const int lane = threadIdx.x % kLanes;
  const bool use_prune = mode == kUpdate && s.prune;
  unsigned long long key = 0;
  BestD best{0.0, -1};
  A rad = A(0);
  unsigned long long computed = 0;
  const VecCenter<A> ctr{s.cvec};
  for (int64_t base = global_warp() * kLanes; base < s.n; base += total_warps() * kLanes) {
    const int64_t i = base + lane;
    const bool valid = i < s.n && !s.taken[i];
    A m = valid ? s.mind[i] : A(0);
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
    if (valid) {
      if constexpr (std::is_same<A, float>::value) {
        const unsigned long long k = pack_key(m, static_cast<uint32_t>(i));
        key = k > key ? k : key;
      } else {
        best.offer(m, i);
      }
    }
  }
  // Block reduction, then one atomic (or one slot) per block.
  const int w = threadIdx.x / kLanes;
  if constexpr (std::is_same<A, float>::value) {
    key = warp_max_u64(key);
    if (lane == 0) red_key[w] = key;
  } else {
    best = warp_best(best);
    if (lane == 0) {
      red_d[w] = best.d;
      red_r[w] = best.row;
    }
  }
  rad = warp_allmax(rad);
  if (lane == 0) {
    red_rad[w] = rad;
    red_n[w] = computed;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    A r = A(0);
    unsigned long long nc = 0;
    for (int k = 0; k < kWarpsPerBlock; ++k) {
      r = red_rad[k] > r ? red_rad[k] : r;
      nc += red_n[k];
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
    }
    if (mode == kUpdate) {
      if (r > A(0)) atomic_max_nonneg(s.radius2 + id, r);
      if (nc) atomicAdd(s.stats + 1, nc);
    }
  }
}

// ---- host side -------------------------------------------------------------

size_t accum_size(const std::string& dtype) { return dtype == "float64" ? 8 : 4; }

size_t round_up(size_t b) { return (b + 255) / 256 * 256; }

struct Layout {
  size_t mind, nearest, taken, sm, center_row, radius2, dcc2, cvec, mean_part, keys, bb_d, bb_r, ctl, total;
};

Layout make_layout(const std::string& dtype, int64_t n, int64_t c, bool from_logits, int64_t n_labeled,
                   int64_t budget) {
  const size_t a = accum_size(dtype);
  const size_t un = static_cast<size_t>(n), uc = static_cast<size_t>(c);
  const size_t centers = static_cast<size_t>(n_labeled + budget) + 1;
  Layout l{};
  size_t off = 0;
  auto take = [&](size_t bytes) {
    const size_t o = off;
    off += round_up(bytes);
    return o;
  };
  l.ctl = take(2 * sizeof(long long));
  l.mind = take(un * a);
  l.nearest = take(un * sizeof(int32_t));
  l.taken = take(un);
  l.sm = take(from_logits ? un * 2 * a : 0);
  l.center_row = take(centers * sizeof(int64_t));
  l.radius2 = take(centers * a);
  l.dcc2 = take(centers * a);
  l.cvec = take(uc * a);
  const size_t mean_blocks = n_labeled == 0 ? (un + kMeanBlock - 1) / kMeanBlock : 0;
  l.mean_part = take(mean_blocks * uc * sizeof(double));
  l.keys = take((static_cast<size_t>(budget) + 1) * sizeof(unsigned long long));
  l.bb_d = take(dtype == "float64" ? kMaxPassBlocks * sizeof(double) : 0);
  l.bb_r = take(dtype == "float64" ? kMaxPassBlocks * sizeof(long long) : 0);
  l.total = off;
  return l;
}

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("pcoreset CUDA: ") + what + " failed: " + cudaGetErrorName(err) + " (" +
                             cudaGetErrorString(err) + ")");
}

void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

// Owns the private stream, events and graph of one run.
struct Resources {
  int prev_device = -1;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, done = nullptr;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ~Resources() {
    if (stream) cudaStreamSynchronize(stream);
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    if (start) cudaEventDestroy(start);
    if (done) cudaEventDestroy(done);
    if (stream) cudaStreamDestroy(stream);
    if (prev_device >= 0) cudaSetDevice(prev_device);
  }
};

int grid_for(int64_t items_per_block_unit, int64_t work, int cap) {
  const int64_t g = (work + items_per_block_unit - 1) / items_per_block_unit;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(g, cap)));
}

template <typename S, typename A, bool kLogits>
void run_typed(const CudaRunArgs& args) {
  const KCenterParams& p = args.params;
  const Layout l = make_layout(args.dtype, p.n, p.c, p.from_logits, args.n_labeled, args.budget);
  if (args.workspace_size < l.total)
    throw std::invalid_argument("pcoreset CUDA: workspace has " + std::to_string(args.workspace_size) +
                                " bytes, the run needs " + std::to_string(l.total));
  Resources res;
  check(cudaGetDevice(&res.prev_device), "cudaGetDevice");
  check(cudaSetDevice(args.device), "cudaSetDevice");
  int sms = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, args.device), "cudaDeviceGetAttribute");
  sms = std::max(sms, 1);

  char* ws = static_cast<char*>(args.workspace);
  Dev<S, A> s{};
  s.x = static_cast<const S*>(args.x);
  s.n = p.n;
  s.c = p.c;
  s.inv_t = static_cast<A>(1.0 / p.temperature);
  s.ctl = reinterpret_cast<long long*>(ws + l.ctl);
  s.mind = reinterpret_cast<A*>(ws + l.mind);
  s.nearest = reinterpret_cast<int32_t*>(ws + l.nearest);
  s.taken = reinterpret_cast<uint8_t*>(ws + l.taken);
  s.sm = p.from_logits ? reinterpret_cast<SoftmaxRow<A>*>(ws + l.sm) : nullptr;
  s.center_row = reinterpret_cast<int64_t*>(ws + l.center_row);
  s.radius2 = reinterpret_cast<A*>(ws + l.radius2);
  s.dcc2 = reinterpret_cast<A*>(ws + l.dcc2);
  s.cvec = reinterpret_cast<A*>(ws + l.cvec);
  s.mean_part = reinterpret_cast<double*>(ws + l.mean_part);
  s.keys = reinterpret_cast<unsigned long long*>(ws + l.keys);
  s.bb_d = reinterpret_cast<double*>(ws + l.bb_d);
  s.bb_r = reinterpret_cast<long long*>(ws + l.bb_r);
  s.n_labeled = args.n_labeled;
  s.budget = args.budget;
  s.prune = p.prune;
  s.mean_start = args.n_labeled == 0;
  s.picks = args.picks;
  s.radii2 = args.radii2;
  s.stats = reinterpret_cast<unsigned long long*>(args.stats);

  // A private stream joined to the caller's at both ends: stream-ordered for
  // the caller, and capturable even when the caller uses the legacy stream.
  cudaStream_t caller = static_cast<cudaStream_t>(args.stream);
  check(cudaStreamCreateWithFlags(&res.stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  check(cudaEventCreateWithFlags(&res.start, cudaEventDisableTiming), "cudaEventCreate");
  check(cudaEventCreateWithFlags(&res.done, cudaEventDisableTiming), "cudaEventCreate");
  check(cudaEventRecord(res.start, caller), "cudaEventRecord(caller stream)");
  check(cudaStreamWaitEvent(res.stream, res.start, 0), "cudaStreamWaitEvent");
  cudaStream_t st = res.stream;

  check(cudaMemsetAsync(ws, 0, l.total, st), "cudaMemsetAsync(workspace)");
  check(cudaMemsetAsync(args.stats, 0, 4 * sizeof(int64_t), st), "cudaMemsetAsync(stats)");

  const int flat_grid = grid_for(kThreads, p.n, sms * 8);
  const int row_warp_grid = grid_for(kWarpsPerBlock, p.n, sms * 16);
  const int pass_grid = grid_for(static_cast<int64_t>(kThreads), p.n, std::min(sms * 8, kMaxPassBlocks));
  const int dcc_grid = grid_for(kWarpsPerBlock, args.n_labeled + args.budget, sms * 4);

  init_kernel<S, A><<<flat_grid, kThreads, 0, st>>>(s);
  check_launch("init_kernel");
  if (args.n_labeled > 0) {
    label_kernel<S, A><<<grid_for(kThreads, args.n_labeled, sms * 8), kThreads, 0, st>>>(s, args.labeled);
    check_launch("label_kernel");
  }
  if (p.from_logits) {
    softmax_kernel<S, A><<<row_warp_grid, kThreads, 0, st>>>(s);
    check_launch("softmax_kernel");
  }
  if (args.budget > 0) {
    if (args.n_labeled > 0) {
      if (args.candidates) {
        seed_candidates_kernel<S, A, kLogits><<<row_warp_grid, kThreads, 0, st>>>(s, args.candidates, args.k);
        check_launch("seed_candidates_kernel");
      } else {
        seed_exact_kernel<S, A, kLogits><<<row_warp_grid, kThreads, 0, st>>>(s);
        check_launch("seed_exact_kernel");
      }
      if (p.prune) {
        radius_kernel<S, A><<<flat_grid, kThreads, 0, st>>>(s);
        check_launch("radius_kernel");
      }
      pass_kernel<S, A, kLogits><<<pass_grid, kThreads, 0, st>>>(s, kScan);
      check_launch("pass_kernel(scan)");
    } else {
      const int64_t nblocks = (p.n + kMeanBlock - 1) / kMeanBlock;
      mean_part_kernel<S, A, kLogits><<<grid_for(kThreads, nblocks * p.c, sms * 8), kThreads, 0, st>>>(s, nblocks);
      check_launch("mean_part_kernel");
      mean_final_kernel<S, A><<<grid_for(kThreads, p.c, sms * 8), kThreads, 0, st>>>(s, nblocks);
      check_launch("mean_final_kernel");
      pass_kernel<S, A, kLogits><<<pass_grid, kThreads, 0, st>>>(s, kProbe);
      check_launch("pass_kernel(probe)");
    }

    // One unit = prep + dcc + pass; `budget` units record `budget` picks
    // (the last unit's dcc and pass see ctl[0] == budget and return).
    auto launch_unit = [&]() -> cudaError_t {
      prep_kernel<S, A, kLogits><<<1, kThreads, 0, st>>>(s, pass_grid);
      cudaError_t e = cudaGetLastError();
      if (e != cudaSuccess) return e;
      if (p.prune) {
        dcc_kernel<S, A, kLogits><<<dcc_grid, kThreads, 0, st>>>(s);
        e = cudaGetLastError();
        if (e != cudaSuccess) return e;
      }
      pass_kernel<S, A, kLogits><<<pass_grid, kThreads, 0, st>>>(s, kUpdate);
      return cudaGetLastError();
    };

    bool graphed = false;
    if (args.use_graphs && args.budget >= 2 * kGraphSteps) {
      // Capture kGraphSteps units once, replay until every pick is made.
      // Any failure falls back to plain launches (nothing captured has run).
      bool ok = cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
      if (ok) {
        for (int u = 0; u < kGraphSteps && ok; ++u) ok = launch_unit() == cudaSuccess;
        cudaGraph_t g = nullptr;
        const bool ended = cudaStreamEndCapture(st, &g) == cudaSuccess;
        res.graph = g;
        ok = ok && ended && g != nullptr && cudaGraphInstantiate(&res.exec, g, 0) == cudaSuccess;
      }
      if (ok) {
        const int64_t replays = (args.budget + kGraphSteps - 1) / kGraphSteps;
        for (int64_t r = 0; r < replays; ++r) check(cudaGraphLaunch(res.exec, st), "cudaGraphLaunch");
        graphed = true;
      } else {
        (void)cudaGetLastError();  // clear the capture error; run without a graph
      }
    }
    if (!graphed) {
      for (int64_t u = 0; u < args.budget; ++u) check(launch_unit(), "greedy step launch");
    }
  }

  check(cudaEventRecord(res.done, st), "cudaEventRecord");
  check(cudaStreamWaitEvent(caller, res.done, 0), "cudaStreamWaitEvent(caller stream)");
  // The one host synchronisation: surfaces any fault of the run here, with
  // its name, rather than in an unrelated later call.
  check(cudaStreamSynchronize(st), "k-center run (cudaStreamSynchronize)");
  long long host_ctl[2] = {0, 0};
  check(cudaMemcpyAsync(host_ctl, s.ctl, sizeof host_ctl, cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync(ctl)");
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  if (host_ctl[1] != 0)
    throw std::logic_error("pcoreset CUDA: the pool ran out of eligible rows inside the kernel");
}

template <typename S, typename A>
void run_logits(const CudaRunArgs& args) {
  if (args.params.from_logits) run_typed<S, A, true>(args);
  else run_typed<S, A, false>(args);
}

void check_args(const CudaRunArgs& a) {
  const KCenterParams& p = a.params;
  auto bad = [](const std::string& m) { throw std::invalid_argument("pcoreset CUDA: " + m); };
  if (a.dtype != "float16" && a.dtype != "bfloat16" && a.dtype != "float32" && a.dtype != "float64")
    bad("dtype='" + a.dtype + "' is not one of float16, bfloat16, float32, float64");
  if (p.n < 1 || p.c < 1) bad("x must be non-empty, got shape (" + std::to_string(p.n) + ", " + std::to_string(p.c) + ")");
  if (p.n >= int64_t(0xFFFFFFFE)) bad("x has too many rows: " + std::to_string(p.n));
  if (!(p.temperature > 0.0)) bad("temperature must be > 0, got " + std::to_string(p.temperature));
  if (a.budget < 0) bad("budget must be >= 0, got " + std::to_string(a.budget));
  if (a.n_labeled < 0 || a.n_labeled + a.budget > p.n)
    bad("budget=" + std::to_string(a.budget) + " with " + std::to_string(a.n_labeled) + " labeled rows exceeds n=" +
        std::to_string(p.n));
  if (a.n_labeled + a.budget >= int64_t(0x7FFFFFFF)) bad("too many centers for 32-bit center indices");
  if (!a.x || !a.workspace || !a.stats || (a.budget > 0 && (!a.picks || !a.radii2)))
    bad("a device pointer is null");
  if (a.n_labeled > 0 && !a.labeled) bad("labeled pointer is null with n_labeled > 0");
  if (a.candidates && a.k < 1) bad("candidates given with k=" + std::to_string(a.k));
}

}  // namespace

size_t workspace_bytes(const std::string& dtype, int64_t n, int64_t c, bool from_logits, int64_t n_labeled,
                       int64_t budget) {
  return make_layout(dtype, n, c, from_logits, n_labeled, budget).total;
}

void run(const CudaRunArgs& args) {
  check_args(args);
  if (args.dtype == "float32") run_logits<float, float>(args);
  else if (args.dtype == "float64") run_logits<double, double>(args);
  else if (args.dtype == "float16") run_logits<f16_t, float>(args);
  else run_logits<bf16_t, float>(args);
}

std::string compiled_archs() { return PCS_CUDA_ARCHS; }
int cuda_runtime_version() { return CUDART_VERSION; }
int nvcc_version() { return __CUDACC_VER_MAJOR__ * 1000 + __CUDACC_VER_MINOR__ * 10; }

}  // namespace cuda
}  // namespace pcoreset
