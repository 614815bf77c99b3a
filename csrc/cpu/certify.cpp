// The epilogue of the start's certified candidate search (pcoreset/_start.py),
// fused into one pass over a tile of GEMM output that is still in cache.
//
// The tile holds g[i][j] = ||y'_j||^2 - 2 x'_i . y'_j (x' and y' are rows and
// centers shifted by the pivot, in the accumulation type A). For each row:
//   D_ij = g_ij + ||x'_i||^2                (the GEMM identity, in A)
//   E_ij = kappa (nx_i + ny_j)^2 + tiny     (rigorous bound on |D_ij - d^2_ij|)
//   ub_i = (D_ij0 + E_ij0) (1 + rel) + tiny  with j0 = argmin_j D_ij
// and the candidates are every j with D_ij - E_ij <= ub_i: they contain the
// nearest center, and every center that the kernel's own rounding could
// prefer. Rows with more than k candidates are reported whole (the caller
// ranks them by exact float64 distances). Row blocks run on num_threads
// threads (<= 0: OpenMP's default); the output does not depend on it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "pcoreset/certify.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pcoreset {

namespace {

// Smallest A value >= x (x finite): comparing an A value against it with >
// never drops a value that the double test would keep.
template <typename A>
A round_up(double x) {
  A y = static_cast<A>(x);
  if (static_cast<double>(y) < x) y = std::nextafter(y, std::numeric_limits<A>::infinity());
  return y;
}

// Lanes of the two passes below: independent minima (and comparisons) that
// the compiler keeps in vector registers.
constexpr int kLanes = 8;

// min_j (g[j] + add) over the finite and infinite values (a NaN is never
// below the minimum, as with `d < best`). The minimum is exact, so the lanes'
// order does not change it (nor does the sign of a zero minimum matter: the
// caller compares with ==, and uses its magnitude).
template <typename A>
A row_min(const A* g, A add, int64_t cols) {
  A m[kLanes];
  for (int t = 0; t < kLanes; ++t) m[t] = std::numeric_limits<A>::infinity();
  int64_t j = 0;
  for (; j + kLanes <= cols; j += kLanes)
    for (int t = 0; t < kLanes; ++t) {
      const A d = g[j + t] + add;
      m[t] = d < m[t] ? d : m[t];
    }
  for (; j < cols; ++j) {
    const A d = g[j] + add;
    m[0] = d < m[0] ? d : m[0];
  }
  A best = m[0];
  for (int t = 1; t < kLanes; ++t) best = m[t] < best ? m[t] : best;
  return best;
}

template <typename A>
void certify_rows(const A* g, const A* nx2, const double* nx, const double* ny, double ny_max,
                  int64_t r0, int64_t r1, int64_t cols, const CertifyBounds& b, int64_t* cand,
                  int64_t* counts, std::vector<int64_t>* over_rows, std::vector<int64_t>* over_cols) {
  std::vector<int64_t> hits;
  for (int64_t i = r0; i < r1; ++i) {
    const A* gi = g + i * cols;
    const A add = nx2[i];
    // argmin of D_ij = g_ij + ||x'_i||^2 (lowest j among equals); adding the
    // same value to every column keeps the order up to rounding ties, so the
    // minimum is taken over the sums themselves. A row without a finite
    // value keeps j0 = 0 (its bound is infinite either way).
    const A best = row_min<A>(gi, add, cols);
    int64_t j0 = 0;
    if (best < std::numeric_limits<A>::infinity())
      while (!(gi[j0] + add == best)) ++j0;
    const double e0 = b.kappa * (nx[i] + ny[j0]) * (nx[i] + ny[j0]) + b.tiny;
    const double ub = (static_cast<double>(best) + e0) * (1.0 + b.kernel_rel) + b.tiny;
    // prefilter in A with the largest center norm (rounded up: it keeps a
    // superset), lane blocks at a time, then the pair's own bound in double
    const A pre = round_up<A>(ub + b.kappa * (nx[i] + ny_max) * (nx[i] + ny_max) + b.tiny);
    hits.clear();
    auto test = [&](int64_t j) {
      const A d = gi[j] + add;
      if (!(d <= pre)) return;
      const double e = b.kappa * (nx[i] + ny[j]) * (nx[i] + ny[j]) + b.tiny;
      if (static_cast<double>(d) - e <= ub) hits.push_back(j);
    };
    int64_t j = 0;
    for (; j + kLanes <= cols; j += kLanes) {
      int any = 0;
      for (int t = 0; t < kLanes; ++t) any |= (gi[j + t] + add <= pre) ? 1 : 0;
      if (!any) continue;
      for (int t = 0; t < kLanes; ++t) test(j + t);
    }
    for (; j < cols; ++j) test(j);
    if (hits.empty()) hits.push_back(j0);  // only a row of NaN (overflowed) sums has none
    const int64_t h = static_cast<int64_t>(hits.size());
    counts[i] = h;
    int64_t* out = cand + i * b.k;
    if (h <= b.k) {
      for (int64_t t = 0; t < b.k; ++t) out[t] = hits[t < h ? t : 0];
    } else {
      for (int64_t t = 0; t < b.k; ++t) out[t] = j0;
      for (int64_t j : hits) {
        over_rows->push_back(i);
        over_cols->push_back(j);
      }
    }
  }
}

}  // namespace

