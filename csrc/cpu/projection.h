// The projection lower bound: a row's distance to a new center, bounded from
// below without reading the row.
//
// With P (d x C) of orthonormal rows, ||P(x - c)|| <= ||x - c||. The rows'
// projections y_i = P x_i (d floats each, d = 8 to 32: 64 bytes at d = 16)
// with 3 floats of error bound and residual norm, are computed once, in one
// pass over the pool, and kept in RAM; a step
// projects its new center once, and a row whose projected distance proves
// that the kernel's own distance would not fall below the row's running
// minimum is skipped without reading its C values. That is what a
// file-backed pool needs: a row skipped is a row not paged in.
//
// P comes from the caller (the Python layer: the top principal directions
// of a sample of rows, in float64); any P works, a good one only skips more.
// The test is rigorous, so a skipped row provably keeps its running minimum
// and nearest center under the kernel's arithmetic (its exact tie rule: a row
// moves only when strictly closer). With x, c the values the kernel uses (in
// the accumulation type A), D = ||x - c||^2 exactly, and m the running minimum:
//  - P is used as stored in A (pt_); e bounds ||P P^T - I|| (Frobenius, in
//    float64, plus its own rounding), so ||P v|| <= sqrt(1 + e) ||v||;
//  - y_i is computed in A (sequential sums over C: error <= gamma_C
//    sum_j |P_kj x_j| <= gamma_C sqrt(1 + e) ||x||, plus underflow), then
//    rounded to float (u32 ||y||, plus subnormal spacing): eps_[i] bounds
//    ||stored y_i - P x||; the center's projection is computed in double
//    (its bound ec_);
//  - L = ||stored y_i - y_c|| (double, rounded down) gives
//    sqrt(D) >= (L - eps_i - ec) / sqrt(1 + e) =: b;
//  - the kernel's distance (32 lane sums of ceil(C/32) terms, each term a
//    rounded difference squared, then a 5-level fold) is >= D (1 - gamma)
//    - (2C + 64) eta_A for its unit roundoff u and smallest subnormal eta;
//  - the part of x - c outside the span of P adds to it: with Pi the
//    orthogonal projector onto that span, D = ||Pi(x - c)||^2 +
//    ||(I - Pi)(x - c)||^2 and ||(I - Pi)(x - c)|| >= |rho_x - rho_c| for
//    the residual norms rho = ||(I - Pi) x|| = sqrt(||x||^2 - ||Pi x||^2),
//    kept per row (and center) as an interval [rho_lo, rho_hi] that holds
//    them whatever the roundings above (||Pi x||^2 lies within
//    ||P x||^2 / (1 +- e)); so D >= max(b, 0)^2 + max(gap, 0)^2 with gap
//    the distance between the two intervals;
//  - so the row is skipped when that bound times (1 - gamma), less the
//    underflow slack, is >= m.
// Rows or centers whose projection is not finite (huge values) get an
// infinite error bound and the residual interval [0, inf]: never skipped.
// Compiled per instruction set (included by kcenter_cpu.cpp only).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "pool.h"
#include "team_errors.h"

namespace pcoreset {
namespace PCS_ISA {
namespace {

template <typename S>
class Projection {
  using A = typename AccumOf<S>::type;
  using P = Pool<S>;

 public:
  static constexpr int64_t kMaxDims = 64;

  explicit Projection(P& pool) : pool_(pool) {}

  bool has_basis() const { return d_ > 0; }
  bool rows_ready() const { return rows_ready_; }
  int64_t dims() const { return d_; }
  int64_t bytes_per_row() const { return stride_ * 4; }

