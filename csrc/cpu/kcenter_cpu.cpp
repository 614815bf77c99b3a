// CPU k-center greedy: running minimum, exact triangle-inequality pruning, and
// steps that touch only the cells near the new center.
//
// Cell steps (prune on, once there is a center). Each center a keeps its
// Voronoi cell (the rows whose nearest center it is, sorted), the cell's
// radius r_a (the largest running minimum among them) and its farthest row
// (lowest index among equals); an indexed max-heap over the cells, ordered by
// (radius, lowest row index), gives the next pick without a scan. With the
// new center n, a row i of cell a can only come closer to n if
// d(a, n) < 2 r_a (triangle inequality: d(i, n) >= d(a, n) - d(i, a)), so a
// step visits only those cells and, inside them, skips each row with
// d(a, n) >= 2 sqrt(mind[i]) (8 bytes read instead of C values). The cells
// near n are found without looking at every center: a fixed set of anchor
// centers each keeps the other centers nearest to it, sorted by their distance
// to the anchor; |d(g, n) - d(g, a)| <= d(a, n) bounds every center a of
// anchor g from below, so only a window of each list is read. A step's cost
// follows the cells that can change, not N or the number of centers.
//
// Dense steps (the first center, when no cell exists yet, and prune off, the
// mode that measures the plain pass). Per step, with the new center n:
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

#include <dirent.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

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

// Threads for the next parallel region. A caller that asked for a number gets
// it. The default (all cores) adapts to the machine: other processes that are
// running take cores away (/proc/loadavg counts running tasks; this process's
// own running threads, read from /proc/self/task, are not counted against
// it). On a busy machine a spinning OpenMP barrier waits for threads that the
// scheduler has preempted, which made steps up to 16 times slower than on one
// thread; with the adaptive count a busy machine runs the steps on one thread.
// Read at most every 50 ms.
class ThreadPolicy {
 public:
  ThreadPolicy(int requested, int64_t values)
      : max_(resolve_threads(requested, values)), adaptive_(requested == 0) {}

  int max() const { return max_; }

  int now() {
    if (max_ <= 1 || !adaptive_) return max_;
    const auto t = std::chrono::steady_clock::now();
    if (cached_ > 0 && t - last_ < std::chrono::milliseconds(50)) return cached_;
    last_ = t;
    cached_ = compute();
    return cached_;
  }

 private:
  static int running_tasks() {
    FILE* f = std::fopen("/proc/loadavg", "r");
    if (!f) return -1;
    double a, b, c;
    int running = -1, total = 0;
    if (std::fscanf(f, "%lf %lf %lf %d/%d", &a, &b, &c, &running, &total) != 5) running = -1;
    std::fclose(f);
    return running;
  }

  static int own_running_tasks() {
    DIR* d = opendir("/proc/self/task");
    if (!d) return 1;
    int count = 0;
    char path[64], buf[512];
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
      FILE* f = std::fopen(path, "r");
      if (!f) continue;
      const size_t got = std::fread(buf, 1, sizeof buf - 1, f);
      std::fclose(f);
      buf[got] = 0;
      const char* close = std::strrchr(buf, ')');  // the state follows the command name
      if (close && close[1] == ' ' && close[2] == 'R') ++count;
    }
    closedir(d);
    return std::max(count, 1);
  }

  int compute() const {
    const int running = running_tasks();
    if (running <= 0) return max_;
    const int others = std::max(0, running - own_running_tasks());
    int cpus = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = std::min(cpus, CPU_COUNT(&set));
    return std::max(1, std::min(max_, cpus - others));
  }

  int max_;
  bool adaptive_;
  int cached_ = 0;
  std::chrono::steady_clock::time_point last_{};
};

