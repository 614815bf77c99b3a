// CPU k-center greedy: running minimum, one fused update + argmax pass per
// step over OpenMP threads, exact triangle-inequality pruning.
//
// Per step, with the new center n:
//   1. for every active center a (one that still has rows at distance > 0):
//      dcc2[a] = d^2(a, n), stopping early once it exceeds the bound under
//      which no row of a can move (then dcc2[a] = +inf: the whole cluster is
//      skipped without reading its rows);
//   2. for every row i: skip it when can_skip_row(dcc2[nearest[i]], mind[i])
//      (8 bytes read instead of C values); else compute d^2(i, n) with an
//      early exit at mind[i], update mind/nearest, and fold (mind[i], i) into
//      the thread's argmax.
// Rows that were labeled or picked are "taken": mind 0, never eligible.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <sys/mman.h>
#include <unistd.h>

#include "pcoreset/kcenter.h"
#include "pcoreset/row_math.h"

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#endif

#ifndef PCS_ISA
#define PCS_ISA baseline
#endif

namespace pcoreset {
// This file is compiled once per instruction set (baseline x86-64, and AVX2 +
// F16C where the compiler can target it); cpu/dispatch.cpp picks one at run time.
namespace PCS_ISA {
namespace {

// Pools below this many values run on one thread: a parallel region costs
// more than the pass itself there (and far more on a busy machine).
constexpr int64_t kMinParallelValues = int64_t(1) << 16;

int resolve_threads(int requested, int64_t values) {
#ifdef _OPENMP
  if (values < kMinParallelValues) return 1;
  return requested > 0 ? requested : omp_get_max_threads();
#else
  (void)requested;
  (void)values;
  return 1;
#endif
}

// Early exit: a partial sum of non-negative terms that already exceeds the
// stop value by this margin cannot fold (in the lane order) to less than it.
template <typename A> struct ExitSlack;
template <> struct ExitSlack<float> { static constexpr float value = 1.0f + 1e-3f; };
template <> struct ExitSlack<double> { static constexpr double value = 1.0 + 1e-9; };

// Vectorisable form of sq_dist_lanes (row_math.h): the same lane
// assignment and fold, so the same bits. With stop >= 0 the loop may return
// early with some value >= stop whenever the full sum would be >= stop.
template <typename S, typename A, bool kLogits>
A sq_dist_row(const S* row, const A* center, int64_t c, SoftmaxRow<A> sm, A inv_t, A stop) {
  A lanes[kLanes];
  for (int k = 0; k < kLanes; ++k) lanes[k] = A(0);
  int64_t j = 0;
  const bool early = stop >= A(0) && stop < std::numeric_limits<A>::infinity();
  const A stop_slack = stop * ExitSlack<A>::value;
  int blocks = 0;
  for (; j + kLanes <= c; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const A d = row_value<S, A>(row, j + k, kLogits, sm, inv_t) - center[j + k];
      lanes[k] = lanes[k] + d * d;
    }
    if (early && (++blocks & 7) == 0) {
      A partial = A(0);
      for (int k = 0; k < kLanes; ++k) partial += lanes[k];
      if (partial > stop_slack) return partial;
    }
  }
  for (int k = 0; j + k < c; ++k) {
    const A d = row_value<S, A>(row, j + k, kLogits, sm, inv_t) - center[j + k];
    lanes[k] = lanes[k] + d * d;
  }
  return fold_lanes(lanes);
}

#if defined(__AVX2__) && defined(__F16C__)
// float16 rows in the AVX2 + F16C build: the compiler does not turn the
// portable bit conversion into vcvtph2ps, so spell it out. Same lanes in the
// same order (vector v holds lanes 8v..8v+7), a separate multiply and add as
// in the generic loop: the same bits as sq_dist_lanes.
template <>
float sq_dist_row<f16_t, float, false>(const f16_t* row, const float* center, int64_t c,
                                       SoftmaxRow<float> sm, float inv_t, float stop) {
  (void)sm;
  (void)inv_t;
  __m256 acc[kLanes / 8];
  for (auto& a : acc) a = _mm256_setzero_ps();
  const bool early = stop >= 0.0f && stop < std::numeric_limits<float>::infinity();
  const float stop_slack = stop * ExitSlack<float>::value;
  int64_t j = 0;
  int blocks = 0;
  for (; j + kLanes <= c; j += kLanes) {
    for (int v = 0; v < kLanes / 8; ++v) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j + 8 * v));
      const __m256 d = _mm256_sub_ps(_mm256_cvtph_ps(h), _mm256_loadu_ps(center + j + 8 * v));
      acc[v] = _mm256_add_ps(acc[v], _mm256_mul_ps(d, d));
    }
    if (early && (++blocks & 7) == 0) {
      alignas(32) float part[8];
      _mm256_store_ps(part, _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
      float partial = 0.0f;
      for (float p : part) partial += p;
      if (partial > stop_slack) return partial;
    }
  }
  alignas(32) float lanes[kLanes];
  for (int v = 0; v < kLanes / 8; ++v) _mm256_store_ps(lanes + 8 * v, acc[v]);
  for (int k = 0; j + k < c; ++k) {
    const float d = half_bits_to_float(row[j + k].bits) - center[j + k];
    lanes[k] = lanes[k] + d * d;
  }
  return fold_lanes(lanes);
}
#endif

