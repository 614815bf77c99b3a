// The fused epilogue of the start's certified candidate search
// (csrc/cpu/certify.cpp; the bounds are explained in pcoreset/_start/bounds.py).
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

// g: rows x cols tile, g_ij = x'_i . y'_j; nx2, ny2: ||x'_i||^2, ||y'_j||^2 in A;
// nx, ny: float64 norms of the shifted rows and centers. Writes cand (rows x
// k tile columns, the first repeated to fill) and counts (candidates per
// row); rows with more than k candidates list every candidate in over_rows /
// over_cols (their cand row holds the argmin). num_threads <= 0: OpenMP's
// default; the output is the same for any count.
template <typename A>
void certify_tile(const A* g, const A* nx2, const A* ny2, const double* nx, const double* ny, int64_t rows,
                  int64_t cols, const CertifyBounds& b, int64_t* cand, int64_t* counts,
                  std::vector<int64_t>* over_rows, std::vector<int64_t>* over_cols, int num_threads);

// The projected bound of a tile (pcoreset/_start/bounds.py: Projection):
// gp (rows x cols, float32) holds pa_i . pb_j, the rows' and centers'
// shifted values projected on d orthonormal directions; row (rows x 5):
// ||pa_i||^2, lo_i, hi_i (bounds of the norm of the rest of the shifted row),
// the shifted row's norm, and thr_i (an upper bound of the row's nearest
// squared distance, widened for the kernel's rounding); col (4 x cols):
// ||pb_j||^2, lo_j, hi_j, norms. The bound's rounding is at most
// (e t + ea) t + ea0 with t = ||a_i|| + ||b_j||. kept, when given, receives
// the number of pairs whose bound did not drop them.
struct ProjBounds {
  const float* gp = nullptr;
  const double* row = nullptr;
  const double* col = nullptr;
  double e = 0, ea = 0, ea0 = 0;
  int rounds = 2;     // rounds of the nearest bounds first (see certify.cpp)
  double frac = 0.25;  // each round's share of [smallest bound, threshold]
  int64_t* kept = nullptr;
};

// certify_tile without the tile: x (rows x c) and y (cols x c) are the
// shifted rows and centers in A; a pair whose projected lower bound exceeds
// its row's thr is never computed, the others get D_ij from a direct dot
// product. Same outputs as certify_tile (on one thread).
template <typename A>
void certify_tile_proj(const A* x, const A* y, int64_t c, const A* nx2, const A* ny2, const double* nx,
                       const double* ny, int64_t rows, int64_t cols, const ProjBounds& p, const CertifyBounds& b,
                       int64_t* cand, int64_t* counts, std::vector<int64_t>* over_rows,
                       std::vector<int64_t>* over_cols);

// The values the projected search compares (see certify.cpp, ProjRows):
// v (rows x cols) and off (rows); a pair is dropped only where v_ij >
// thr_i - off_i rounded up to float. For the tests.
void proj_bound_terms(const ProjBounds& p, int64_t rows, int64_t cols, float* v, double* off);

// The pivot assignment: g (rows x p) holds x_i . r_j; pivot[i] = argmin_j
// fl(||r_j||^2 - 2 g_ij) (rn2 = ||r_j||^2 in A; the lowest j among equals)
// and s2[i] = the squared norm of fl(x_i - r_pivot[i]), summed in double and
// rounded up into A.
template <typename A>
void assign_pivots(const A* x, const A* g, const A* r, const A* rn2, int64_t rows, int64_t p, int64_t c,
                   int32_t* pivot, A* s2);

// norm[i] = ||a_i|| (squares summed in double), norm2[i] = ||a_i||^2 in A
// (any summation order: the bounds allow it).
template <typename A>
void row_norms(const A* a, int64_t rows, int64_t c, double* norm, A* norm2);

// out[j] = the float32 value of the float16 bit pattern in[j], j < n: exact
// for every half (subnormals included; inf and NaN stay inf and NaN). The
// pool check's conversion of float16 pools.
void half_to_float(const uint16_t* in, int64_t n, float* out);

// The functions above choose at run time between the builds below (as the
// kernel does: cpu_simd_level()).
#define PCORESET_CERTIFY_DECLARE                                                                        \
  template <typename A>                                                                                \
  void certify_tile(const A* g, const A* nx2, const A* ny2, const double* nx, const double* ny,        \
                    int64_t rows, int64_t cols, const CertifyBounds& b, int64_t* cand, int64_t* counts, \
                    std::vector<int64_t>* over_rows, std::vector<int64_t>* over_cols, int num_threads); \
  template <typename A>                                                                                \
  void certify_tile_proj(const A* x, const A* y, int64_t c, const A* nx2, const A* ny2,              \
                         const double* nx, const double* ny, int64_t rows, int64_t cols,             \
                         const ProjBounds& p, const CertifyBounds& b, int64_t* cand,                 \
                         int64_t* counts, std::vector<int64_t>* over_rows,                           \
                         std::vector<int64_t>* over_cols);                                           \
  template <typename A>                                                                                \
  void assign_pivots(const A* x, const A* g, const A* r, const A* rn2, int64_t rows, int64_t p,        \
                     int64_t c, int32_t* pivot, A* s2);                                                \
  template <typename A>                                                                                \
  void row_norms(const A* a, int64_t rows, int64_t c, double* norm, A* norm2);                        \
  void half_to_float(const uint16_t* in, int64_t n, float* out);                                     \
  void proj_bound_terms(const ProjBounds& p, int64_t rows, int64_t cols, float* v, double* off);
namespace baseline {
PCORESET_CERTIFY_DECLARE
}
#ifdef PCORESET_HAVE_AVX2
namespace avx2 {
PCORESET_CERTIFY_DECLARE
}
#endif
#undef PCORESET_CERTIFY_DECLARE

// The explicit instantiations, in whichever namespace holds the definitions
// (the dispatching ones and each build's).
#define PCORESET_CERTIFY_INSTANTIATE(A)                                                                \
  template void certify_tile<A>(const A*, const A*, const A*, const double*, const double*, int64_t,  \
                                int64_t, const CertifyBounds&, int64_t*, int64_t*,                     \
                                std::vector<int64_t>*, std::vector<int64_t>*, int);                    \
  template void certify_tile_proj<A>(const A*, const A*, int64_t, const A*, const A*, const double*, \
                                     const double*, int64_t, int64_t, const ProjBounds&,              \
                                     const CertifyBounds&, int64_t*, int64_t*,                        \
                                     std::vector<int64_t>*, std::vector<int64_t>*);                   \
  template void assign_pivots<A>(const A*, const A*, const A*, const A*, int64_t, int64_t, int64_t,    \
                                 int32_t*, A*);                                                         \
  template void row_norms<A>(const A*, int64_t, int64_t, double*, A*);

}  // namespace pcoreset
