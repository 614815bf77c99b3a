// The passes of the start's certified candidate search (pcoreset/_start/)
// that NumPy would spend several passes and temporaries on: the epilogue of a
// GEMM tile, fused into one pass while the tile is still in cache; the
// pivot assignment's argmin and shifted norms; row norms in two precisions.
//
// The tile holds g[i][j] = x'_i . y'_j (x' and y' are rows and centers
// shifted by the pivot, in the accumulation type A). For each row:
//   D_ij = (||y'_j||^2 - 2 g_ij) + ||x'_i||^2   (the GEMM identity, in A;
//                                               the scaling by -2 is exact)
//   E_ij = kappa (nx_i + ny_j)^2 + tiny     (rigorous bound on |D_ij - d^2_ij|)
//   ub_i = (D_ij0 + E_ij0) (1 + rel) + tiny  with j0 = argmin_j D_ij
// and the candidates are every j with D_ij - E_ij <= ub_i: they contain the
// nearest center, and every center that the kernel's own rounding could
// prefer. Rows with more than k candidates are reported whole (the caller
// ranks them by exact float64 distances). Row blocks run on num_threads
// threads (<= 0: OpenMP's default); the output does not depend on it.
//
// Built twice, like the kernel (PCS_ISA: baseline and avx2); dispatch.cpp
// picks one at run time. Minima and comparisons are exact in A whatever the
// register width, and the norms are summed alike in both builds, so the two
// find the same candidates.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "pcoreset/certify.h"
#include "pcoreset/row_math.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif
#include "team_errors.h"