// Early exit is tested every kExitEvery + 1 blocks of kLanes values (64):
// most rows a step computes stay with their center (98% on clustered pools),
// and a partial sum past the stop value ends them early.
constexpr int kExitEvery = 1;

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
  if (c < kLanes) {  // short rows: one term per lane, the same fold (fold_first_lanes)
    A lanes[kLanes];
    for (int k = 0; k < c; ++k) {
      const A d = row_value<S, A>(row, k, kLogits, sm, inv_t) - center[k];
      lanes[k] = d * d;  // = 0 + d * d exactly
    }
    return fold_first_lanes(lanes, static_cast<int>(c));
  }
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
    if (early && (++blocks & kExitEvery) == 0) {
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
    if (early && (++blocks & kExitEvery) == 0) {
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
  if (c < kLanes) {
    A lanes[kLanes];
    for (int k = 0; k < c; ++k) {
      const A d = a[k] - b[k];
      lanes[k] = d * d;
    }
    return fold_first_lanes(lanes, static_cast<int>(c));
  }
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
    if (early && (++blocks & kExitEvery) == 0) {
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

// Squared distance of two short vectors (C = kC < kLanes), unrolled at
// compile time: one term per lane and the fold of fold_first_lanes, so the
// same bits as sq_dist_vec and sq_dist_row.
template <int kP, typename A> inline A fold_pow2(const A* l) {
  if constexpr (kP == 1) {
    return l[0];
  } else {
    A h[kP / 2];
    for (int k = 0; k < kP / 2; ++k) h[k] = l[k] + l[k + kP / 2];
    return fold_pow2<kP / 2, A>(h);
  }
}

constexpr int pow2_at_least(int c) { return c <= 1 ? 1 : 2 * pow2_at_least((c + 1) / 2); }

template <int kC, typename A> inline A sq_dist_small(const A* a, const A* b) {
  constexpr int kP = pow2_at_least(kC);
  A l[kP];
  for (int k = 0; k < kC; ++k) {
    const A d = a[k] - b[k];
    l[k] = d * d;
  }
  for (int k = kC; k < kP; ++k) l[k] = A(0);
  return fold_pow2<kP, A>(l);
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
  // A cell member: its row and a copy of its running minimum (see members_).
  struct Member {
    uint32_t row;
    A mind;
  };

 public:
  CpuState(const S* x, const KCenterParams& p)
      : x_(x), p_(p), policy_(p.num_threads, p.n * p.c), threads_(policy_.max()),
        inv_t_(static_cast<A>(1.0 / p.temperature)),
        mind_(p.n, kInf), nearest_(p.n, -1),
        tile_(tile_rows(p)) {
    if (p_.from_logits) init_softmax();
    else sm_.assign(1, SoftmaxRow<A>{A(0), A(1)});
    // PCORESET_CELL_VISIT=f overrides the switch point (the fraction of
    // rows a cell step may visit; 0 = dense steps only, 1 = cell steps
    // only): for measuring the cost model, and for tests that force a path.
    if (const char* f = std::getenv("PCORESET_CELL_VISIT")) {
      char* end = nullptr;
      const double v = std::strtod(f, &end);
      if (end != f && v >= 0.0) cell_visit_limit_ = v;
    }
  }

  void seed_rows(const int64_t* rows, int64_t count) override {
    cells_ready_ = false;
    dense_mode_ = false;
    assign_nearest(add_row_centers(rows, count));
  }

  void seed_rows_with_candidates(const int64_t* rows, int64_t count, const int64_t* cand,
                                 int64_t k) override {
    cells_ready_ = false;
    dense_mode_ = false;
    refine_candidates(add_row_centers(rows, count), count, cand, k);
  }

  void seed_vectors_with_candidates(const double* vecs, int64_t count, const int64_t* cand,
                                    int64_t k) override {
    cells_ready_ = false;
    dense_mode_ = false;
    const int64_t first = num_centers();
    for (int64_t a = 0; a < count; ++a) append_center(vecs + a * p_.c);
    refine_candidates(first, count, cand, k);
  }

  void seed_vectors(const double* vecs, int64_t count) override {
    cells_ready_ = false;
    dense_mode_ = false;
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
#pragma omp parallel for schedule(static) num_threads(count * c >= kMinParallelValues ? team() : 1)
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
#pragma omp parallel num_threads(team())
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
#pragma omp parallel num_threads(team())
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
    if (use_cells()) {
      ensure_cells();
      return heap_top();
    }
    const int64_t n = p_.n;
    std::vector<Best> best(threads_);
#pragma omp parallel num_threads(team())
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
    if (mind_[i] < A(0)) return;
    if (cells_ready_) remove_from_cell(i);
    mind_[i] = kTaken;
  }

  void exclude(const int64_t* rows, int64_t count) override {
    for (int64_t k = 0; k < count; ++k) take(rows[k]);
  }

  StepResult push_center(const double* vec) override {
    const bool cells = use_cells();
    if (cells) ensure_cells();
    append_center(vec);
    if (!cells) return dense_step(num_centers() - 1);
    return cell_step(num_centers() - 1, -1, -1);
  }

  StepResult push_row(int64_t i) override {
    const bool cells = use_cells();
    if (cells) ensure_cells();
    const int64_t from = mind_[i] >= A(0) ? nearest_[i] : -1;
    const int64_t id = append_row_center(i);
    mind_[i] = kTaken;
    if (!cells) {
      nearest_[i] = static_cast<int32_t>(id);
      return dense_step(id);
    }
    // the cell step drops row i from its old cell (it is always visited)
    const StepResult r = cell_step(id, from, i);
    nearest_[i] = static_cast<int32_t>(id);
    return r;
  }

  int64_t num_centers() const override { return static_cast<int64_t>(centers_.size() / p_.c); }

  void export_state(double* mind, int64_t* nearest, double* centers) const override {
    for (int64_t i = 0; i < p_.n; ++i) {
      mind[i] = mind_[i] < A(0) ? -1.0 : static_cast<double>(mind_[i]);
      nearest[i] = nearest_[i];
    }
    for (size_t j = 0; j < centers_.size(); ++j) centers[j] = static_cast<double>(centers_[j]);
  }

  void load_state(const double* mind, const int64_t* nearest, const double* centers,
                  int64_t n_centers) override {
    for (int64_t i = 0; i < p_.n; ++i) {
      mind_[i] = mind[i] < 0.0 ? kTaken : static_cast<A>(mind[i]);
      nearest_[i] = static_cast<int32_t>(nearest[i]);
    }
    centers_.assign(centers, centers + n_centers * p_.c);
    radius2_.assign(static_cast<size_t>(n_centers), A(0));
    cells_ready_ = false;
    refresh_radii();
  }

  bool run(int64_t budget, std::vector<int64_t>* picks, std::vector<double>* radii2,
           const ProgressFn& progress, double stop_dist2) override {
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
      if (stop_dist2 >= 0.0 && best.dist2 <= stop_dist2) break;  // covered to the radius asked
      picks->push_back(best.row);
      radii2->push_back(best.dist2);
      if (t + 1 == budget) break;  // the last pick needs no update pass
      best = push_row(best.row);
      if (progress && clock::now() - last_report > std::chrono::milliseconds(100)) {
        last_report = clock::now();
        if (!progress(t + 1)) return false;
      }
    }
    if (progress && !progress(static_cast<int64_t>(picks->size()))) return false;
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


  // ---------------------------------------------------------------- cells

  // Cell steps need pruning and at least one center (the first center's step
  // is a dense pass: every row moves).
  bool use_cells() const { return p_.prune && num_centers() > 0 && !dense_mode_; }

  // The cost model between the two kinds of step. Per row it visits, a cell
  // step reads a member (8 bytes) as the dense pass reads mind_/nearest_, but
  // its rows are scattered and it compacts its cells and gathers the new one
  // on one thread, while the dense pass reads every row forward on the whole
  // team. Measured on the benchmark pools (2-core machine, C = 3 and 100,
  // benchmarks/RESULTS.md "cost model"): a cell step that visits a fraction f
  // of the rows costs about what a dense step costs when f is near 0.5 on
  // one thread and 0.2 to 0.25 on two. So a cell step that would visit more
  // than 0.5 / team of the rows runs as a dense step instead and the cells are
  // dropped. Dense steps count the rows a cell step would have visited (those
  // of the centers not skipped whole) in a running mean over about 8 steps;
  // once it falls under half the limit the cells are built again (O(N),
  // about one dense step). The gap and the mean keep the switch rare.
  // Short rows (C <= kInlineValues) are the exception: their cells hold the
  // values too, so a cell step reads one contiguous block per cell and runs
  // unrolled distances, and on 3-D pools it was as fast as or faster than the
  // dense pass at every visited fraction (one thread and two, from the first
  // steps without labeled rows on): they always use cell steps.
  double leave_cells() const {
    if (cell_visit_limit_ >= 0) return cell_visit_limit_;
    if (inline_values()) return 2.0;
    return 0.5 / static_cast<double>(std::max(1, team()));
  }
  double enter_cells() const {
    if (leave_cells() >= 1.0) return 2.0;  // cell steps only
    return leave_cells() / 2;
  }

  // Relative rounding of a computed distance (not squared) between two
  // vectors, widened: the anchor windows must never drop a cell that the
  // exact test would keep.
  static constexpr double kGeomEps = sizeof(A) == 4 ? 2e-4 : 1e-12;
  double geom_eps() const { return kGeomEps * (1.0 + static_cast<double>(p_.c) / 256.0); }

  // Build the cells from the running minimum: members (in row order), radii,
  // farthest rows, the heap and the anchor index. O(N + K * anchors * C).
  void ensure_cells() {
    if (cells_ready_) return;
    const int64_t n = p_.n, k = num_centers();
    stats_.cell_builds += 1;
    std::vector<int64_t> count(static_cast<size_t>(k) + 1, 0);
    for (int64_t i = 0; i < n; ++i)
      if (mind_[i] >= A(0) && nearest_[i] >= 0) ++count[nearest_[i]];
    members_.assign(static_cast<size_t>(k), {});
    for (int64_t a = 0; a < k; ++a) members_[a].reserve(static_cast<size_t>(count[a]));
    for (int64_t i = 0; i < n; ++i)
      if (mind_[i] >= A(0) && nearest_[i] >= 0) members_[nearest_[i]].push_back(Member{static_cast<uint32_t>(i), mind_[i]});
    member_vals_.assign(inline_values() ? static_cast<size_t>(k) : 0, {});
    if (inline_values()) {
      for (int64_t a = 0; a < k; ++a) {
        auto& vals = member_vals_[a];
        vals.resize(members_[a].size() * static_cast<size_t>(p_.c));
        for (size_t t = 0; t < members_[a].size(); ++t) row_values_into(members_[a][t].row, vals.data() + t * p_.c);
      }
    }
    radius2_.assign(static_cast<size_t>(k), A(-1));
    far_.assign(static_cast<size_t>(k), -1);
    for (int64_t a = 0; a < k; ++a) rescan_cell(a);
    heap_pos_.assign(static_cast<size_t>(k), -1);
    heap_.clear();
    for (int64_t a = 0; a < k; ++a) heap_push(a);
    build_anchors();
    cells_ready_ = true;
  }

  void row_values_into(int64_t i, A* out) const {
    const S* row = x_ + i * p_.c;
    const SoftmaxRow<A> sm = softmax_of(i);
    for (int64_t j = 0; j < p_.c; ++j) out[j] = row_value<S, A>(row, j, p_.from_logits, sm, inv_t_);
  }

  // Radius and farthest row of cell a from its members.
  void rescan_cell(int64_t a) {
    A r2 = A(-1);
    int64_t far = -1;
    for (const Member& e : members_[a]) {
      const A m = e.mind;
      const int64_t i = e.row;
      if (far < 0 || m > r2 || (m == r2 && i < far)) {
        r2 = m;
        far = i;
      }
    }
    radius2_[a] = r2;
    far_[a] = far;
  }

  void remove_from_cell(int64_t i) {
    const int64_t a = nearest_[i];
    if (a < 0) return;
    auto& mem = members_[a];
    auto it = std::find_if(mem.begin(), mem.end(), [&](const Member& e) { return e.row == static_cast<uint32_t>(i); });
    if (it == mem.end()) return;
    const size_t pos = static_cast<size_t>(it - mem.begin());
    *it = mem.back();  // members are not kept in order
    mem.pop_back();
    if (inline_values()) {
      auto& vals = member_vals_[a];
      const size_t c = static_cast<size_t>(p_.c);
      std::copy(vals.end() - c, vals.end(), vals.begin() + pos * c);
      vals.resize(vals.size() - c);
    }
    if (far_[a] == i) {
      mind_[i] = kTaken;
      rescan_cell(a);
      heap_fix(a);
    }
  }

  // ---- the max structure over cells: (radius2, lowest row) ----
  // An indexed binary max-heap whose nodes carry their keys, so a sift reads
  // the heap array only (no chase into per-cell arrays).
  struct HeapNode {
    A r2;         // cell radius (squared); -1 for a cell with no eligible row
    int64_t far;  // its farthest row (lowest index); INT64_MAX when empty
    int64_t cell;
  };
  static bool node_above(const HeapNode& x, const HeapNode& y) { return better(x.r2, x.far, y.r2, y.far); }
  HeapNode node_of(int64_t a) const {
    return HeapNode{radius2_[a], far_[a] < 0 ? std::numeric_limits<int64_t>::max() : far_[a], a};
  }
  void heap_place(size_t pos, const HeapNode& x) {
    heap_[pos] = x;
    heap_pos_[x.cell] = static_cast<int64_t>(pos);
  }
  void heap_sift(size_t pos, HeapNode x) {
    while (pos > 0) {
      const size_t parent = (pos - 1) / 2;
      if (!node_above(x, heap_[parent])) break;
      heap_place(pos, heap_[parent]);
      pos = parent;
    }
    const size_t size = heap_.size();
    for (;;) {
      size_t child = 2 * pos + 1;
      if (child >= size) break;
      if (child + 1 < size && node_above(heap_[child + 1], heap_[child])) ++child;
      if (!node_above(heap_[child], x)) break;
      heap_place(pos, heap_[child]);
      pos = child;
    }
    heap_place(pos, x);
  }
  void heap_push(int64_t a) {
    if (static_cast<int64_t>(heap_pos_.size()) <= a) heap_pos_.resize(static_cast<size_t>(a) + 1, -1);
    heap_.push_back(node_of(a));
    heap_sift(heap_.size() - 1, node_of(a));
  }
  void heap_fix(int64_t a) { heap_sift(static_cast<size_t>(heap_pos_[a]), node_of(a)); }
  StepResult heap_top() const {
    if (heap_.empty() || heap_[0].r2 < A(0)) return StepResult{-1, 0.0};
    return StepResult{heap_[0].far, static_cast<double>(heap_[0].r2)};
  }

  // Squared distance between two center vectors (unrolled for short rows;
  // the same bits either way).
  A center_dist2(const A* a, const A* b, A stop) const {
    switch (p_.c) {
      case 1: return sq_dist_small<1, A>(a, b);
      case 2: return sq_dist_small<2, A>(a, b);
      case 3: return sq_dist_small<3, A>(a, b);
      case 4: return sq_dist_small<4, A>(a, b);
      case 5: return sq_dist_small<5, A>(a, b);
      case 6: return sq_dist_small<6, A>(a, b);
      case 7: return sq_dist_small<7, A>(a, b);
      case 8: return sq_dist_small<8, A>(a, b);
      default: return sq_dist_vec(a, b, p_.c, stop);
    }
  }

  // ---- the anchor index over centers ----
  // Anchors: a fixed set of centers (every center while there are fewer than
  // the maximum, a spread subset of the initial centers otherwise). Each
  // center belongs to its nearest anchor's list, sorted by the distance to
  // it; each list keeps an upper bound of its centers' radii.
  int64_t max_anchors() const {
    // a new center is measured against every anchor: keep that near the
    // cost of reading a few cells
    return std::max<int64_t>(16, std::min<int64_t>(128, (int64_t(1) << 21) / std::max<int64_t>(1, p_.c)));
  }

  void build_anchors() {
    const int64_t k = num_centers();
    const int64_t na = std::min(k, max_anchors());
    anchors_.clear();
    for (int64_t g = 0; g < na; ++g) anchors_.push_back(g * k / na);  // spread over the given order
    anchor_list_.assign(static_cast<size_t>(na), {});
    anchor_maxr_.assign(static_cast<size_t>(na), 0.0);
    anchor_of_.assign(static_cast<size_t>(k), -1);
    std::vector<int64_t> best_g(static_cast<size_t>(k), 0);
    std::vector<double> best_d(static_cast<size_t>(k), 0.0);
#pragma omp parallel for schedule(dynamic, 64) num_threads(k * na * p_.c >= (int64_t(1) << 22) ? team() : 1)
    for (int64_t a = 0; a < k; ++a) {
      double bd = std::numeric_limits<double>::infinity();
      int64_t bg = 0;
      for (int64_t g = 0; g < na; ++g) {
        const double d = std::sqrt(static_cast<double>(sq_dist_vec(center(anchors_[g]), center(a), p_.c, A(-1))));
        if (d < bd) {
          bd = d;
          bg = g;
        }
      }
      best_g[a] = bg;
      best_d[a] = bd;
    }
    stats_.center_dists += k * na;
    for (int64_t g = 0; g < na; ++g) best_d[anchors_[g]] = 0.0, best_g[anchors_[g]] = g;
    for (int64_t a = 0; a < k; ++a) anchor_insert(a, best_g[a], best_d[a]);
    for (auto& list : anchor_list_) std::sort(list.begin(), list.end());
  }

  void anchor_insert(int64_t a, int64_t g, double d) {
    anchor_of_.resize(std::max<size_t>(anchor_of_.size(), static_cast<size_t>(a) + 1), -1);
    anchor_of_[a] = g;
    auto& list = anchor_list_[g];
    const std::pair<double, int64_t> e{d, a};
    if (cells_ready_) list.insert(std::upper_bound(list.begin(), list.end(), e), e);
    else list.push_back(e);  // build_anchors sorts once
    const double r = radius2_[a] > A(0) ? std::sqrt(static_cast<double>(radius2_[a])) : 0.0;
    anchor_maxr_[g] = std::max(anchor_maxr_[g], r);
  }

  void tighten_anchor_radii() {
    for (size_t g = 0; g < anchor_list_.size(); ++g) {
      double m = 0.0;
      for (const auto& e : anchor_list_[g])
        if (radius2_[e.second] > A(0)) m = std::max(m, static_cast<double>(radius2_[e.second]));
      anchor_maxr_[g] = std::sqrt(m);
    }
  }

  struct Affected {
    int64_t cell;
    A dcc2;  // squared distance from the cell's center to the new center
  };

  // The cells that the new center `id` can change: every cell a with
  // d(a, new) < 2 r_a, found through the anchors; `from` (the cell of the
  // picked row, or -1) is always included. Squared center distances in the
  // kernel's arithmetic, as in the dense pass.
  void find_affected(int64_t id, int64_t from, std::vector<Affected>* out) {
    const A* ctr = center(id);
    const int64_t na = static_cast<int64_t>(anchors_.size());
    const double eps = geom_eps();
    const double tiny = sizeof(A) == 4 ? 1e-30 : 1e-300;
    out->clear();
    ++epoch_;
    if (stamp_.size() < static_cast<size_t>(num_centers())) stamp_.resize(static_cast<size_t>(num_centers()), 0);
    anchor_d2_.resize(static_cast<size_t>(na));
    for (int64_t g = 0; g < na; ++g) anchor_d2_[g] = center_dist2(center(anchors_[g]), ctr, A(-1));
    stats_.center_dists += na;
    for (int64_t g = 0; g < na; ++g) {
      const auto& list = anchor_list_[g];
      if (list.empty()) continue;
      const double dq = std::sqrt(static_cast<double>(anchor_d2_[g]));
      const double w = (2.0 * anchor_maxr_[g] * (1.0 + eps) + tiny + 2.0 * eps * dq) / (1.0 - eps);
      auto it = std::lower_bound(list.begin(), list.end(), std::pair<double, int64_t>{dq - w, -1});
      for (; it != list.end() && it->first <= dq + w; ++it) {
        const int64_t a = it->second;
        if (a == id) continue;
        const A r2 = radius2_[a];
        if (!(r2 > A(0)) && a != from) continue;
        const double r = r2 > A(0) ? std::sqrt(static_cast<double>(r2)) : 0.0;
        if (std::fabs(dq - it->first) - eps * (dq + it->first) >= 2.0 * r * (1.0 + eps) + tiny && a != from)
          continue;
        A dcc2;
        const A bound = PruneSlack<A>::value * r2;
        if (a == anchors_[g]) {
          dcc2 = anchor_d2_[g];
        } else {
          dcc2 = center_dist2(center(a), ctr, a == from ? A(-1) : bound);
          stats_.center_dists += 1;
        }
        if (dcc2 < bound || a == from) {
          stamp_[a] = epoch_;
          out->push_back(Affected{a, dcc2});
        }
      }
    }
    if (from >= 0 && stamp_[from] != epoch_) {
      out->push_back(Affected{from, center_dist2(center(from), ctr, A(-1))});
      stats_.center_dists += 1;
    }
  }

  // One unit of a cell step: rows [lo, hi) of the member list of a cell.
  struct Item {
    int64_t cell;
    int64_t lo, hi;
    A dcc2;
    A r2 = A(-1);      // largest running minimum among the rows that stay
    int64_t far = -1;  // its lowest row
    int64_t computed = 0;
    int64_t moved = 0;
    bool dropped = false;  // a row left the cell (moved or taken)
    // after compact_item: the rows that stay, compacted to [lo, lo + kept);
    // the moved ones (new running minimum, values) and their farthest
    int64_t kept = 0;
    std::vector<Member> moved_mem;
    std::vector<A> moved_vals;
    A mr2 = A(-1);
    int64_t mfar = -1;
  };

  // The parallel part of a cell step's combine, per work item (inline values
  // only): drop the gone rows, move the moved ones out to the item's buffers,
  // and compact the rest to the front of the item's range, in order. The
  // serial combine then only copies contiguous blocks.
  void compact_item(Item& it) {
    if (!it.dropped) {
      it.kept = it.hi - it.lo;
      return;
    }
    auto& mem = members_[it.cell];
    const size_t c = static_cast<size_t>(p_.c);
    A* vals = member_vals_[it.cell].data();
    int64_t w = it.lo;
    for (int64_t t = it.lo; t < it.hi; ++t) {
      const Member e = mem[t];
      if (e.mind == kGone) continue;
      if (e.mind == kMoved) {
        const A d = mind_[e.row];
        const int64_t i = e.row;
        it.moved_mem.push_back(Member{e.row, d});
        it.moved_vals.insert(it.moved_vals.end(), vals + t * c, vals + (t + 1) * c);
        if (it.mfar < 0 || d > it.mr2 || (d == it.mr2 && i < it.mfar)) {
          it.mr2 = d;
          it.mfar = i;
        }
        continue;
      }
      if (w != t) {
        mem[w] = e;
        std::copy(vals + t * c, vals + (t + 1) * c, vals + w * c);
      }
      ++w;
    }
    it.kept = w - it.lo;
  }

  // Marks in a member's running-minimum copy for the combine step: the row
  // leaves the cell (the picked row), or moves to the new center.
  static constexpr A kGone = A(-1);
  static constexpr A kMoved = A(-2);

  // Rows of a cell are scattered over the pool: reading them one after the
  // other waits on memory for each. pool_pass lists the rows that need a
  // distance (8 bytes per member read) and computes them with their first
  // cache lines prefetched a few rows ahead.
  static constexpr int kPrefetchAhead = 6;

  void prefetch_row(int64_t i) const {
    const char* p = reinterpret_cast<const char*>(x_ + i * p_.c);
    const int64_t bytes = std::min<int64_t>(p_.c * static_cast<int64_t>(sizeof(S)), 512);
    for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off);
  }

  // One work item of a parallel cell step. Only short rows get here (their
  // values are kept in the cells); longer rows take pool_pass.
  void run_item(Item& it, const A* ctr, int32_t id32, int64_t picked) {
    switch (p_.c) {  // the distance unrolled for this C
      case 1: return run_item_c<1>(it, ctr, id32, picked);
      case 2: return run_item_c<2>(it, ctr, id32, picked);
      case 3: return run_item_c<3>(it, ctr, id32, picked);
      case 4: return run_item_c<4>(it, ctr, id32, picked);
      case 5: return run_item_c<5>(it, ctr, id32, picked);
      case 6: return run_item_c<6>(it, ctr, id32, picked);
      case 7: return run_item_c<7>(it, ctr, id32, picked);
      case 8: return run_item_c<8>(it, ctr, id32, picked);
      default: return run_item_c<-1>(it, ctr, id32, picked);
    }
  }

  // kC > 0: inline values of kC columns; -1: inline values, any C.
  template <int kC>
  void run_item_c(Item& it, const A* ctr, int32_t id32, int64_t picked) {
    auto& mem = members_[it.cell];
    const A* vals = member_vals_[it.cell].data();
    const int64_t c = p_.c;
    for (int64_t t = it.lo; t < it.hi; ++t) {
      Member& e = mem[t];
      const A m = e.mind;
      const int64_t i = e.row;
      if (i == picked) {  // the row that became the new center leaves its cell
        e.mind = kGone;
        it.dropped = true;
        continue;
      }
      if (!can_skip_row(it.dcc2, m)) {
        ++it.computed;
        A d;
        if constexpr (kC > 0) d = sq_dist_small<kC, A>(vals + t * kC, ctr);
        else d = sq_dist_vec(vals + t * c, ctr, c, m);
        if (d < m) {
          mind_[i] = d;
          nearest_[i] = id32;
          e.mind = kMoved;
          ++it.moved;
          it.dropped = true;
          continue;
        }
      }
      if (it.far < 0 || m > it.r2 || (m == it.r2 && i < it.far)) {
        it.r2 = m;
        it.far = i;
      }
    }
  }

  // Rows per work item: big enough to amortise, small enough to spread one
  // huge cell (the first steps) over the threads.
  static constexpr int64_t kItemRows = 8192;
  // A step runs on several threads only when its rows outnumber this (a
  // parallel region costs tens of microseconds, more on a busy machine).
  static constexpr int64_t kParallelRows = 32768;

  StepResult cell_step(int64_t id, int64_t from, int64_t picked) {
    const A* ctr = center(id);
    const int32_t id32 = static_cast<int32_t>(id);
    members_.emplace_back();
    if (inline_values()) member_vals_.emplace_back();
    radius2_.resize(static_cast<size_t>(id) + 1, A(-1));
    radius2_[id] = A(-1);
    far_.resize(static_cast<size_t>(id) + 1, -1);
    far_[id] = -1;
    find_affected(id, from, &affected_);
    int64_t rows = 0;
    for (const Affected& af : affected_) rows += static_cast<int64_t>(members_[af.cell].size());
    if (static_cast<double>(rows) > leave_cells() * static_cast<double>(p_.n)) {
      // the cells do not pay here: a dense step, and dense steps until they do
      cells_ready_ = false;
      dense_mode_ = true;
      reach_mean_ = static_cast<double>(rows) / static_cast<double>(p_.n);
      stats_.cell_switches += 1;
      return dense_step(id);
    }
    if (!inline_values()) return finish_step(id, rows, pool_pass(id, picked));
    const int nt = rows >= kParallelRows ? team() : 1;
    if (nt == 1) return finish_step(id, rows, serial_pass(id, picked));
    stats_.parallel_steps += 1;
    items_.clear();
    for (const Affected& af : affected_) {
      const int64_t size = static_cast<int64_t>(members_[af.cell].size());
      for (int64_t lo = 0; lo < size || lo == 0; lo += kItemRows) {
        items_.emplace_back();
        Item& it = items_.back();
        it.cell = af.cell;
        it.lo = lo;
        it.hi = std::min(size, lo + kItemRows);
        it.dcc2 = af.dcc2;
        if (size == 0) break;
      }
    }
    const int64_t n_items = static_cast<int64_t>(items_.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t t = 0; t < n_items; ++t) {
      run_item(items_[t], ctr, id32, picked);
      compact_item(items_[t]);
    }
    // combine: per cell, join the items' compacted blocks (in order); the new
    // cell gets the items' moved rows (in the order of the cells visited;
    // cells are not kept sorted)
    auto& fresh = members_[id];
    auto& fresh_vals = member_vals_[id];
    const size_t c = static_cast<size_t>(p_.c);
    A new_r2 = A(-1);
    int64_t new_far = -1;
    int64_t computed = 0;
    size_t t = 0;
    while (t < items_.size()) {
      const int64_t a = items_[t].cell;
      auto& mem = members_[a];
      A* vals = member_vals_[a].data();
      A r2 = A(-1);
      int64_t far = -1;
      bool dropped = false;
      size_t w = 0;
      for (; t < items_.size() && items_[t].cell == a; ++t) {
        const Item& it = items_[t];
        computed += it.computed;
        dropped = dropped || it.dropped;
        if (it.far >= 0 && (far < 0 || better(it.r2, it.far, r2, far))) {
          r2 = it.r2;
          far = it.far;
        }
        if (static_cast<size_t>(it.lo) != w && it.kept > 0) {  // w < lo: a forward copy is safe
          std::copy(mem.begin() + it.lo, mem.begin() + it.lo + it.kept, mem.begin() + w);
          std::copy(vals + it.lo * c, vals + (it.lo + it.kept) * c, vals + w * c);
        }
        w += static_cast<size_t>(it.kept);
        fresh.insert(fresh.end(), it.moved_mem.begin(), it.moved_mem.end());
        fresh_vals.insert(fresh_vals.end(), it.moved_vals.begin(), it.moved_vals.end());
        if (it.mfar >= 0 && (new_far < 0 || better(it.mr2, it.mfar, new_r2, new_far))) {
          new_r2 = it.mr2;
          new_far = it.mfar;
        }
      }
      if (dropped) {
        mem.resize(w);
        member_vals_[a].resize(w * c);
      }
      radius2_[a] = r2;
      far_[a] = far;
      heap_fix(a);
    }
    radius2_[id] = new_r2;
    far_[id] = new_far;
    stats_.rows_computed += computed;
    return finish_step(id, rows, computed);
  }

  // The rest of a step once the cells are updated and radius2_/far_ of the
  // new cell are set: the heap, the anchor index, counters, page release.
  StepResult finish_step(int64_t id, int64_t rows, int64_t computed) {
    heap_push(id);
    // the new center joins the anchor index
    const int64_t na = static_cast<int64_t>(anchors_.size());
    if (na < max_anchors()) {
      anchors_.push_back(id);
      anchor_list_.emplace_back();
      anchor_maxr_.push_back(0.0);
      anchor_insert(id, na, 0.0);
    } else {
      int64_t g_best = 0;
      for (int64_t g = 1; g < na; ++g)
        if (anchor_d2_[g] < anchor_d2_[g_best]) g_best = g;
      anchor_insert(id, g_best, std::sqrt(static_cast<double>(anchor_d2_[g_best])));
    }
    if (++steps_since_tighten_ >= 64) {
      tighten_anchor_radii();
      steps_since_tighten_ = 0;
    }
    stats_.steps += 1;
    stats_.cell_steps += 1;
    stats_.cells_visited += static_cast<int64_t>(affected_.size());
    stats_.rows_visited += rows;
    if (p_.release_pages) {
      touched_bytes_ += computed * p_.c * static_cast<int64_t>(sizeof(S));
      if (touched_bytes_ > (int64_t(64) << 20)) {  // random rows: hand the pool's pages back now and then
        release_rows(0, p_.n);
        touched_bytes_ = 0;
      }
    }
    return heap_top();
  }

  // A step whose rows are read from the pool (C > kInlineValues): the rows
  // that need a distance, over all the cells visited, are listed and sorted
  // by row, so the pool is read forward as the dense pass reads it (its
  // rows are scattered over the cells); enough of them run on several
  // threads. Then each cell is compacted and the new cell gathered.
  static constexpr int64_t kParallelValues = int64_t(1) << 21;

  // Distances for todo_ptr_[j0, j1) (sorted by row), on nt threads in
  // contiguous ranges so each thread still reads the pool forward.
  void compute_sorted(int64_t j0, int64_t j1, const A* ctr, int32_t id32, int nt) {
#pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
      const int64_t tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
      const int64_t tid = 0, nth = 1;
#endif
      const int64_t lo = j0 + (j1 - j0) * tid / nth, hi = j0 + (j1 - j0) * (tid + 1) / nth;
      for (int64_t j = lo; j < std::min(hi, lo + kPrefetchAhead); ++j) prefetch_row(todo_ptr_[j]->row);
      for (int64_t j = lo; j < hi; ++j) {
        if (j + kPrefetchAhead < hi) prefetch_row(todo_ptr_[j + kPrefetchAhead]->row);
        Member& e = *todo_ptr_[j];
        const int64_t i = e.row;
        const A d = dist_row(i, ctr, e.mind);
        if (d < e.mind) {
          mind_[i] = d;
          nearest_[i] = id32;
          e.mind = kMoved;
        }
      }
    }
  }

  // After a pool-reading visit of cell a (members marked kGone / kMoved):
  // drop the gone rows, append the moved ones (with their new running
  // minimum) to fresh, compact the rest in place, and set the cell's radius,
  // farthest row and heap position; new_r2/new_far track the new cell's.
  void compact_cell(int64_t a, Member* fresh, int64_t* n_fresh, A* new_r2, int64_t* new_far) {
    auto& mem = members_[a];
    A r2 = A(-1);
    int64_t far = -1;
    size_t keep = 0;
    for (const Member e : mem) {
      const int64_t i = e.row;
      if (e.mind == kGone) continue;
      if (e.mind == kMoved) {
        const A d = mind_[i];
        fresh[(*n_fresh)++] = Member{e.row, d};
        if (*new_far < 0 || d > *new_r2 || (d == *new_r2 && i < *new_far)) {
          *new_r2 = d;
          *new_far = i;
        }
        continue;
      }
      if (far < 0 || e.mind > r2 || (e.mind == r2 && i < far)) {
        r2 = e.mind;
        far = i;
      }
      mem[keep++] = e;
    }
    mem.resize(keep);
    radius2_[a] = r2;
    far_[a] = far;
    heap_fix(a);
  }

  int64_t pool_pass(int64_t id, int64_t picked) {
    const A* ctr = center(id);
    const int32_t id32 = static_cast<int32_t>(id);
    todo_ptr_.clear();
    for (const Affected& af : affected_) {
      for (Member& e : members_[af.cell]) {
        if (static_cast<int64_t>(e.row) == picked) e.mind = kGone;
        else if (!can_skip_row(af.dcc2, e.mind)) todo_ptr_.push_back(&e);
      }
    }
    std::sort(todo_ptr_.begin(), todo_ptr_.end(), [](const Member* a, const Member* b) { return a->row < b->row; });
    const int64_t count = static_cast<int64_t>(todo_ptr_.size());
    const int nt = count * p_.c >= kParallelValues ? team() : 1;
    if (nt > 1) stats_.parallel_steps += 1;
    // File-backed pools: the sweep goes forward in row tiles, each tile's
    // pages handed back once read (resident memory stays near a tile).
    int64_t j0 = 0;
    while (j0 < count) {
      int64_t j1 = count;
      if (p_.release_pages) {
        const int64_t tile_end = (todo_ptr_[j0]->row / tile_ + 1) * tile_;
        j1 = std::lower_bound(todo_ptr_.begin() + j0, todo_ptr_.end(), tile_end,
                              [](const Member* m, int64_t r) { return static_cast<int64_t>(m->row) < r; }) -
             todo_ptr_.begin();
      }
      compute_sorted(j0, j1, ctr, id32, (j1 - j0) * p_.c >= kParallelValues ? nt : 1);
      if (p_.release_pages) release_rows(todo_ptr_[j0]->row, static_cast<int64_t>(todo_ptr_[j1 - 1]->row) + 1);
      j0 = j1;
    }
    int64_t rows = 0;
    for (const Affected& af : affected_) rows += static_cast<int64_t>(members_[af.cell].size());
    if (static_cast<int64_t>(scratch_members_.size()) < rows) scratch_members_.resize(static_cast<size_t>(rows));
    Member* fresh = scratch_members_.data();
    int64_t n_fresh = 0;
    A new_r2 = A(-1);
    int64_t new_far = -1;
    for (const Affected& af : affected_) compact_cell(af.cell, fresh, &n_fresh, &new_r2, &new_far);
    members_[id].assign(fresh, fresh + n_fresh);
    radius2_[id] = new_r2;
    far_[id] = new_far;
    stats_.rows_computed += count;
    return count;
  }

  // A step on one thread over short rows (values kept in the cells; longer
  // rows take pool_pass): each affected cell is read once, kept rows are
  // compacted in place and moved rows appended to the new cell as it goes.
  // Returns the rows computed (radius2_/far_ of every cell set).
  int64_t serial_pass(int64_t id, int64_t picked) {
    switch (p_.c) {
      case 1: return serial_pass_c<1>(id, picked);
      case 2: return serial_pass_c<2>(id, picked);
      case 3: return serial_pass_c<3>(id, picked);
      case 4: return serial_pass_c<4>(id, picked);
      case 5: return serial_pass_c<5>(id, picked);
      case 6: return serial_pass_c<6>(id, picked);
      case 7: return serial_pass_c<7>(id, picked);
      case 8: return serial_pass_c<8>(id, picked);
      default: return serial_pass_c<-1>(id, picked);
    }
  }

  template <int kC>
  int64_t serial_pass_c(int64_t id, int64_t picked) {
    const A* ctr = center(id);
    const int32_t id32 = static_cast<int32_t>(id);
    const int64_t c = p_.c;
    // moved rows gather in reused buffers, copied once into the new cell
    int64_t rows = 0;
    for (const Affected& af : affected_) rows += static_cast<int64_t>(members_[af.cell].size());
    if (static_cast<int64_t>(scratch_members_.size()) < rows) scratch_members_.resize(static_cast<size_t>(rows));
    if (static_cast<int64_t>(scratch_vals_.size()) < rows * c)
      scratch_vals_.resize(static_cast<size_t>(rows * c));
    Member* fresh = scratch_members_.data();
    A* fresh_vals = scratch_vals_.data();
    int64_t n_fresh = 0;
    A new_r2 = A(-1);
    int64_t new_far = -1;
    int64_t computed = 0;
    for (const Affected& af : affected_) {
      const int64_t a = af.cell;
      auto& mem = members_[a];
      A* vals = member_vals_[a].data();
      const int64_t size = static_cast<int64_t>(mem.size());
      A r2 = A(-1);
      int64_t far = -1;
      int64_t keep = 0;
      for (int64_t t = 0; t < size; ++t) {
        const Member e = mem[t];
        const int64_t i = e.row;
        if (i == picked) continue;  // the new center leaves its cell
        A m = e.mind;
        if (!can_skip_row(af.dcc2, m)) {
          ++computed;
          A d;
          if constexpr (kC > 0) d = sq_dist_small<kC, A>(vals + t * kC, ctr);
          else d = sq_dist_vec(vals + t * c, ctr, c, m);
          if (d < m) {  // moves to the new cell
            mind_[i] = d;
            nearest_[i] = id32;
            fresh[n_fresh] = Member{e.row, d};
            std::copy(vals + t * c, vals + (t + 1) * c, fresh_vals + n_fresh * c);
            ++n_fresh;
            if (new_far < 0 || d > new_r2 || (d == new_r2 && i < new_far)) {
              new_r2 = d;
              new_far = i;
            }
            continue;
          }
        }
        if (far < 0 || m > r2 || (m == r2 && i < far)) {
          r2 = m;
          far = i;
        }
        if (keep != t) {
          mem[keep] = e;
          std::copy(vals + t * c, vals + (t + 1) * c, vals + keep * c);
        }
        ++keep;
      }
      mem.resize(static_cast<size_t>(keep));
      member_vals_[a].resize(static_cast<size_t>(keep * c));
      radius2_[a] = r2;
      far_[a] = far;
      heap_fix(a);
    }
    members_[id].assign(fresh, fresh + n_fresh);
    member_vals_[id].assign(fresh_vals, fresh_vals + n_fresh * c);
    radius2_[id] = new_r2;
    far_[id] = new_far;
    stats_.rows_computed += computed;
    return computed;
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

  const A* center(int64_t a) const { return centers_.data() + a * p_.c; }

  SoftmaxRow<A> softmax_of(int64_t i) const { return p_.from_logits ? sm_[i] : sm_[0]; }

  void init_softmax() {
    const int64_t n = p_.n, c = p_.c;
    sm_.resize(n);
#pragma omp parallel num_threads(team())
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
#pragma omp parallel num_threads(team())
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
#pragma omp parallel num_threads(team())
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
    // one slot per possible thread (the team may be smaller: adaptive)
    std::vector<std::vector<A>> local(threads_, std::vector<A>(static_cast<size_t>(k), A(0)));
#pragma omp parallel num_threads(team())
    {
      std::vector<A>& r = local[thread_id()];
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

  // The fused dense pass for new center `id` (every row).
  StepResult dense_step(int64_t id) {
    stats_.dense_steps += 1;
    return update(id);
  }

  StepResult update(int64_t id) {
    const int64_t n = p_.n, k = num_centers();
    const A* ctr = center(id);
    const bool prune = p_.prune;
    if (prune) {
      // Stage 1: center-to-center distances of active centers. A cluster whose
      // bound already fails is skipped whole (dcc2 = +inf).
      dcc2_.assign(k, kInf);
      int64_t computed = 0;
#pragma omp parallel for schedule(dynamic, 64) num_threads(team()) reduction(+ : computed)
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
    int64_t computed_rows = 0, reach = 0;
#pragma omp parallel num_threads(team()) reduction(+ : computed_rows, reach)
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
          if (prune && (a < 0 || dcc2_[a] != kInf)) ++reach;
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
    if (team() > 1 && n * p_.c >= kMinParallelValues) stats_.parallel_steps += 1;
    stats_.rows_computed += computed_rows;
    stats_.rows_visited += n;
    // Old centers keep their radius as an upper bound (their rows only move
    // away or come closer); tighten the bounds now and then.
    if (prune && ++steps_since_refresh_ >= 16) refresh_radii();
    // the cost model: back to cell steps once they would visit few rows
    // (rows of centers not skipped whole; the first center reaches them all)
    if (prune) {
      const double f = k == 1 ? 1.0 : static_cast<double>(reach) / static_cast<double>(n);
      reach_mean_ = k == 1 ? 1.0 : reach_mean_ + (f - reach_mean_) / 8.0;
      const bool dense = reach_mean_ >= enter_cells();
      if (dense_mode_ && !dense) stats_.cell_switches += 1;
      dense_mode_ = dense;
    }
    return combine(best);
  }

  // Threads for the next parallel region (adaptive, see ThreadPolicy).
  int team() const { return policy_.now(); }

  const S* x_;
  KCenterParams p_;
  mutable ThreadPolicy policy_;
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
  // cells (see the file comment)
  bool cells_ready_ = false;
  // dense steps chosen by the cost model (see use_cells)
  bool dense_mode_ = false;
  double reach_mean_ = 1.0;  // running mean of the rows a cell step would visit (fraction)
  double cell_visit_limit_ = -1.0;
  // A cell's members with a copy of their running minimum, so that a visit
  // reads its cell sequentially (8 bytes a row for float32) and touches the
  // pool and mind_ only for the rows it computes. mind_ stays up to date too.
  std::vector<std::vector<Member>> members_;
  // Short rows (c <= kInlineValues) also keep their values in the cell, in
  // member order: a visit then reads only its cell (no random access to the
  // pool; the pool's rows are scattered over the cells). Same values as
  // row_value, so the same distances.
  static constexpr int64_t kInlineValues = 16;
  bool inline_values() const { return p_.c <= kInlineValues; }
  std::vector<std::vector<A>> member_vals_;
  std::vector<A> no_vals_;
  std::vector<Member> scratch_members_;
  std::vector<Member*> todo_ptr_;
  std::vector<A> scratch_vals_;
  std::vector<int64_t> far_;
  std::vector<HeapNode> heap_;
  std::vector<int64_t> heap_pos_;
  std::vector<int64_t> anchors_;
  std::vector<std::vector<std::pair<double, int64_t>>> anchor_list_;
  std::vector<double> anchor_maxr_;
  std::vector<int64_t> anchor_of_;
  std::vector<A> anchor_d2_;
  std::vector<uint64_t> stamp_;
  uint64_t epoch_ = 0;
  std::vector<Affected> affected_;
  std::vector<Item> items_;
  int steps_since_tighten_ = 0;
  int64_t touched_bytes_ = 0;
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