  // P, d x C row-major in double. Its rows need not be exactly orthonormal
  // (the bound accounts for the deviation) but must be close (e < 0.5).
  void set_basis(const double* p, int64_t d) {
    const int64_t c = pool_.p.c;
    if (d < 1 || d > kMaxDims) throw std::invalid_argument("pcoreset: projection rows must be 1 to 64");
    std::vector<double> pf(static_cast<size_t>(d * c));
    pt_.assign(static_cast<size_t>(c * d), A(0));
    for (int64_t k = 0; k < d; ++k)
      for (int64_t j = 0; j < c; ++j) {
        const double v = p[k * c + j];
        if (!std::isfinite(v)) throw std::invalid_argument("pcoreset: projection has a non-finite value");
        const A a = static_cast<A>(v);
        pt_[j * d + k] = a;
        pf[k * c + j] = static_cast<double>(a);  // the basis as used
      }
    // e >= ||P P^T - I||_F (the computed Frobenius norm plus the rounding of
    // each dot product, C u64 times its magnitude, at most 2 here)
    double fro2 = 0.0;
    for (int64_t a = 0; a < d; ++a)
      for (int64_t b = 0; b < d; ++b) {
        double g = 0.0;
        for (int64_t j = 0; j < c; ++j) g += pf[a * c + j] * pf[b * c + j];
        const double dev = std::fabs(g - (a == b ? 1.0 : 0.0)) + 4.0 * static_cast<double>(c + 2) * 0x1p-53;
        fro2 += dev * dev;
      }
    const double e = std::sqrt(fro2) * (1.0 + 1e-12);
    if (!(e < 0.5)) throw std::invalid_argument("pcoreset: projection rows are not orthonormal");
    grow_ = std::sqrt(1.0 + e) * (1.0 + 1e-15);
    e_ = e;
    d_ = d;
    dp_ = (d + 7) / 8 * 8;
    stride_ = dp_ + 3;
    const double u = std::numeric_limits<A>::epsilon() / 2;
    const double eta = static_cast<double>(std::numeric_limits<A>::denorm_min());
    const double cc = static_cast<double>(c);
    // the kernel's distance: 3 roundings per term, ceil(C / 32) sums per
    // lane, a 5-level fold (short rows: fewer)
    const double depth = 3.0 + std::ceil(cc / kLanes) + 6.0;
    gamma_ = 1.01 * depth * u / (1.0 - depth * u);
    abs_ = 2.0 * (2.0 * cc + 64.0) * eta;
    gamma_proj_ = 1.01 * (cc + 2.0) * u / (1.0 - (cc + 2.0) * u);
    eta_ = eta;
    rows_ready_ = false;
    sample_spr_ = -1.0;
    forget_centers();
  }

  // Multiply-adds of compute_basis(d) (its power iterations).
  double basis_work(int64_t d) const {
    d = std::max<int64_t>(1, std::min({d, pool_.p.c, kMaxDims}));
    const double m = static_cast<double>(std::min<int64_t>(pool_.p.n, kSampleRows));
    return 2.0 * kPowerIterations * m * static_cast<double>(pool_.p.c) * static_cast<double>(d);
  }

  // A basis of d orthonormal rows spanning about the top principal
  // directions of the pool (only the span matters to the bound): subspace
  // iteration in double on a sample of rows (evenly spaced, as the kernel
  // sees them, centered), each round followed by Gram-Schmidt twice. Any
  // orthonormal basis keeps the bound exact; a better one rules out more.
  void compute_basis(int64_t d) {
    const P& q = pool_;
    const int64_t n = q.p.n, c = q.p.c;
    pool_.stats.proj_bases += 1;
    d = std::max<int64_t>(1, std::min({d, c, kMaxDims}));
    const int64_t m = std::min<int64_t>(n, kSampleRows);
    std::vector<double> v(static_cast<size_t>(m * c)), mean(static_cast<size_t>(c), 0.0);
    std::vector<A> row(static_cast<size_t>(c));
    for (int64_t r = 0; r < m; ++r) {
      q.row_values_into(r * n / m, row.data());
      // file-backed pools: a fault reads ahead around the row (megabytes),
      // handed back at once so resident memory stays small
      q.release_rows(std::max<int64_t>(0, r - 1) * n / m, std::min(n, (r + 2) * n / m));
      for (int64_t j = 0; j < c; ++j) {
        v[r * c + j] = static_cast<double>(row[j]);
        mean[j] += v[r * c + j];
      }
    }
    for (int64_t j = 0; j < c; ++j) mean[j] /= static_cast<double>(m);
    for (int64_t r = 0; r < m; ++r)
      for (int64_t j = 0; j < c; ++j) v[r * c + j] -= mean[j];
    // basis rows b (d x c), started from a fixed pseudo-random matrix
    std::vector<double> b(static_cast<size_t>(d * c)), z(static_cast<size_t>(m * d));
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    for (double& x : b) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      x = static_cast<double>(seed >> 11) * 0x1p-53 - 0.5;
    }
    orthonormalize(b.data(), d, c);
    std::vector<double> bt(static_cast<size_t>(c * d));
    for (int it = 0; it < kPowerIterations; ++it) {
      // z = V b^T, each z_rk summed over j in order as a dot product would,
      // through b transposed so that the inner loop runs over k (vectorised)
      for (int64_t k = 0; k < d; ++k)
        for (int64_t j = 0; j < c; ++j) bt[j * d + k] = b[k * c + j];
      for (int64_t r = 0; r < m; ++r) {
        double* zr = z.data() + r * d;
        std::fill(zr, zr + d, 0.0);
        for (int64_t j = 0; j < c; ++j) {
          const double vrj = v[r * c + j];
          const double* btj = bt.data() + j * d;
          for (int64_t k = 0; k < d; ++k) zr[k] += vrj * btj[k];
        }
      }
      std::fill(b.begin(), b.end(), 0.0);  // b = z^T V
      for (int64_t r = 0; r < m; ++r)
        for (int64_t k = 0; k < d; ++k) {
          const double zk = z[r * d + k];
          for (int64_t j = 0; j < c; ++j) b[k * c + j] += zk * v[r * c + j];
        }
      orthonormalize(b.data(), d, c);
    }
    set_basis(b.data(), d);
  }