template <typename A>
A sq_dist_vec(const A* a, const A* b, int64_t c, A stop) {
  A lanes[kLanes];
  for (int k = 0; k < kLanes; ++k) lanes[k] = A(0);
  int64_t j = 0;
  const bool early = stop >= A(0) && stop < std::numeric_limits<A>::infinity();
  int blocks = 0;
  for (; j + kLanes <= c; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const A d = a[j + k] - b[j + k];
      lanes[k] = lanes[k] + d * d;
    }
    if (early && (++blocks & 7) == 0) {
      A partial = A(0);
      for (int k = 0; k < kLanes; ++k) partial += lanes[k];
      if (partial > stop * ExitSlack<A>::value) return partial;
    }
  }
  for (int k = 0; j + k < c; ++k) {
    const A d = a[j + k] - b[j + k];
    lanes[k] = lanes[k] + d * d;
  }
  return fold_lanes(lanes);
}

struct Best {
  double dist2 = -1.0;
  int64_t row = -1;
  void offer(double d, int64_t i) {
    if (row < 0 || better(d, i, dist2, row)) {
      dist2 = d;
      row = i;
    }
  }
};

template <typename S>
class CpuState final : public KCenterState {
  using A = typename AccumOf<S>::type;
  static constexpr A kInf = std::numeric_limits<A>::infinity();
  // mind_ of a labeled or picked row: negative, so the pass needs no separate
  // flag (and the pruning test, dcc2 >= 4 * mind, always skips it).
  static constexpr A kTaken = A(-1);

 public:
  CpuState(const S* x, const KCenterParams& p)
      : x_(x), p_(p), threads_(resolve_threads(p.num_threads, p.n * p.c)),
        inv_t_(static_cast<A>(1.0 / p.temperature)),
        mind_(p.n, kInf), nearest_(p.n, -1),
        tile_(tile_rows(p)) {
    if (p_.from_logits) init_softmax();
    else sm_.assign(1, SoftmaxRow<A>{A(0), A(1)});
  }

  void seed_rows(const int64_t* rows, int64_t count) override {
    assign_nearest(add_row_centers(rows, count));
  }

  void seed_rows_with_candidates(const int64_t* rows, int64_t count, const int64_t* cand,
                                 int64_t k) override {
    refine_candidates(add_row_centers(rows, count), count, cand, k);
  }

  void seed_vectors_with_candidates(const double* vecs, int64_t count, const int64_t* cand,
                                    int64_t k) override {
    const int64_t first = num_centers();
    for (int64_t a = 0; a < count; ++a) append_center(vecs + a * p_.c);
    refine_candidates(first, count, cand, k);
  }

  void seed_vectors(const double* vecs, int64_t count) override {
    const int64_t first = num_centers();
    for (int64_t a = 0; a < count; ++a) append_center(vecs + a * p_.c);
    assign_nearest(first);
  }

  void row_vector(int64_t i, double* out) const override {
    const S* row = x_ + i * p_.c;
    const SoftmaxRow<A> sm = softmax_of(i);
    for (int64_t j = 0; j < p_.c; ++j)
      out[j] = static_cast<double>(row_value<S, A>(row, j, p_.from_logits, sm, inv_t_));
  }