template <typename A>
void certify_tile(const A* g, const A* nx2, const double* nx, const double* ny, int64_t rows,
                  int64_t cols, const CertifyBounds& b, int64_t* cand, int64_t* counts,
                  std::vector<int64_t>* over_rows, std::vector<int64_t>* over_cols, int num_threads) {
  double ny_max = 0.0;
  for (int64_t j = 0; j < cols; ++j) ny_max = ny[j] > ny_max ? ny[j] : ny_max;
  // Row blocks are independent; each keeps its own over-lists, joined in
  // block order so the result does not depend on the thread count.
  constexpr int64_t kBlockValues = int64_t(1) << 16;
  const int64_t block = std::max<int64_t>(1, kBlockValues / std::max<int64_t>(1, cols));
  const int64_t n_blocks = (rows + block - 1) / block;
  int nt = 1;
#ifdef _OPENMP
  nt = num_threads > 0 ? num_threads : omp_get_max_threads();
  if (n_blocks < 2) nt = 1;
#else
  (void)num_threads;
#endif
  if (nt == 1) {
    certify_rows<A>(g, nx2, nx, ny, ny_max, 0, rows, cols, b, cand, counts, over_rows, over_cols);
    return;
  }
  std::vector<std::vector<int64_t>> orows(static_cast<size_t>(n_blocks)), ocols(static_cast<size_t>(n_blocks));
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (int64_t t = 0; t < n_blocks; ++t) {
    const int64_t r0 = t * block, r1 = std::min(rows, r0 + block);
    certify_rows<A>(g, nx2, nx, ny, ny_max, r0, r1, cols, b, cand, counts, &orows[t], &ocols[t]);
  }
  for (int64_t t = 0; t < n_blocks; ++t) {
    over_rows->insert(over_rows->end(), orows[t].begin(), orows[t].end());
    over_cols->insert(over_cols->end(), ocols[t].begin(), ocols[t].end());
  }
}

template void certify_tile<float>(const float*, const float*, const double*, const double*, int64_t,
                                  int64_t, const CertifyBounds&, int64_t*, int64_t*,
                                  std::vector<int64_t>*, std::vector<int64_t>*, int);
template void certify_tile<double>(const double*, const double*, const double*, const double*, int64_t,
                                   int64_t, const CertifyBounds&, int64_t*, int64_t*,
                                   std::vector<int64_t>*, std::vector<int64_t>*, int);

}  // namespace pcoreset