  // Drop the centers' projections (centers replaced: load_state).
  void forget_centers() {
    ycf_.clear();
    ec_.clear();
    rc_.clear();
  }

  // Every row's projection and error bound: one pass over the pool (in row
  // tiles whose pages are handed back for file-backed pools).
  void project_rows() {
    P& q = pool_;
    const int64_t n = q.p.n, c = q.p.c;
    y_.assign(static_cast<size_t>(n * stride_), 0.0f);
    const int64_t nt = std::max(1, q.team());
    TeamErrors errors;
#pragma omp parallel num_threads(nt)
    {
      std::vector<A> x;
      errors.run([&] { x.resize(static_cast<size_t>(c)); });
      for (int64_t t0 = 0; t0 < n; t0 += q.tile) {
        const int64_t t1 = std::min(n, t0 + q.tile);
#pragma omp for schedule(static)
        for (int64_t i = t0; i < t1; ++i)
          errors.run([&] {
            q.row_values_into(i, x.data());
            project_one(x.data(), y_.data() + i * stride_);
          });
#pragma omp single
        q.release_rows(t0, t1);
      }
    }
    errors.rethrow();
    q.stats.proj_builds += 1;
    rows_ready_ = true;
  }

  // The projections of centers [0, k) (the new ones computed now, in double).
  void ensure_centers(int64_t k) {
    for (int64_t a = static_cast<int64_t>(ec_.size()); a < k; ++a) {
      double err, lo, hi;
      const size_t at = ycf_.size();
      ycf_.resize(at + static_cast<size_t>(stride_), 0.0f);
      project_center(pool_.center(a), ycf_.data() + at, &err, &lo, &hi);
      ec_.push_back(err);
      rc_.push_back(lo);
      rc_.push_back(hi);
    }
  }

  // One center vector v: its projection in float (yf, stride_ values, zero
  // padded), the error bound of yf against P v (the sums in double and the
  // rounding to float) and its residual interval. Not finite: err = inf,
  // [lo, hi] = [0, inf].
  void project_center(const A* v, float* yf, double* err_out, double* lo, double* hi) const {
    const int64_t c = pool_.p.c, d = d_;
    const double u = 0x1p-53, eta = std::numeric_limits<double>::denorm_min();
    const double g = 1.01 * (static_cast<double>(c) + 2.0) * u;
    constexpr double kInfD = std::numeric_limits<double>::infinity();
    double norm2 = 0.0;
    for (int64_t j = 0; j < c; ++j) norm2 += static_cast<double>(v[j]) * static_cast<double>(v[j]);
    bool finite = std::isfinite(norm2);
    double ynorm2 = 0.0;
    for (int64_t kk = 0; kk < d; ++kk) {
      double sum = 0.0;
      for (int64_t j = 0; j < c; ++j) sum += static_cast<double>(pt_[j * d + kk]) * static_cast<double>(v[j]);
      // (a double past the float range does not convert: checked first)
      const bool fits = std::fabs(sum) <= static_cast<double>(std::numeric_limits<float>::max());
      yf[kk] = fits ? static_cast<float>(sum) : 0.0f;
      finite = finite && fits;
      ynorm2 += sum * sum;
    }
    const double norm = std::sqrt((norm2 + static_cast<double>(c) * eta) * (1.0 + 1e-12));
    const double err = std::sqrt(static_cast<double>(d)) * (g * grow_ * norm + static_cast<double>(c) * eta) * 1.01;
    if (!finite || !std::isfinite(err) || !std::isfinite(ynorm2)) {
      *err_out = kInfD;
      *lo = 0.0;
      *hi = kInfD;
      return;
    }
    residual(norm2, std::sqrt(ynorm2), err, lo, hi);
    // the float copy the steps read: its rounding added to the bound
    *err_out = err + (0x1p-24 * std::sqrt(ynorm2) + std::sqrt(static_cast<double>(d)) * 0x1p-149) * 1.01;
  }