// The vector types below never cross a call boundary the compiler does not
// inline (all internal), so the ABI notes about passing them do not apply.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pcoreset {
namespace PCS_ISA {

namespace {

// Smallest A value >= x (x finite): comparing an A value against it with >
// never drops a value that the double test would keep.
template <typename A>
A round_up(double x) {
  A y = static_cast<A>(x);
  if (static_cast<double>(y) < x) y = std::nextafter(y, std::numeric_limits<A>::infinity());
  return y;
}

// Largest float <= x (x finite or infinite; NaN stays NaN).
inline float round_down_f(double x) {
  float y = static_cast<float>(x);
  if (static_cast<double>(y) > x) y = std::nextafter(y, -std::numeric_limits<float>::infinity());
  return y;
}

// The passes below work on whole SIMD registers in GCC/Clang vector types (16
// bytes: what every x86-64 and ARM64 target has; 32 in the AVX2 build): the
// compiler's own vectoriser leaves minimum and argmin loops scalar, since
// their NaN semantics forbid reassociating them; lanes keep each its own
// minimum.
#ifdef __AVX2__
constexpr int kBytes = 32;
#else
constexpr int kBytes = 16;
#endif

template <typename A>
struct Lanes;
// V, M: the minimum and threshold passes' registers. N, D: the norms' (16
// bytes of A, widened to double), the same in both builds, so that the
// norms and shifted norms come out bit for bit alike (a float vector wider
// than 16 bytes would widen into 64 bytes of double, which AVX2 lacks).
template <>
struct Lanes<float> {
  typedef float V __attribute__((vector_size(kBytes)));
  typedef int32_t M __attribute__((vector_size(kBytes)));
  typedef float N __attribute__((vector_size(16)));
  typedef double D __attribute__((vector_size(32)));
};
template <>
struct Lanes<double> {
  typedef double V __attribute__((vector_size(kBytes)));
  typedef int64_t M __attribute__((vector_size(kBytes)));
  typedef double N __attribute__((vector_size(16)));
  typedef double D __attribute__((vector_size(16)));
};
template <typename A>
constexpr int lanes() {
  return kBytes / static_cast<int>(sizeof(A));
}
template <typename A>
constexpr int norm_lanes() {
  return 16 / static_cast<int>(sizeof(A));
}
// Independent registers per pass: a minimum's compare-and-blend chain has a
// latency of several cycles, so one register alone would wait on itself.
constexpr int kAcc = 4;

template <typename V, typename T>
inline V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <typename V, typename T>
inline V splat(T x) {
  V v;
  for (int t = 0; t < static_cast<int>(sizeof(V) / sizeof(T)); ++t) v[t] = x;
  return v;
}

// where m: a, else b (m's lanes are all ones or all zeros)
template <typename M, typename V>
inline V blend(M m, V a, V b) {
  return reinterpret_cast<V>((m & reinterpret_cast<M>(a)) | (~m & reinterpret_cast<M>(b)));
}

template <typename M>
inline bool any(M m) {
  const M zero = {};
  return std::memcmp(&m, &zero, sizeof m) != 0;
}

// D_ij of the tile entry g (the GEMM identity in A, in this order).
template <typename A>
inline A dist(A g, A ny2, A nx2) {
  return (ny2 + A(-2) * g) + nx2;
}

template <typename V>
inline V dist_v(V g, V ny2, V nx2, V m2) {
  return (ny2 + m2 * g) + nx2;
}

// min_j dist(j) over the finite and infinite values (a NaN is never below
// the minimum, as with `d < best`). The minimum is exact, so the lanes'
// order does not change it (nor does the sign of a zero minimum matter: the
// caller compares with ==, and uses its magnitude).
template <typename A>
A row_min(const A* g, const A* ny2, A add, int64_t cols) {
  typedef typename Lanes<A>::V V;
  typedef typename Lanes<A>::M M;
  constexpr int L = lanes<A>();
  const V m2 = splat<V>(A(-2)), addv = splat<V>(add);
  V m[kAcc];
  for (int u = 0; u < kAcc; ++u) m[u] = splat<V>(std::numeric_limits<A>::infinity());
  int64_t j = 0;
  for (; j + kAcc * L <= cols; j += kAcc * L)
    for (int u = 0; u < kAcc; ++u) {
      const V d = dist_v(load<V>(g + j + u * L), load<V>(ny2 + j + u * L), addv, m2);
      m[u] = blend<M>(d < m[u], d, m[u]);
    }
  A best = std::numeric_limits<A>::infinity();
  for (int u = 0; u < kAcc; ++u)
    for (int t = 0; t < L; ++t) best = m[u][t] < best ? m[u][t] : best;
  for (; j < cols; ++j) {
    const A d = dist(g[j], ny2[j], add);
    best = d < best ? d : best;
  }
  return best;
}

// Row i's candidates (hits, in increasing column order; j0 the argmin):
// the first k, the first repeated to fill, or, past k, j0 in cand and every
// hit in the over-lists (the caller ranks them).
inline void emit_row(const std::vector<int64_t>& hits, int64_t j0, int64_t i, int64_t k, int64_t* cand,
                     int64_t* counts, std::vector<int64_t>* over_rows, std::vector<int64_t>* over_cols) {
  const int64_t h = static_cast<int64_t>(hits.size());
  counts[i] = h;
  int64_t* out = cand + i * k;
  if (h <= k) {
    for (int64_t t = 0; t < k; ++t) out[t] = hits[t < h ? t : 0];
  } else {
    for (int64_t t = 0; t < k; ++t) out[t] = j0;
    for (int64_t c : hits) {
      over_rows->push_back(i);
      over_cols->push_back(c);
    }
  }
}

template <typename A>
void certify_rows(const A* g, const A* nx2, const A* ny2, const double* nx, const double* ny, double ny_max,
                  int64_t r0, int64_t r1, int64_t cols, const CertifyBounds& b, int64_t* cand,
                  int64_t* counts, std::vector<int64_t>* over_rows, std::vector<int64_t>* over_cols) {
  typedef typename Lanes<A>::V V;
  typedef typename Lanes<A>::M M;
  std::vector<int64_t> near, hits;
  for (int64_t i = r0; i < r1; ++i) {
    const A* gi = g + i * cols;
    const A add = nx2[i];
    auto d_at = [&](int64_t j) { return dist(gi[j], ny2[j], add); };
    auto err = [&](double ny_j) { return b.kappa * (nx[i] + ny_j) * (nx[i] + ny_j) + b.tiny; };
    // j0 = argmin_j D_ij (lowest j among equals) bounds the row's nearest
    // distance: ub = (D_ij0 + E_ij0) (1 + rel) + tiny. A first pass finds the
    // minimum; a second collects the columns below a looser threshold (the
    // largest center norm in place of ny_j0, in A rounded up: a superset),
    // among which j0 is the first at the minimum; the pair's own bound then
    // filters them in double. A row without a finite value keeps j0 = 0
    // (its bound is infinite either way).
    const A best = row_min<A>(gi, ny2, add, cols);
    const double e_max = err(ny_max);
    const double ub_max = (static_cast<double>(best) + e_max) * (1.0 + b.kernel_rel) + b.tiny;
    const A pre_max = round_up<A>(ub_max + e_max);
    near.clear();
    int64_t j = 0;
    constexpr int L = lanes<A>();
    const V m2 = splat<V>(A(-2)), addv = splat<V>(add), prev = splat<V>(pre_max);
    for (; j + kAcc * L <= cols; j += kAcc * L) {
      M le = {};
      for (int u = 0; u < kAcc; ++u)
        le |= dist_v(load<V>(gi + j + u * L), load<V>(ny2 + j + u * L), addv, m2) <= prev;
      if (!any(le)) continue;
      for (int t = 0; t < kAcc * L; ++t)
        if (d_at(j + t) <= pre_max) near.push_back(j + t);
    }
    for (; j < cols; ++j)
      if (d_at(j) <= pre_max) near.push_back(j);
    int64_t j0 = 0;
    if (best < std::numeric_limits<A>::infinity()) {
      auto at = std::find_if(near.begin(), near.end(), [&](int64_t c) { return d_at(c) == best; });
      if (at != near.end()) {
        j0 = *at;
      } else {  // a minimum above its own threshold (overflowed sums): scan
        while (!(d_at(j0) == best)) ++j0;
      }
    }
    const double ub = (static_cast<double>(best) + err(ny[j0])) * (1.0 + b.kernel_rel) + b.tiny;
    const A pre = round_up<A>(ub + e_max);
    hits.clear();
    for (int64_t c : near) {
      const A d = d_at(c);
      if (d <= pre && static_cast<double>(d) - err(ny[c]) <= ub) hits.push_back(c);
    }
    if (hits.empty()) hits.push_back(j0);  // only a row of NaN (overflowed) sums has none
    emit_row(hits, j0, i, b.k, cand, counts, over_rows, over_cols);
  }
}

// Sum of a register's lanes, as a tree (short dependency chains).
template <typename A, typename V>
inline A lane_sum(V v) {
  constexpr int L = static_cast<int>(sizeof(V) / sizeof(A));
  A s[L];
  for (int t = 0; t < L; ++t) s[t] = v[t];
  for (int w = L / 2; w >= 1; w /= 2)
    for (int t = 0; t < w; ++t) s[t] += s[t + w];
  return s[0];
}

// The dot products of the row x with four rows y0..y3 of length c, in A, in
// lanes (any summation order: the pair bound allows it): four independent
// chains, so that their latencies overlap.
template <typename A>
inline void dot4(const A* x, const A* y0, const A* y1, const A* y2, const A* y3, int64_t c, A* out) {
  typedef typename Lanes<A>::V V;
  constexpr int L = lanes<A>();
  V a0 = {}, a1 = {}, a2 = {}, a3 = {};
  int64_t k = 0;
  for (; k + L <= c; k += L) {
    const V xv = load<V>(x + k);
    a0 += xv * load<V>(y0 + k);
    a1 += xv * load<V>(y1 + k);
    a2 += xv * load<V>(y2 + k);
    a3 += xv * load<V>(y3 + k);
  }
  A s0 = lane_sum<A>(a0), s1 = lane_sum<A>(a1), s2 = lane_sum<A>(a2), s3 = lane_sum<A>(a3);
  for (; k < c; ++k) {
    s0 += x[k] * y0[k];
    s1 += x[k] * y1[k];
    s2 += x[k] * y2[k];
    s3 += x[k] * y3[k];
  }
  out[0] = s0;
  out[1] = s1;
  out[2] = s2;
  out[3] = s3;
}

// The projected bound of one tile's pairs in float32 lanes:
// v_ij = ||pb||^2 - 2 g_ij + r_ij^2 with ||pb||^2 rounded to nearest and the
// residual intervals widened outwards; the pair's lower bound lb_ij (see
// certify.h) satisfies lb_ij >= v_ij + off_i with off_i = ||pa||^2 less the
// bound's rounding at the tile's largest t (and 16 u32 t^2 for the float32
// evaluation), so a pair is dropped only where v_ij > round_up(thr_i - off_i).
struct ProjRows {
  const ProjBounds& p;
  int64_t cols;
  std::vector<float> pb2f, lof, hif, v;
  double nb_max = 0.0;
  ProjRows(const ProjBounds& pp, int64_t c)
      : p(pp), cols(c), pb2f(static_cast<size_t>(c)), lof(static_cast<size_t>(c)), hif(static_cast<size_t>(c)),
        v(static_cast<size_t>(c)) {
    const double* pb2 = p.col;
    const double* lob = p.col + cols;
    const double* hib = p.col + 2 * cols;
    const double* nb = p.col + 3 * cols;
    for (int64_t j = 0; j < cols; ++j) {
      pb2f[j] = static_cast<float>(pb2[j]);
      lof[j] = round_down_f(lob[j]);
      hif[j] = round_up<float>(hib[j]);
      nb_max = nb[j] > nb_max ? nb[j] : nb_max;
    }
  }
  // Fills v with row i's values; returns off_i.
  double row(int64_t i) {
    typedef typename Lanes<float>::V FV;
    constexpr int FL = lanes<float>();
    constexpr double u32 = 0.5 * std::numeric_limits<float>::epsilon();
    const double* ri = p.row + 5 * i;
    const double t = ri[3] + nb_max;
    const double off = ri[0] - (((p.e + 16.0 * u32) * t + p.ea) * t + p.ea0);
    const float loa = round_down_f(ri[1]), hia = round_up<float>(ri[2]);
    const float* gi = p.gp + i * cols;
    float* out = v.data();
    int64_t j = 0;
    const FV loav = splat<FV>(loa), hiav = splat<FV>(hia), zero = splat<FV>(0.0f), m2 = splat<FV>(-2.0f);
    for (; j + FL <= cols; j += FL) {
      const FV r1 = loav - load<FV>(hif.data() + j), r2 = load<FV>(lof.data() + j) - hiav;
      FV r = r1 > r2 ? r1 : r2;
      r = r > zero ? r : zero;
      const FV vv = (load<FV>(pb2f.data() + j) + m2 * load<FV>(gi + j)) + r * r;
      std::memcpy(out + j, &vv, sizeof vv);
    }
    for (; j < cols; ++j) {
      const float r1 = loa - hif[j], r2 = lof[j] - hia;
      float r = r1 > r2 ? r1 : r2;
      r = r > 0.0f ? r : 0.0f;
      out[j] = (pb2f[j] + -2.0f * gi[j]) + r * r;
    }
    return off;
  }
};

// Columns left that the projected search computes without further rounds.
constexpr int kFew = 8;

// certify_rows over the columns that the projected bound keeps (see
// certify_tile_proj): the same candidates test, with each kept pair's D_ij
// from a direct dot product instead of a GEMM tile.
template <typename A>
void certify_rows_proj(const A* x, const A* y, int64_t c, const A* nx2, const A* ny2, const double* nx,
                       const double* ny, int64_t rows, int64_t cols, const ProjBounds& p, const CertifyBounds& b,
                       int64_t* cand, int64_t* counts, std::vector<int64_t>* over_rows,
                       std::vector<int64_t>* over_cols) {
  std::vector<int64_t> kept(static_cast<size_t>(cols)), hits, dj;
  std::vector<A> dv;
  std::vector<int64_t> batch(static_cast<size_t>(cols));
  ProjRows pr(p, cols);
  int64_t n_kept = 0;
  float* lb = pr.v.data();
  for (int64_t i = 0; i < rows; ++i) {
    const double thr = p.row[5 * i + 4];
    const double off = pr.row(i);
    // the threshold in v's terms (NaN, never dropping, where a term is NaN)
    auto theta = [&](double th) { return round_up<float>(th - off); };
    // the kept columns, in increasing order (branch-free: about a third
    // are kept, at random)
    const float th = theta(thr);
    int64_t nk = 0;
    for (int64_t jj = 0; jj < cols; ++jj) {
      kept[nk] = jj;
      nk += !(lb[jj] > th);
    }
    if (nk == 0) {  // thr below every bound (it bounds a center of the tile, so never): all columns
      for (int64_t jj = 0; jj < cols; ++jj) kept[jj] = jj;
      nk = cols;
    }
    const A* xi = x + i * c;
    dj.clear();
    dv.clear();
    // Rounds, nearest bound first: the kept columns whose bound lies in the
    // lowest share p.frac of [smallest bound, thr2] get their distance, whose
    // upper bound (widened like thr) lowers thr2 and drops the columns whose
    // bound lies above it; then the rest get theirs at once. Each round
    // reads the kept columns' bounds three times.
    double thr2 = thr;
    auto compute = [&](const int64_t* cs, int64_t n) {
      for (int64_t t = 0; t < n; t += 4) {
        const A* yy[4];
        for (int u = 0; u < 4; ++u) yy[u] = y + cs[t + u < n ? t + u : t] * c;
        A dd[4];
        dot4<A>(xi, yy[0], yy[1], yy[2], yy[3], c, dd);
        for (int u = 0; u < 4 && t + u < n; ++u) {
          const int64_t cj = cs[t + u];
          const A du = dist(dd[u], ny2[cj], nx2[i]);
          dj.push_back(cj);
          dv.push_back(du);
          const double e_u = b.kappa * (nx[i] + ny[cj]) * (nx[i] + ny[cj]) + b.tiny;
          const double up = (static_cast<double>(du) + e_u) * (1.0 + 2.0 * b.kernel_rel) + 2.0 * b.tiny;
          thr2 = up < thr2 ? up : thr2;
        }
      }
    };
    for (int round = 0; round < p.rounds && nk > kFew; ++round) {
      float lo = std::numeric_limits<float>::infinity();
      for (int64_t u = 0; u < nk; ++u) lo = lb[kept[u]] < lo ? lb[kept[u]] : lo;
      const float th2 = theta(thr2);
      const float tb = lo + (th2 - lo) * static_cast<float>(p.frac);
      if (!(tb < th2)) break;  // an infinite or NaN threshold: no order helps
      int64_t nb_ = 0, w = 0;
      for (int64_t u = 0; u < nk; ++u) {
        const int64_t cj = kept[u];
        const bool in = !(lb[cj] > tb);
        batch[nb_] = cj;
        nb_ += in;
        kept[w] = cj;
        w += !in;
      }
      compute(batch.data(), nb_);
      const float th3 = theta(thr2);
      nk = 0;
      for (int64_t u = 0; u < w; ++u) {
        const int64_t cj = kept[u];
        kept[nk] = cj;
        nk += !(lb[cj] > th3);
      }
    }
    compute(kept.data(), nk);
    const int64_t nd = static_cast<int64_t>(dj.size());
    n_kept += nd;
    A best = std::numeric_limits<A>::infinity();
    for (int64_t u = 0; u < nd; ++u) best = dv[u] < best ? dv[u] : best;
    auto err = [&](double ny_j) { return b.kappa * (nx[i] + ny_j) * (nx[i] + ny_j) + b.tiny; };
    // j0: the lowest column at the minimum (the lowest computed one if no
    // value is finite; its bound is infinite either way)
    int64_t j0 = -1, jlow = dj[0];
    for (int64_t u = 0; u < nd; ++u) {
      jlow = dj[u] < jlow ? dj[u] : jlow;
      if (dv[u] == best && (j0 < 0 || dj[u] < j0)) j0 = dj[u];
    }
    if (j0 < 0) j0 = jlow;
    double ub = 0;
    for (int64_t u = 0; u < nd; ++u)
      if (dj[u] == j0) ub = (static_cast<double>(dv[u]) + err(ny[j0])) * (1.0 + b.kernel_rel) + b.tiny;
    hits.clear();
    for (int64_t u = 0; u < nd; ++u)
      if (static_cast<double>(dv[u]) - err(ny[dj[u]]) <= ub) hits.push_back(dj[u]);
    if (hits.empty()) hits.push_back(j0);
    std::sort(hits.begin(), hits.end());
    emit_row(hits, j0, i, b.k, cand, counts, over_rows, over_cols);
  }
  if (p.kept != nullptr) *p.kept += n_kept;
}

}  // namespace

template <typename A>
void certify_tile(const A* g, const A* nx2, const A* ny2, const double* nx, const double* ny, int64_t rows,
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
    certify_rows<A>(g, nx2, ny2, nx, ny, ny_max, 0, rows, cols, b, cand, counts, over_rows, over_cols);
    return;
  }
  std::vector<std::vector<int64_t>> orows(static_cast<size_t>(n_blocks)), ocols(static_cast<size_t>(n_blocks));
  TeamErrors errors;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (int64_t t = 0; t < n_blocks; ++t)
    errors.run([&] {
      const int64_t r0 = t * block, r1 = std::min(rows, r0 + block);
      certify_rows<A>(g, nx2, ny2, nx, ny, ny_max, r0, r1, cols, b, cand, counts, &orows[t], &ocols[t]);
    });
  errors.rethrow();
  for (int64_t t = 0; t < n_blocks; ++t) {
    over_rows->insert(over_rows->end(), orows[t].begin(), orows[t].end());
    over_cols->insert(over_cols->end(), ocols[t].begin(), ocols[t].end());
  }
}

