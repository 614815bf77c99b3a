// Kernels outside the greedy steps: the start (labeled rows and center
// vectors become centers, every row gets its exact nearest one), softmax
// constants, the pool mean, exclusions, and the state as arrays
// (export/load).
#pragma once

#include <cstdint>

#include "device_state.cuh"

namespace pcoreset {
namespace cuda {

// ---- the start -------------------------------------------------------------------

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
// center index keeps ties; a row with no center takes the first, even at
// +inf), as the CPU kernel's assign_nearest.
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
      if (d < best || best_c < 0) {  // no center yet: this one, even at +inf
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

// A loaded -0.0 becomes +0.0: it is an eligible row at distance 0 (as the
// CPU state compares it), and its sign bit would rank it above every other
// row in the packed argmax key.
template <typename S, typename A>
__global__ void import_kernel(Dev<S, A> s, const double* __restrict__ mind, const long long* __restrict__ nearest) {
  for (int64_t i = global_thread(); i < s.n; i += total_threads()) {
    const double m = mind[i];
    s.mind[i] = m < 0.0 ? taken_mind<A>() : m == 0.0 ? A(0) : static_cast<A>(m);
    s.nearest[i] = static_cast<int32_t>(nearest[i]);
  }
}

template <typename S, typename A> __global__ void centers_out_kernel(Dev<S, A> s, int64_t count, double* out) {
  for (int64_t t = global_thread(); t < count * s.c; t += total_threads()) out[t] = static_cast<double>(s.cm[t]);
}

}  // namespace cuda
}  // namespace pcoreset