  // The cost model's look ahead, before the rows are projected: the
  // sample of rows (the basis's) projected, timed per row (reading
  // included), and, for the step of new center `id`, the fraction of the
  // sampled rows that step would compute (eligible, not ruled out by their
  // own triangle test) that the bound rules out (-1: none to judge).
  double sample_seconds_per_row() {
    if (sample_spr_ < 0) project_sample();
    return sample_spr_;
  }
  double sample_rejection(int64_t id) {
    if (sample_spr_ < 0) project_sample();
    const P& q = pool_;
    const A* ctr = q.center(id);
    std::vector<float> yf(static_cast<size_t>(stride_), 0.0f);
    Center ct{yf.data(), 0, 0, 0};
    project_center(ctr, yf.data(), &ct.err, &ct.rlo, &ct.rhi);
    int64_t asked = 0, ruled_out = 0;
    for (size_t r = 0; r < sample_rows_.size(); ++r) {
      const int64_t i = sample_rows_[r];
      const A m = q.mind[i];
      const int32_t a = q.nearest[i];
      if (!is_eligible(m) || !(m > A(0))) continue;
      if (a >= 0 && a != id) {
        const A r2 = prune_bound(m);
        if (can_skip_row(sq_dist_vec(q.center(a), ctr, q.p.c, r2), m)) continue;
      }
      ++asked;
      ruled_out += keeps_record(sample_y_.data() + r * stride_, ct, m) ? 1 : 0;
    }
    return asked ? static_cast<double>(ruled_out) / static_cast<double>(asked) : -1.0;
  }

  // A center's projection: values, error bound, residual interval.
  // (yf: in float, padded to a multiple of 8 with zeros, as the rows are;
  // err covers the rounding to float too)
  struct Center {
    const float* yf;
    double err, rlo, rhi;
  };
  Center center(int64_t a) const {
    return Center{ycf_.data() + a * stride_, ec_[static_cast<size_t>(a)], rc_[2 * static_cast<size_t>(a)],
                  rc_[2 * static_cast<size_t>(a) + 1]};
  }

  // True when row i provably keeps running minimum m against center ct:
  // the kernel's distance would be >= m.
  bool keeps(int64_t i, const Center& ct, A m) const { return keeps_record(y_.data() + i * stride_, ct, m); }

  // Fetch row i's record (a step asks about rows scattered over the pool).
  void prefetch(int64_t i) const {
    const char* p = reinterpret_cast<const char*>(y_.data() + i * stride_);
    for (int64_t off = 0; off < stride_ * 4; off += 64) __builtin_prefetch(p + off);
  }

  bool keeps_record(const float* y, const Center& ct, A m) const {
    // ||y - yc||^2 in float, 8 partial sums (vectorised): each term is a
    // rounded difference squared, at most d / 8 + 3 sums deep, so the
    // computed value is >= the exact one times (1 - (d + 8) 2^-24), less
    // the underflow of 2d operations
    float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t k = 0; k < dp_; k += 8)
      for (int j = 0; j < 8; ++j) {
        const float t = y[k + j] - ct.yf[k + j];
        part[j] = part[j] + t * t;
      }
    const double l2 = static_cast<double>(((part[0] + part[1]) + (part[2] + part[3])) +
                                          ((part[4] + part[5]) + (part[6] + part[7])));
    const double l2lo = l2 * (1.0 - static_cast<double>(dp_ + 8) * 0x1p-24) - static_cast<double>(2 * dp_) * 0x1p-149;
    const double l = l2lo > 0.0 ? std::sqrt(l2lo) * (1.0 - 1e-15) : 0.0;
    double b = (l - static_cast<double>(y[dp_]) - ct.err) / grow_ * (1.0 - 1e-15);
    b = b > 0.0 ? b : 0.0;  // NaN (non-finite projections) too
    double g = std::max(static_cast<double>(y[dp_ + 1]) - ct.rhi, ct.rlo - static_cast<double>(y[dp_ + 2]));
    g = g > 0.0 ? g * (1.0 - 1e-15) : 0.0;
    const double lb = (b * b + g * g) * (1.0 - 1e-15);
    return lb * (1.0 - gamma_) * (1.0 - 1e-15) - abs_ >= static_cast<double>(m);
  }