template <typename A>
void certify_tile_proj(const A* x, const A* y, int64_t c, const A* nx2, const A* ny2, const double* nx,
                       const double* ny, int64_t rows, int64_t cols, const ProjBounds& p, const CertifyBounds& b,
                       int64_t* cand, int64_t* counts, std::vector<int64_t>* over_rows,
                       std::vector<int64_t>* over_cols) {
  certify_rows_proj<A>(x, y, c, nx2, ny2, nx, ny, rows, cols, p, b, cand, counts, over_rows, over_cols);
}

void proj_bound_terms(const ProjBounds& p, int64_t rows, int64_t cols, float* v, double* off) {
  ProjRows pr(p, cols);
  for (int64_t i = 0; i < rows; ++i) {
    off[i] = pr.row(i);
    std::memcpy(v + i * cols, pr.v.data(), static_cast<size_t>(cols) * sizeof(float));
  }
}

template <typename A>
void assign_pivots(const A* x, const A* g, const A* r, const A* rn2, int64_t rows, int64_t p, int64_t c,
                   int32_t* pivot, A* s2) {
  typedef typename Lanes<A>::V V;
  typedef typename Lanes<A>::M M;
  typedef typename std::remove_cv<typename std::remove_reference<decltype(M{}[0])>::type>::type I;
  constexpr int L = lanes<A>();
  typedef typename Lanes<A>::N N;
  typedef typename Lanes<A>::D D;
  M iota;
  for (int t = 0; t < L; ++t) iota[t] = t;
  const V m2 = splat<V>(A(-2));
  for (int64_t i = 0; i < rows; ++i) {
    const A* gi = g + i * p;
    // argmin_j of fl(||r_j||^2 - 2 x.r_j), the lowest j among equals (each
    // lane keeps its first minimum); a NaN never wins
    V m[kAcc];
    M at[kAcc], pos[kAcc];
    for (int u = 0; u < kAcc; ++u) {
      m[u] = splat<V>(std::numeric_limits<A>::infinity());
      at[u] = M{};
      pos[u] = iota + splat<M>(static_cast<I>(u * L));
    }
    const M step = splat<M>(static_cast<I>(kAcc * L));
    int64_t t = 0;
    for (; t + kAcc * L <= p; t += kAcc * L)
      for (int u = 0; u < kAcc; ++u) {
        const V d = load<V>(rn2 + t + u * L) + m2 * load<V>(gi + t + u * L);
        const M lt = d < m[u];
        m[u] = blend<M>(lt, d, m[u]);
        at[u] = (lt & pos[u]) | (~lt & at[u]);
        pos[u] += step;
      }
    A best = std::numeric_limits<A>::infinity();
    int64_t j = 0;
    for (int u = 0; u < kAcc; ++u)
      for (int l = 0; l < L; ++l)
        if (m[u][l] < best || (m[u][l] == best && at[u][l] < j)) {
          best = m[u][l];
          j = at[u][l];
        }
    for (; t < p; ++t) {
      const A d = rn2[t] + A(-2) * gi[t];
      if (d < best) {
        best = d;
        j = t;
      }
    }
    pivot[i] = static_cast<int32_t>(j);
    // squared norm of fl(x - r_j): the squares of float values are exact in
    // double, their sum rounds (the caller widens it), then it rounds up in A
    const A* xi = x + i * c;
    const A* rj = r + j * c;
    D acc = {};
    int64_t k = 0;
    constexpr int NL = norm_lanes<A>();
    for (; k + NL <= c; k += NL) {
      const D d = __builtin_convertvector(load<N>(xi + k) - load<N>(rj + k), D);
      acc += d * d;
    }
    double sum = 0;
    for (int l = 0; l < static_cast<int>(sizeof(D) / sizeof(double)); ++l) sum += acc[l];
    for (; k < c; ++k) {
      const double d = static_cast<double>(static_cast<A>(xi[k] - rj[k]));
      sum += d * d;
    }
    s2[i] = std::isfinite(sum) ? round_up<A>(sum) : static_cast<A>(sum);
  }
}

