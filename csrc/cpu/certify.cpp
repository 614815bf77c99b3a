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
// ranks them by exact float64 distances).
#include <cstdint>
#include <limits>
#include <vector>

#include "pcoreset/certify.h"

namespace pcoreset {

template <typename A>
void certify_tile(const A* g, const A* nx2, const double* nx, const double* ny, int64_t rows,
                  int64_t cols, const CertifyBounds& b, int64_t* cand, int64_t* counts,
                  std::vector<int64_t>* over_rows, std::vector<int64_t>* over_cols) {
  double ny_max = 0.0;
  for (int64_t j = 0; j < cols; ++j) ny_max = ny[j] > ny_max ? ny[j] : ny_max;
  std::vector<int64_t> hits;
  for (int64_t i = 0; i < rows; ++i) {
    const A* gi = g + i * cols;
    const A add = nx2[i];
    A best = std::numeric_limits<A>::infinity();
    int64_t j0 = 0;
    for (int64_t j = 0; j < cols; ++j) {
      const A d = gi[j] + add;
      if (d < best) {
        best = d;
        j0 = j;
      }
    }
    const double e0 = b.kappa * (nx[i] + ny[j0]) * (nx[i] + ny[j0]) + b.tiny;
    const double ub = (static_cast<double>(best) + e0) * (1.0 + b.kernel_rel) + b.tiny;
    // prefilter with the largest center norm, then the pair's own bound
    const double pre = ub + b.kappa * (nx[i] + ny_max) * (nx[i] + ny_max) + b.tiny;
    hits.clear();
    for (int64_t j = 0; j < cols; ++j) {
      const double d = static_cast<double>(gi[j] + add);
      if (d > pre) continue;
      const double e = b.kappa * (nx[i] + ny[j]) * (nx[i] + ny[j]) + b.tiny;
      if (d - e <= ub) hits.push_back(j);
    }
    const int64_t h = static_cast<int64_t>(hits.size());  // >= 1: j0 passes its own test
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

template void certify_tile<float>(const float*, const float*, const double*, const double*, int64_t,
                                  int64_t, const CertifyBounds&, int64_t*, int64_t*,
                                  std::vector<int64_t>*, std::vector<int64_t>*);
template void certify_tile<double>(const double*, const double*, const double*, const double*, int64_t,
                                   int64_t, const CertifyBounds&, int64_t*, int64_t*,
                                   std::vector<int64_t>*, std::vector<int64_t>*);

}  // namespace pcoreset