  // Bytes kept (the stats and the memory estimate).
  int64_t bytes() const { return static_cast<int64_t>(y_.size() * 4); }

 private:
  void project_sample() {
    const P& q = pool_;
    const int64_t n = q.p.n, m = std::min<int64_t>(n, kSampleRows);
    sample_rows_.resize(static_cast<size_t>(m));
    sample_y_.assign(static_cast<size_t>(m * stride_), 0.0f);
    std::vector<A> x(static_cast<size_t>(q.p.c));
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t r = 0; r < m; ++r) {
      const int64_t i = r * n / m;
      sample_rows_[r] = i;
      q.row_values_into(i, x.data());
      q.release_rows(std::max<int64_t>(0, r - 1) * n / m, std::min(n, (r + 2) * n / m));
      project_one(x.data(), sample_y_.data() + r * stride_);
    }
    sample_spr_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
                  static_cast<double>(std::max<int64_t>(1, m));
  }

  static constexpr int64_t kSampleRows = 1024;
  static constexpr int kPowerIterations = 4;

  // Gram-Schmidt (each row twice against the rows before it) over the d
  // rows of b (c values each). A row left with (almost) nothing, the sample
  // having rank below d, is replaced by unit coordinate vectors until one
  // is independent (d <= c, so one is).
  static void orthonormalize(double* b, int64_t d, int64_t c) {
    for (int64_t k = 0; k < d; ++k) {
      double* bk = b + k * c;
      for (int64_t tries = 0;; ++tries) {
        double n0 = 0.0;
        for (int64_t j = 0; j < c; ++j) n0 += bk[j] * bk[j];
        for (int pass = 0; pass < 2; ++pass)
          for (int64_t t = 0; t < k; ++t) {
            const double* bt = b + t * c;
            double s = 0.0;
            for (int64_t j = 0; j < c; ++j) s += bk[j] * bt[j];
            for (int64_t j = 0; j < c; ++j) bk[j] -= s * bt[j];
          }
        double nn = 0.0;
        for (int64_t j = 0; j < c; ++j) nn += bk[j] * bk[j];
        if (nn > 1e-12 * n0 && nn > 0.0) {
          const double inv = 1.0 / std::sqrt(nn);
          for (int64_t j = 0; j < c; ++j) bk[j] *= inv;
          break;
        }
        for (int64_t j = 0; j < c; ++j) bk[j] = j == (k + tries) % c ? 1.0 : 0.0;
      }
    }
  }

  // The interval [lo, hi] of the residual norm ||(I - Pi) x|| from ||x||^2
  // (computed in double: norm2) and ||P x|| within q +- err.
  void residual(double norm2, double q, double err, double* lo, double* hi) const {
    const double cc = static_cast<double>(pool_.p.c);
    const double rel = 1.01 * (cc + 2.0) * 0x1p-53;
    const double nlo = norm2 * (1.0 - rel);
    const double nhi = (norm2 + cc * std::numeric_limits<double>::denorm_min()) * (1.0 + rel);
    const double qlo = std::max(0.0, (q * (1.0 - 1e-14) - err) * (1.0 - 1e-15));
    const double qhi = (q * (1.0 + 1e-14) + err) * (1.0 + 1e-15);
    const double pilo = qlo * qlo / (1.0 + e_) * (1.0 - 1e-15);
    const double pihi = qhi * qhi / (1.0 - e_) * (1.0 + 1e-15);
    const double r2lo = (nlo - pihi) * (1.0 - 1e-15);
    const double r2hi = (nhi - pilo) * (1.0 + 1e-15);
    *lo = r2lo > 0.0 ? std::sqrt(r2lo) * (1.0 - 1e-15) : 0.0;
    *hi = r2hi > 0.0 ? std::sqrt(r2hi) * (1.0 + 1e-15) : 0.0;
  }