template <typename A>
void row_norms(const A* a, int64_t rows, int64_t c, double* norm, A* norm2) {
  typedef typename Lanes<A>::N V;
  typedef typename Lanes<A>::D D;
  constexpr int L = norm_lanes<A>();
  for (int64_t i = 0; i < rows; ++i) {
    const A* ai = a + i * c;
    D acc = {};
    V acc2 = {};
    int64_t k = 0;
    for (; k + L <= c; k += L) {
      const V v = load<V>(ai + k);
      const D d = __builtin_convertvector(v, D);
      acc += d * d;
      acc2 += v * v;
    }
    double sum = 0;
    A sum2 = 0;
    for (int l = 0; l < static_cast<int>(sizeof(D) / sizeof(double)); ++l) sum += acc[l];
    for (int l = 0; l < L; ++l) sum2 += acc2[l];
    for (; k < c; ++k) {
      const double d = ai[k];
      sum += d * d;
      sum2 += ai[k] * ai[k];
    }
    norm[i] = std::sqrt(sum);
    norm2[i] = sum2;
  }
}

void half_to_float(const uint16_t* in, int64_t n, float* out) {
  int64_t j = 0;
#if defined(__F16C__)
  // vcvtph2ps: exact for every half, inf and NaN included
  for (; j + 8 <= n; j += 8)
    _mm256_storeu_ps(out + j, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + j))));
#endif
  for (; j < n; ++j) {
    const uint16_t h = in[j];
    if ((h & 0x7C00u) == 0x7C00u) {  // inf or NaN (the kernel's conversion assumes finite values)
      out[j] = bits_to_float((static_cast<uint32_t>(h & 0x8000u) << 16) | 0x7F800000u |
                             (static_cast<uint32_t>(h & 0x03FFu) << 13));
    } else {
      out[j] = half_bits_to_float(h);
    }
  }
}

PCORESET_CERTIFY_INSTANTIATE(float)
PCORESET_CERTIFY_INSTANTIATE(double)

}  // namespace PCS_ISA
}  // namespace pcoreset
