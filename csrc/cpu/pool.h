// The pool and its running nearest-center state, shared by the passes over
// every row (dense_pass.h) and the cell index (cells.h): the borrowed rows,
// each row's running minimum and nearest center, the center vectors and
// their radii, the thread policy and the counters. Compiled per instruction
// set (included by kcenter_cpu.cpp only).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <sys/mman.h>
#include <unistd.h>

#include "distance.h"
#include "thread_policy.h"

namespace pcoreset {
namespace PCS_ISA {
namespace {

inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

template <typename S>
struct Pool {
  using A = typename AccumOf<S>::type;
  static constexpr A kInf = std::numeric_limits<A>::infinity();
  // mind of a labeled, picked or excluded row: negative, so a pass needs no
  // separate flag (and the pruning test, dcc2 >= 4 * mind, always skips it).
  static constexpr A kTaken = A(-1);

  Pool(const S* x_in, const KCenterParams& p_in)
      : x(x_in), p(p_in), policy(p_in.num_threads, p_in.n * p_in.c), threads(policy.max()),
        inv_t(static_cast<A>(1.0 / p_in.temperature)), mind(p_in.n, kInf), nearest(p_in.n, -1),
        tile(tile_rows(p_in)) {
    if (p.from_logits) init_softmax();
    else sm.assign(1, SoftmaxRow<A>{A(0), A(1)});
  }

  const S* x;
  KCenterParams p;
  mutable ThreadPolicy policy;
  int threads;  // the most a region may get: per-thread scratch is sized by it
  A inv_t;
  std::vector<SoftmaxRow<A>> sm;
  std::vector<A> mind;
  // Nearest center of each row (an index into centers); int32 keeps the
  // per-row metadata the pass reads for a pruned row at 8 bytes.
  std::vector<int32_t> nearest;
  int64_t tile;
  std::vector<A> centers;
  // Per center: an upper bound of its rows' running minimum (the dense
  // pass's pruning); while the cells exist, exactly the largest running
  // minimum of its cell (-1 when the cell has no eligible row).
  std::vector<A> radius2;
  KCenterStats stats;
  int64_t taken = 0;  // rows labeled, picked or excluded (counters only)

  // Threads for the next parallel region (adaptive, see ThreadPolicy).
  int team() const { return policy.now(); }

  int64_t num_centers() const { return static_cast<int64_t>(centers.size() / p.c); }
  const A* center(int64_t a) const { return centers.data() + a * p.c; }
  SoftmaxRow<A> softmax_of(int64_t i) const { return p.from_logits ? sm[i] : sm[0]; }

  A dist_row(int64_t i, const A* ctr, A stop) const {
    const S* row = x + i * p.c;
    if (p.from_logits) return sq_dist_row<S, A, true>(row, ctr, p.c, sm[i], inv_t, stop);
    return sq_dist_row<S, A, false>(row, ctr, p.c, sm[0], inv_t, stop);
  }

  void row_values_into(int64_t i, A* out) const {
    const S* row = x + i * p.c;
    if (!p.from_logits) return load_row<S, A>(row, p.c, out);
    const SoftmaxRow<A> s = softmax_of(i);
    for (int64_t j = 0; j < p.c; ++j) out[j] = row_value<S, A>(row, j, p.from_logits, s, inv_t);
  }

  void append_center(const double* vec) {
    check_center_count();
    for (int64_t j = 0; j < p.c; ++j) centers.push_back(static_cast<A>(vec[j]));
    radius2.push_back(A(0));
  }

  int64_t append_row_center(int64_t i) {
    check_center_count();
    const S* row = x + i * p.c;
    const SoftmaxRow<A> s = softmax_of(i);
    for (int64_t j = 0; j < p.c; ++j) centers.push_back(row_value<S, A>(row, j, p.from_logits, s, inv_t));
    radius2.push_back(A(0));
    return num_centers() - 1;
  }

  // Rows per tile: the whole pool in one piece unless pages are released,
  // then about kTileBytes of rows (big enough that the barrier per tile is
  // noise, small enough to bound what is resident).
  static int64_t tile_rows(const KCenterParams& q) {
    constexpr int64_t kTileBytes = int64_t(32) << 20;
    if (!q.release_pages) return std::max<int64_t>(1, q.n);
    const int64_t rows = kTileBytes / std::max<int64_t>(1, q.c * int64_t(sizeof(S)));
    if (rows >= 4096) return rows - rows % 4096;  // whole mean_vector blocks
    return std::max<int64_t>(1, rows);  // very long rows: mean_vector then tiles by one block
  }

  // Hand the pages of rows [lo, hi) back to the kernel (file-backed pools
  // only: the Python layer sets release_pages just for shared file mappings,
  // where MADV_DONTNEED drops the mapping but keeps the data in the file).
  void release_rows(int64_t lo, int64_t hi) const {
    if (!p.release_pages || hi <= lo) return;
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    uintptr_t a = reinterpret_cast<uintptr_t>(x + lo * p.c);
    uintptr_t b = reinterpret_cast<uintptr_t>(x + hi * p.c);
    a &= ~(page - 1);
    b = (b + page - 1) & ~(page - 1);
    (void)madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED);
  }

 private:
  void check_center_count() const {
    if (num_centers() >= std::numeric_limits<int32_t>::max())
      throw std::length_error("pcoreset: more than 2^31 - 1 centers");
  }

  void init_softmax() {
    const int64_t n = p.n, c = p.c;
    sm.resize(n);
#pragma omp parallel num_threads(team())
    for (int64_t t0 = 0; t0 < n; t0 += tile) {
      const int64_t t1 = std::min(n, t0 + tile);
#pragma omp for schedule(static)
      for (int64_t i = t0; i < t1; ++i) {
        const S* row = x + i * c;
        A mx = -kInf;
        for (int64_t j = 0; j < c; ++j) mx = std::max(mx, Load<S, A>::get(row + j));
        // Sum of exponentials in the lane order (the CUDA kernel does the same).
        A lanes[kLanes];
        for (int k = 0; k < kLanes; ++k) lanes[k] = A(0);
        for (int64_t j = 0; j < c; ++j) lanes[j % kLanes] += exp_acc((Load<S, A>::get(row + j) - mx) * inv_t);
        sm[i] = SoftmaxRow<A>{mx, A(1) / fold_lanes(lanes)};
      }
#pragma omp single
      release_rows(t0, t1);
    }
  }
};

}  // namespace
}  // namespace PCS_ISA
}  // namespace pcoreset