  // acc[k] = sum_j P_kj x_j, in order of j (kD > 0: d fixed at compile
  // time, so the d accumulators stay in vector registers).
  template <int kD>
  void accumulate(const A* x, A* acc) const {
    const int64_t c = pool_.p.c, d = kD > 0 ? kD : d_;
    A a[kD > 0 ? kD : kMaxDims];
    for (int64_t k = 0; k < d; ++k) a[k] = A(0);
    for (int64_t j = 0; j < c; ++j) {
      const A xj = x[j];
      const A* pj = pt_.data() + j * d;
      for (int64_t k = 0; k < d; ++k) a[k] = a[k] + pj[k] * xj;
    }
    for (int64_t k = 0; k < d; ++k) acc[k] = a[k];
  }

  // Row values x (in A) to its record: d projected values, their error
  // bound, the residual interval (floats rounded outward).
  void project_one(const A* x, float* out) const {
    const int64_t c = pool_.p.c, d = d_;
    constexpr float kFInf = std::numeric_limits<float>::infinity();
    A acc[kMaxDims];
    switch (d) {
      case 16: accumulate<16>(x, acc); break;
      case 32: accumulate<32>(x, acc); break;
      default: accumulate<-1>(x, acc); break;
    }
    double norm2 = 0.0;
    for (int64_t j = 0; j < c; ++j) norm2 += static_cast<double>(x[j]) * static_cast<double>(x[j]);
    const double eta64 = std::numeric_limits<double>::denorm_min();
    const double cc = static_cast<double>(c);
    const double norm = std::sqrt((norm2 + cc * eta64) * (1.0 + 1e-12));
    double ynorm2 = 0.0, fnorm2 = 0.0;
    bool finite = std::isfinite(norm);
    for (int64_t k = 0; k < d; ++k) {
      const double v = static_cast<double>(acc[k]);
      // (a double past the float range does not convert: checked first)
      const bool fits = std::fabs(v) <= static_cast<double>(std::numeric_limits<float>::max());
      const float f = fits ? static_cast<float>(v) : 0.0f;
      finite = finite && fits;
      out[k] = f;
      ynorm2 += v * v;
      fnorm2 += static_cast<double>(f) * static_cast<double>(f);
    }
    const double sd = std::sqrt(static_cast<double>(d));
    // sums in A, then the rounding to float (relative, and the subnormal
    // spacing of float for tiny values)
    const double err = (sd * (gamma_proj_ * grow_ * norm + cc * eta_) +
                        0x1p-24 * std::sqrt(ynorm2) * (1.0 + 1e-12) + sd * 0x1p-149) * 1.01;
    float* aux = out + dp_;
    constexpr double kFMax = static_cast<double>(std::numeric_limits<float>::max()) / 4;
    if (!finite || !(err < kFMax) || !(norm < kFMax)) {  // (the residual bound below <= norm + err)
      for (int64_t k = 0; k < d; ++k) out[k] = 0.0f;
      aux[0] = kFInf;
      aux[1] = 0.0f;
      aux[2] = kFInf;
      return;
    }
    const float e = std::nextafter(static_cast<float>(err), kFInf);
    aux[0] = e;
    double lo, hi;
    residual(norm2, std::sqrt(fnorm2), static_cast<double>(e), &lo, &hi);
    const float flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
    aux[1] = flo > 0.0f ? std::nextafter(flo, 0.0f) : 0.0f;
    aux[2] = std::nextafter(fhi, kFInf);
  }

  P& pool_;
  int64_t d_ = 0;
  std::vector<A> pt_;       // P^T as used, C x d
  int64_t dp_ = 0;          // d rounded up to a multiple of 8 (zeros past d)
  int64_t stride_ = 0;      // floats per row record: dp + 3
  std::vector<float> y_;    // rows' records, N x (d + 3): projection, error bound, residual interval
  std::vector<float> ycf_;  // the same in float, K x stride (zero padded)
  std::vector<double> ec_;  // their error bounds
  std::vector<double> rc_;  // their residual intervals, K x 2
  double e_ = 0.0;          // bound of ||P P^T - I||
  double grow_ = 1.0;       // sqrt(1 + e)
  double gamma_ = 0.0;      // the kernel distance's relative rounding
  double abs_ = 0.0;        // its absolute (underflow) rounding
  double gamma_proj_ = 0.0; // the projection's relative rounding (in A)
  double eta_ = 0.0;        // A's smallest subnormal
  bool rows_ready_ = false;
  std::vector<int64_t> sample_rows_;  // the look ahead's rows and records
  std::vector<float> sample_y_;
  double sample_spr_ = -1.0;          // seconds to project one of them
};

}  // namespace
}  // namespace PCS_ISA
}  // namespace pcoreset