  void rows_values(const int64_t* rows, int64_t count, void* out) const override {
    A* o = static_cast<A*>(out);
    const int64_t c = p_.c;
#pragma omp parallel for schedule(static) num_threads(count * c >= kMinParallelValues ? threads_ : 1)
    for (int64_t k = 0; k < count; ++k) {
      const int64_t i = rows[k];
      const S* row = x_ + i * c;
      const SoftmaxRow<A> sm = softmax_of(i);
      for (int64_t j = 0; j < c; ++j) o[k * c + j] = row_value<S, A>(row, j, p_.from_logits, sm, inv_t_);
    }
  }

  int accum_bytes() const override { return static_cast<int>(sizeof(A)); }

  void mean_vector(double* out) const override {
    // Fixed blocks summed in order: the same bits whatever the thread count.
    const int64_t c = p_.c, n = p_.n;
    constexpr int64_t kBlock = 4096;
    const int64_t nblocks = (n + kBlock - 1) / kBlock;
    std::vector<double> partial(static_cast<size_t>(nblocks * c), 0.0);
    const int64_t tile_blocks = std::max<int64_t>(1, tile_ / kBlock);
#pragma omp parallel num_threads(threads_)
    for (int64_t b0 = 0; b0 < nblocks; b0 += tile_blocks) {
      const int64_t b1 = std::min(nblocks, b0 + tile_blocks);
#pragma omp for schedule(static)
      for (int64_t b = b0; b < b1; ++b) {
        double* acc = partial.data() + b * c;
        const int64_t end = std::min(n, (b + 1) * kBlock);
        for (int64_t i = b * kBlock; i < end; ++i) {
          const S* row = x_ + i * c;
          const SoftmaxRow<A> sm = softmax_of(i);
          for (int64_t j = 0; j < c; ++j)
            acc[j] += static_cast<double>(row_value<S, A>(row, j, p_.from_logits, sm, inv_t_));
        }
      }
#pragma omp single
      release_rows(b0 * kBlock, std::min(n, b1 * kBlock));
    }
    for (int64_t j = 0; j < c; ++j) out[j] = 0.0;
    for (int64_t b = 0; b < nblocks; ++b)
      for (int64_t j = 0; j < c; ++j) out[j] += partial[b * c + j];
    for (int64_t j = 0; j < c; ++j) out[j] /= static_cast<double>(n);
  }

  StepResult farthest_from(const double* vec) override {
    std::vector<A> v(vec, vec + p_.c);
    const int64_t n = p_.n;
    std::vector<Best> best(threads_);
#pragma omp parallel num_threads(threads_)
    {
      Best local;
      for (int64_t t0 = 0; t0 < n; t0 += tile_) {
        const int64_t t1 = std::min(n, t0 + tile_);
#pragma omp for schedule(static)
        for (int64_t i = t0; i < t1; ++i) {
          if (mind_[i] < A(0)) continue;  // taken
          local.offer(static_cast<double>(dist_row(i, v.data(), A(-1))), i);
        }
#pragma omp single
        release_rows(t0, t1);
      }
      best[thread_id()] = local;
    }
    return combine(best);
  }

