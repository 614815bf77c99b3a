// The fused epilogue of the start's certified candidate search
// (csrc/cpu/certify.cpp; the math is explained in pcoreset/_start.py).
#pragma once

#include <cstdint>
#include <vector>

namespace pcoreset {

struct CertifyBounds {
  double kappa = 0;       // pair bound |D - d^2| <= kappa (nx + ny)^2 + tiny
  double tiny = 0;        // absolute term (gradual underflow)
  double kernel_rel = 0;  // relative widening for the kernel's own rounding
  int64_t k = 4;          // candidates per row
};

// g: rows x cols tile, g_ij = ||y'_j||^2 - 2 x'_i . y'_j; nx2: ||x'_i||^2 in A;
// nx, ny: float64 norms of the shifted rows and centers. Writes cand (rows x
// k tile columns, the first repeated to fill) and counts (candidates per
// row); rows with more than k candidates list every candidate in over_rows /
// over_cols (their cand row holds the argmin). num_threads <= 0: OpenMP's
// default; the output is the same for any count.
template <typename A>
void certify_tile(const A* g, const A* nx2, const double* nx, const double* ny, int64_t rows,
                  int64_t cols, const CertifyBounds& b, int64_t* cand, int64_t* counts,
                  std::vector<int64_t>* over_rows, std::vector<int64_t>* over_cols, int num_threads);

}  // namespace pcoreset