  StepResult current_best() override {
    const int64_t n = p_.n;
    std::vector<Best> best(threads_);
#pragma omp parallel num_threads(threads_)
    {
      Best local;
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; ++i)
        if (mind_[i] >= A(0)) local.offer(static_cast<double>(mind_[i]), i);
      best[thread_id()] = local;
    }
    return combine(best);
  }

  void take(int64_t i) override {
    mind_[i] = kTaken;
  }

  StepResult push_center(const double* vec) override {
    append_center(vec);
    return update(num_centers() - 1);
  }

  StepResult push_row(int64_t i) override {
    const int64_t id = append_row_center(i);
    mind_[i] = kTaken;
    nearest_[i] = static_cast<int32_t>(id);
    return update(id);
  }

  bool run(int64_t budget, std::vector<int64_t>* picks, std::vector<double>* radii2,
           const ProgressFn& progress) override {
    using clock = std::chrono::steady_clock;
    auto last_report = clock::now();
    StepResult best;
    if (budget <= 0) return true;
    if (num_centers() == 0) {
      // No labeled rows: start from the row farthest from the pool mean.
      std::vector<double> mean(p_.c);
      mean_vector(mean.data());
      best = farthest_from(mean.data());
      best.dist2 = std::numeric_limits<double>::infinity();
    } else {
      best = current_best();
    }
    for (int64_t t = 0; t < budget; ++t) {
      if (best.row < 0) throw std::logic_error("pcoreset: pool exhausted inside the kernel");
      picks->push_back(best.row);
      radii2->push_back(best.dist2);
      if (t + 1 == budget) break;  // the last pick needs no update pass
      best = push_row(best.row);
      if (progress && clock::now() - last_report > std::chrono::milliseconds(100)) {
        last_report = clock::now();
        if (!progress(t + 1)) return false;
      }
    }
    if (progress && !progress(budget)) return false;
    return true;
  }

  void min_dist2(double* out) const override {
    for (int64_t i = 0; i < p_.n; ++i) out[i] = static_cast<double>(std::max(mind_[i], A(0)));
  }
  const KCenterStats& stats() const override { return stats_; }
  const KCenterParams& params() const override { return p_; }

 private:
  static int thread_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
  }

  StepResult combine(const std::vector<Best>& best) const {
    Best all;
    for (const Best& b : best)
      if (b.row >= 0) all.offer(b.dist2, b.row);
    return StepResult{all.row, all.dist2};
  }

  // Rows per tile: the whole pool in one piece unless pages are released,
  // then about kTileBytes of rows (big enough that the barrier per tile is
  // noise, small enough to bound what is resident).
  static int64_t tile_rows(const KCenterParams& p) {
    constexpr int64_t kTileBytes = int64_t(32) << 20;
    if (!p.release_pages) return std::max<int64_t>(1, p.n);
    const int64_t rows = kTileBytes / std::max<int64_t>(1, p.c * int64_t(sizeof(S)));
    if (rows >= 4096) return rows - rows % 4096;  // whole mean_vector blocks
    return std::max<int64_t>(1, rows);  // very long rows: mean_vector then tiles by one block
  }

  // Hand the pages of rows [lo, hi) back to the kernel (file-backed pools
  // only: the Python layer sets release_pages just for shared file mappings,
  // where MADV_DONTNEED drops the mapping but keeps the data in the file).
  void release_rows(int64_t lo, int64_t hi) const {
    if (!p_.release_pages || hi <= lo) return;
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    uintptr_t a = reinterpret_cast<uintptr_t>(x_ + lo * p_.c);
    uintptr_t b = reinterpret_cast<uintptr_t>(x_ + hi * p_.c);
    a &= ~(page - 1);
    b = (b + page - 1) & ~(page - 1);
    (void)madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED);
  }

  int64_t num_centers() const { return static_cast<int64_t>(centers_.size() / p_.c); }
  const A* center(int64_t a) const { return centers_.data() + a * p_.c; }

  SoftmaxRow<A> softmax_of(int64_t i) const { return p_.from_logits ? sm_[i] : sm_[0]; }

  void init_softmax() {
    const int64_t n = p_.n, c = p_.c;
    sm_.resize(n);
#pragma omp parallel num_threads(threads_)
    for (int64_t t0 = 0; t0 < n; t0 += tile_) {
      const int64_t t1 = std::min(n, t0 + tile_);
#pragma omp for schedule(static)
      for (int64_t i = t0; i < t1; ++i) {
        const S* row = x_ + i * c;
        A mx = -kInf;
        for (int64_t j = 0; j < c; ++j) mx = std::max(mx, Load<S, A>::get(row + j));
        // Sum of exponentials in the lane order (the CUDA kernel does the same).
        A lanes[kLanes];
        for (int k = 0; k < kLanes; ++k) lanes[k] = A(0);
        for (int64_t j = 0; j < c; ++j)
          lanes[j % kLanes] += exp_acc((Load<S, A>::get(row + j) - mx) * inv_t_);
        sm_[i] = SoftmaxRow<A>{mx, A(1) / fold_lanes(lanes)};
      }
#pragma omp single
      release_rows(t0, t1);
    }
  }

  A dist_row(int64_t i, const A* ctr, A stop) const {
    const S* row = x_ + i * p_.c;
    if (p_.from_logits) return sq_dist_row<S, A, true>(row, ctr, p_.c, sm_[i], inv_t_, stop);
    return sq_dist_row<S, A, false>(row, ctr, p_.c, sm_[0], inv_t_, stop);
  }

  void check_center_count() const {
    if (num_centers() >= std::numeric_limits<int32_t>::max())
      throw std::length_error("pcoreset: more than 2^31 - 1 centers");
  }

  void append_center(const double* vec) {
    check_center_count();
    for (int64_t j = 0; j < p_.c; ++j) centers_.push_back(static_cast<A>(vec[j]));
    radius2_.push_back(A(0));
  }

  int64_t append_row_center(int64_t i) {
    check_center_count();
    const S* row = x_ + i * p_.c;
    const SoftmaxRow<A> sm = softmax_of(i);
    for (int64_t j = 0; j < p_.c; ++j)
      centers_.push_back(row_value<S, A>(row, j, p_.from_logits, sm, inv_t_));
    radius2_.push_back(A(0));
    return num_centers() - 1;
  }

  int64_t add_row_centers(const int64_t* rows, int64_t count) {
    const int64_t first = num_centers();
    centers_.reserve(static_cast<size_t>((first + count) * p_.c));
    for (int64_t a = 0; a < count; ++a) {
      const int64_t i = rows[a];
      const int64_t id = append_row_center(i);
      mind_[i] = kTaken;
      nearest_[i] = static_cast<int32_t>(id);
    }
    return first;
  }

  // Exact distances to each row's candidate centers first + cand[i][t]
  // (t < k; -1 or out of range = none), kept when closer than the current
  // nearest center (lower center id on ties).
  void refine_candidates(int64_t first, int64_t count, const int64_t* cand, int64_t k) {
    const int64_t n = p_.n;
#pragma omp parallel num_threads(threads_)
    for (int64_t t0 = 0; t0 < n; t0 += tile_) {
      const int64_t t1 = std::min(n, t0 + tile_);
#pragma omp for schedule(static)
      for (int64_t i = t0; i < t1; ++i) {
        A best = mind_[i];
        if (best < A(0)) continue;  // taken
        int64_t best_c = nearest_[i];
        for (int64_t t = 0; t < k; ++t) {
          const int64_t a = cand[i * k + t];
          if (a < 0 || a >= count) continue;
          const A d = dist_row(i, center(first + a), A(-1));
          if (d < best || (d == best && first + a < best_c)) {
            best = d;
            best_c = first + a;
          }
        }
        mind_[i] = best;
        nearest_[i] = static_cast<int32_t>(best_c);
      }
#pragma omp single
      release_rows(t0, t1);
    }
    refresh_radii();
  }

  // Exact nearest center among centers [first, end) for every row not taken,
  // against its current one; each distance stops early at the best so far.
  void assign_nearest(int64_t first) {
    const int64_t n = p_.n;
    const int64_t total = num_centers();
#pragma omp parallel num_threads(threads_)
    for (int64_t t0 = 0; t0 < n; t0 += tile_) {
      const int64_t t1 = std::min(n, t0 + tile_);
#pragma omp for schedule(dynamic, 256)
      for (int64_t i = t0; i < t1; ++i) {
        A best = mind_[i];
        if (best < A(0)) continue;  // taken
        int64_t best_c = nearest_[i];
        for (int64_t a = first; a < total; ++a) {
          const A d = dist_row(i, center(a), p_.prune ? best : A(-1));
          if (d < best) {
            best = d;
            best_c = a;
          }
        }
        mind_[i] = best;
        nearest_[i] = static_cast<int32_t>(best_c);
      }
#pragma omp single
      release_rows(t0, t1);
    }
    refresh_radii();
  }

  // Exact per-center radius (max squared distance of its rows); centers with
  // none are inactive and cost nothing in the pruning stage.
  void refresh_radii() {
    const int64_t k = num_centers(), n = p_.n;
    std::vector<std::vector<A>> local(threads_);
#pragma omp parallel num_threads(threads_)
    {
      std::vector<A>& r = local[thread_id()];
      r.assign(k, A(0));
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        const int64_t a = nearest_[i];
        if (a >= 0) r[a] = std::max(r[a], mind_[i]);  // taken rows hold -1
      }
    }
    radius2_.assign(k, A(0));
    for (const auto& r : local)
      for (int64_t a = 0; a < k; ++a) radius2_[a] = std::max(radius2_[a], r[a]);
    steps_since_refresh_ = 0;
  }

  // The fused pass for new center `id`.
  StepResult update(int64_t id) {
    const int64_t n = p_.n, k = num_centers();
    const A* ctr = center(id);
    const bool prune = p_.prune;
    if (prune) {
      // Stage 1: center-to-center distances of active centers. A cluster whose
      // bound already fails is skipped whole (dcc2 = +inf).
      dcc2_.assign(k, kInf);
      int64_t computed = 0;
#pragma omp parallel for schedule(dynamic, 64) num_threads(threads_) reduction(+ : computed)
      for (int64_t a = 0; a < k; ++a) {
        const A r2 = radius2_[a];
        if (a == id || !(r2 > A(0))) continue;
        const A bound = PruneSlack<A>::value * r2;
        const A d = sq_dist_vec(center(a), ctr, p_.c, bound);
        ++computed;
        dcc2_[a] = d >= bound ? kInf : d;
      }
      stats_.center_dists += computed;
    }
    std::vector<Best> best(threads_);
    std::vector<A> new_radius(threads_, A(0));
    int64_t computed_rows = 0;
#pragma omp parallel num_threads(threads_) reduction(+ : computed_rows)
    {
      // Rows come in increasing order within a thread, so a strict > keeps
      // the lowest index among equals; threads are combined with the tie rule.
      A best_d = A(-1);
      int64_t best_i = -1;
      A rad = A(0);
      const int32_t id32 = static_cast<int32_t>(id);
      for (int64_t t0 = 0; t0 < n; t0 += tile_) {
        const int64_t t1 = std::min(n, t0 + tile_);
#pragma omp for schedule(static)
        for (int64_t i = t0; i < t1; ++i) {
          A m = mind_[i];
          if (m < A(0)) continue;  // taken
          const int32_t a = nearest_[i];
          const bool skip = prune && a >= 0 && can_skip_row(dcc2_[a], m);
          if (!skip) {
            ++computed_rows;
            const A d = dist_row(i, ctr, prune ? m : A(-1));
            if (d < m) {
              m = d;
              mind_[i] = d;
              nearest_[i] = id32;
              rad = std::max(rad, d);  // the rows of the new center are exactly these
            }
          }
          if (m > best_d) {
            best_d = m;
            best_i = i;
          }
        }
        if (p_.release_pages) {
#pragma omp single
          release_rows(t0, t1);
        }
      }
      if (best_i >= 0) best[thread_id()].offer(static_cast<double>(best_d), best_i);
      new_radius[thread_id()] = rad;
    }
    A rad = A(0);
    for (A r : new_radius) rad = std::max(rad, r);
    radius2_[id] = rad;
    stats_.steps += 1;
    stats_.rows_computed += computed_rows;
    stats_.rows_visited += n;
    // Old centers keep their radius as an upper bound (their rows only move
    // away or come closer); tighten the bounds now and then.
    if (prune && ++steps_since_refresh_ >= 16) refresh_radii();
    return combine(best);
  }

  const S* x_;
  KCenterParams p_;
  int threads_;
  A inv_t_;
  std::vector<SoftmaxRow<A>> sm_;
  std::vector<A> mind_;
  // Nearest center of each row (an index into centers_); int32 keeps the
  // per-row metadata the pass reads for a pruned row at 8 bytes.
  std::vector<int32_t> nearest_;
  int64_t tile_;
  std::vector<A> centers_;
  std::vector<A> radius2_;
  std::vector<A> dcc2_;
  int steps_since_refresh_ = 0;
  KCenterStats stats_;
};

}  // namespace

std::unique_ptr<KCenterState> make_state(const void* data, const std::string& dtype,
                                             const KCenterParams& params) {
  if (dtype == "float32")
    return std::make_unique<CpuState<float>>(static_cast<const float*>(data), params);
  if (dtype == "float64")
    return std::make_unique<CpuState<double>>(static_cast<const double*>(data), params);
  if (dtype == "float16")
    return std::make_unique<CpuState<f16_t>>(static_cast<const f16_t*>(data), params);
  if (dtype == "bfloat16")
    return std::make_unique<CpuState<bf16_t>>(static_cast<const bf16_t*>(data), params);
  throw std::invalid_argument("pcoreset: unsupported dtype '" + dtype +
                              "' (expected float16, bfloat16, float32 or float64)");
}

}  // namespace PCS_ISA
}  // namespace pcoreset
