// CPU k-center greedy: the state that orchestrates the passes.
//
// The units, each in its own file under csrc/cpu/:
//   thread_policy  the load-adaptive thread count (also behind pcoreset._threads);
//   distance.h     squared distances in the lane order of row_math.h;
//   pool.h         the pool, each row's running minimum and nearest center, the centers;
//   dense_pass.h   passes over every row (seeding, mean, the fused dense step);
//   cells.h        steps that visit only the Voronoi cells near the new center,
//                  with cell_heap.h (the next pick without a scan) and anchors.h
//                  (the cells near a center without measuring every center);
//   cost_model.h   the per-row costs of both kinds of step, fitted from their
//                  timings;
//   projection.h   a lower bound of a row's distance to a new center from a
//                  low-dimensional projection kept in RAM (long rows).
// This file chooses between the dense step and the cell step (the cost model
// below) and implements the KCenterState interface of kcenter.h. It is
// compiled once per instruction set (baseline x86-64, and AVX2 + F16C where
// the compiler can target it); cpu/dispatch.cpp picks one at run time.
//
// Rows that were labeled, picked or excluded are "taken" (a negative running
// minimum): never eligible, and never in a cell.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <stdexcept>

#include "cells.h"
#include "cost_model.h"
#include "dense_pass.h"
#include "pool.h"

namespace pcoreset {
namespace PCS_ISA {
namespace {

template <typename S>
class CpuState final : public KCenterState {
  using A = typename AccumOf<S>::type;

 public:
  CpuState(const S* x, const KCenterParams& p) : pool_(x, p), dense_(pool_), cells_(pool_), proj_(pool_) {
    // PCORESET_CELL_VISIT=f overrides the switch point (the fraction of
    // rows a cell step may visit; 0 = dense steps only, 1 = cell steps
    // only): for measuring the cost model, and for tests that force a path.
    if (const char* f = std::getenv("PCORESET_CELL_VISIT")) {
      char* end = nullptr;
      const double v = std::strtod(f, &end);
      if (end != f && v >= 0.0) cell_visit_limit_ = v;
    }
    cost_.init(pool_.p.n, pool_.p.c, pool_.threads);
    // PCORESET_PROJECTION=0 / 1: never / always use the projection bound
    // (once set_projection gave a basis): for tests and benchmarks.
    if (const char* f = std::getenv("PCORESET_PROJECTION")) {
      if (f[0] == '0') proj_force_ = 0;
      if (f[0] == '1') proj_force_ = 1;
    }
    // PCORESET_FAIL_CELL_STEP=k (tests only): the k-th cell step of this
    // state raises std::bad_alloc half way, as an allocation failing there
    // would (see finish_unfinished).
    if (const char* f = std::getenv("PCORESET_FAIL_CELL_STEP")) cells_.fail_at(std::atoll(f));
  }

  void set_projection(const double* p, int64_t d) override {
    if (!pool_.p.prune) return;  // prune off: every row is computed
    proj_.set_basis(p, d);
    proj_rate_ = 1.0;
    proj_wait_ = 0;
  }

  void seed_rows(const int64_t* rows, int64_t count) override {
    finish_unfinished();
    reset_cells();
    dense_.assign_nearest(add_row_centers(rows, count));
  }

  void seed_rows_with_candidates(const int64_t* rows, int64_t count, const int64_t* cand,
                                 int64_t k) override {
    finish_unfinished();
    reset_cells();
    dense_.refine_candidates(add_row_centers(rows, count), count, cand, k);
  }

  void seed_vectors_with_candidates(const double* vecs, int64_t count, const int64_t* cand,
                                    int64_t k) override {
    finish_unfinished();
    reset_cells();
    const int64_t first = num_centers();
    for (int64_t a = 0; a < count; ++a) pool_.append_center(vecs + a * pool_.p.c);
    dense_.refine_candidates(first, count, cand, k);
  }

  void seed_vectors(const double* vecs, int64_t count) override {
    finish_unfinished();
    reset_cells();
    const int64_t first = num_centers();
    for (int64_t a = 0; a < count; ++a) pool_.append_center(vecs + a * pool_.p.c);
    dense_.assign_nearest(first);
  }

  void row_vector(int64_t i, double* out) const override {
    std::vector<A> v(static_cast<size_t>(pool_.p.c));
    pool_.row_values_into(i, v.data());
    for (int64_t j = 0; j < pool_.p.c; ++j) out[j] = static_cast<double>(v[j]);
  }

  void rows_values(const int64_t* rows, int64_t count, void* out) const override {
    dense_.rows_values(rows, count, static_cast<A*>(out));
  }

  int accum_bytes() const override { return static_cast<int>(sizeof(A)); }

  void mean_vector(double* out) const override { dense_.mean_vector(out); }

  StepResult farthest_from(const double* vec) override {
    finish_unfinished();
    return dense_.farthest_from(vec);
  }

  StepResult current_best() override {
    finish_unfinished();
    if (use_cells()) {
      ensure_cells();
      return cells_.top();
    }
    return dense_.current_best();
  }

  void take(int64_t i) override {
    finish_unfinished();
    if (!is_eligible(pool_.mind[i])) return;
    if (cells_ready_) cells_.remove(i);
    pool_.mind[i] = Pool<S>::kTaken;
    ++pool_.taken;
  }

  void exclude(const int64_t* rows, int64_t count) override {
    for (int64_t k = 0; k < count; ++k) take(rows[k]);
  }

  StepResult push_center(const double* vec) override {
    finish_unfinished();
    const bool cells = use_cells();
    if (cells) ensure_cells();
    pool_.append_center(vec);  // may raise: nothing has changed yet
    const int64_t id = num_centers() - 1;
    return guarded(id, -1, [&] {
      choose_projection();
      return cells ? cell_step(id, -1, -1) : dense_step(id);
    });
  }

  StepResult push_row(int64_t i) override {
    finish_unfinished();
    const bool cells = use_cells();
    if (cells) ensure_cells();
    const int64_t from = is_eligible(pool_.mind[i]) ? pool_.nearest[i] : -1;
    const int64_t id = pool_.append_row_center(i);  // may raise: nothing has changed yet
    if (is_eligible(pool_.mind[i])) ++pool_.taken;
    pool_.mind[i] = Pool<S>::kTaken;
    return guarded(id, i, [&] {
      choose_projection();
      if (!cells) {
        pool_.nearest[i] = static_cast<int32_t>(id);
        return dense_step(id);
      }
      // the cell step drops row i from its old cell (it is always visited)
      const StepResult r = cell_step(id, from, i);
      pool_.nearest[i] = static_cast<int32_t>(id);
      return r;
    });
  }

  int64_t num_centers() const override { return pool_.num_centers(); }

  void export_state(double* mind, int64_t* nearest, double* centers) const override {
    // completing a step that raised leaves the state what it already claims
    // to be (its center is a center), so this stays a read
    const_cast<CpuState*>(this)->finish_unfinished();
    for (int64_t i = 0; i < pool_.p.n; ++i) {
      mind[i] = is_eligible(pool_.mind[i]) ? static_cast<double>(pool_.mind[i]) : -1.0;
      nearest[i] = pool_.nearest[i];
    }
    for (size_t j = 0; j < pool_.centers.size(); ++j) centers[j] = static_cast<double>(pool_.centers[j]);
  }

  void load_state(const double* mind, const int64_t* nearest, const double* centers,
                  int64_t n_centers) override {
    for (int64_t i = 0; i < pool_.p.n; ++i) {
      pool_.mind[i] = mind[i] < 0.0 ? Pool<S>::kTaken : static_cast<A>(mind[i]);
      pool_.nearest[i] = static_cast<int32_t>(nearest[i]);
    }
    pool_.centers.assign(centers, centers + n_centers * pool_.p.c);
    pool_.taken = 0;
    for (int64_t i = 0; i < pool_.p.n; ++i) pool_.taken += is_eligible(pool_.mind[i]) ? 0 : 1;
    pool_.radius2.assign(static_cast<size_t>(n_centers), A(0));
    unfinished_ = unfinished_row_ = -1;  // the state loaded replaces the step that raised
    cells_ready_ = false;
    cells_.forget_centers();
    proj_.forget_centers();
    dense_.refresh_radii();
  }

  bool run(int64_t budget, std::vector<int64_t>* picks, std::vector<double>* radii2,
           const ProgressFn& progress, double stop_dist2) override {
    using clock = std::chrono::steady_clock;
    auto last_report = clock::now();
    StepResult best;
    if (budget <= 0) return true;
    if (num_centers() == 0) {
      // No labeled rows: start from the row farthest from the pool mean.
      std::vector<double> mean(pool_.p.c);
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
      steps_left_ = budget - 1 - t;
      best = push_row(best.row);
      steps_left_ = 0;
      if (progress && clock::now() - last_report > std::chrono::milliseconds(100)) {
        last_report = clock::now();
        if (!progress(t + 1)) return false;
      }
    }
    if (progress && !progress(static_cast<int64_t>(picks->size()))) return false;
    return true;
  }

  void min_dist2(double* out) const override {
    const_cast<CpuState*>(this)->finish_unfinished();
    for (int64_t i = 0; i < pool_.p.n; ++i) out[i] = static_cast<double>(std::max(pool_.mind[i], A(0)));
  }
  const KCenterStats& stats() const override { return pool_.stats; }
  const KCenterParams& params() const override { return pool_.p; }

 private:
  void reset_cells() {
    cells_ready_ = false;
    dense_mode_ = false;
  }

  // A step runs once its center has joined. If it raises half way (an
  // allocation failing: std::bad_alloc reaches Python as MemoryError),
  // some rows have moved to the new center and the cells are half updated;
  // the run's caller (pcoreset.Selector) counts the center as one whose
  // step is done. So the step is remembered, and finished before the state
  // is next read or changed (finish_unfinished).
  template <typename Step>
  StepResult guarded(int64_t id, int64_t row, Step&& step) {
    unfinished_ = id;
    unfinished_row_ = row;
    try {
      const StepResult r = step();
      unfinished_ = unfinished_row_ = -1;
      return r;
    } catch (...) {
      cells_ready_ = false;  // nothing here allocates: the cells are rebuilt when next used
      cells_.forget_centers();
      throw;
    }
  }

  // Finish a step that raised: the cells and anchors are rebuilt from the
  // running minimum when next used; the radii are recomputed from it; and
  // the center's pass over every row brings each row to where the whole
  // step leaves it (a row that already moved computes the same distance
  // and stays, as the cell and dense steps give the same bits). If this
  // raises too, it is tried again next time.
  void finish_unfinished() {
    if (unfinished_ < 0) return;
    cells_ready_ = false;
    cells_.forget_centers();
    if (unfinished_row_ >= 0) pool_.nearest[unfinished_row_] = static_cast<int32_t>(unfinished_);
    dense_.refresh_radii();
    int64_t reach = 0;
    dense_.step(unfinished_, &reach, nullptr);
    dense_.refresh_radii();
    unfinished_ = unfinished_row_ = -1;
  }

  int64_t add_row_centers(const int64_t* rows, int64_t count) {
    const int64_t first = num_centers();
    pool_.centers.reserve(static_cast<size_t>((first + count) * pool_.p.c));
    for (int64_t a = 0; a < count; ++a) {
      const int64_t i = rows[a];
      const int64_t id = pool_.append_row_center(i);
      if (is_eligible(pool_.mind[i])) ++pool_.taken;
      pool_.mind[i] = Pool<S>::kTaken;
      pool_.nearest[i] = static_cast<int32_t>(id);
    }
    return first;
  }

  // ------------------------------------------------------------ cost model

  // Cell steps need pruning and at least one center (the first center's step
  // is a dense pass: every row moves).
  bool use_cells() const { return pool_.p.prune && num_centers() > 0 && !dense_mode_; }

  // The cost model between the two kinds of step (cost_model.h): each
  // kind's per-row costs are fitted from its own recent steps' timings, and
  // a step runs as the kind predicted cheaper for the rows a cell step would
  // visit (a running mean over about 8 steps, so one wide step does not
  // drop the cells). Dense steps count those rows too (the rows of centers
  // not skipped whole). Leaving the cells costs a rebuild, O(N), when they
  // pay again: cell steps are entered only when they win by more than the
  // rebuild spread over kAmortise steps, and each kind must win by a margin
  // (kHysteresis) before the switch, so the switch stays rare.
  // Short rows (C <= kInlineValues) are the exception: their cells hold the
  // values too, so a cell step reads one contiguous block per cell and runs
  // unrolled distances, and on 3-D pools it was as fast as or faster than the
  // dense pass at every visited fraction (one thread and two, from the first
  // steps without labeled rows on): they always use cell steps.
  //
  // A rebuild costs about one dense step, so cells that are left again after
  // a few steps do not pay for it: when a stretch of cell steps lasted fewer
  // than kShortCellRun steps, the dense steps required before the next build
  // double (from 8, up to kMaxHold); a stretch of kLongCellRun steps resets
  // the wait.
  //
  // PCORESET_CELL_VISIT=f replaces the model by a fixed rule: a cell step may
  // visit at most the fraction f of the rows (0 = dense steps only, >= 1 =
  // cell steps only), and dense steps go back to cells under f / 2.
  static constexpr int64_t kShortCellRun = 16;
  static constexpr int64_t kLongCellRun = 64;
  static constexpr int64_t kMaxHold = 4096;
  static constexpr double kHysteresis = 1.15;
  static constexpr double kAmortise = 32.0;
  using Clock = std::chrono::steady_clock;
  static double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }

  bool cells_always() const {
    return cell_visit_limit_ >= 1.0 || (cell_visit_limit_ < 0 && cells_.inline_values());
  }

  // After a cell step's first half reached `rows`: leave the cells?
  bool leave_cells(int64_t rows) const {
    const double n = static_cast<double>(pool_.p.n);
    if (cells_always()) return false;
    if (cell_visit_limit_ >= 0) return static_cast<double>(rows) > cell_visit_limit_ * n;
    const int team = pool_.team();
    const double r = reach_mean_ * n;
    return cost_.cell_cost(team, r) > kHysteresis * cost_.dense_cost(team, r);
  }

  // After a dense step: go back to cell steps?
  bool enter_cells() const {
    if (cells_always()) return true;
    if (cell_visit_limit_ >= 0) return reach_mean_ < cell_visit_limit_ / 2;
    const int team = pool_.team();
    const double r = reach_mean_ * static_cast<double>(pool_.p.n);
    return kHysteresis * (cost_.cell_cost(team, r) + cost_.build_cost(team) / kAmortise) <
           cost_.dense_cost(team, r);
  }

  // The projection bound (rows of at least kProjectionMinC values: at C = 100 the
  // checks cost more than the cell steps' early-exit distances they save,
  // measured; any C when
  // forced; the basis is computed from a sample of rows unless
  // set_projection gave one), per step: used while it rejects enough of the
  // rows it checks to pay for reading its d + 1 floats per row instead of
  // the row's C values (a rejected row saves C * sizeof(S) bytes, a check
  // costs 4d + 4): measured each step it runs, as a running mean; when it
  // does not pay, it is tried again after kProjWait steps (pools change as
  // centers come). The rows are projected at the first step that uses it.
  //
  // Before projecting every row, the model looks ahead on the sample of
  // rows the basis came from: it projects them (timing it: the pass would
  // cost N times that) and measures which fraction of them that this step
  // would compute the bound rules out. The pass is run only when that
  // fraction of the rows the rest of the run is expected to compute (the
  // running mean of rows computed per step times the steps left in run's
  // budget), at the measured cost of a computed row, saves kProjPayback
  // times the pass; else the look ahead is repeated kProjWait steps later
  // (rows come closer to their centers as the run goes on). The basis
  // itself (subspace iteration in double on up to a thousand rows) is not
  // computed when it would take more multiply-adds than every row the rest
  // of the run is expected to compute: the look ahead could not pay for it
  // (the start's pivots, 64 picks over 1,000 centers of 1,000 values, spent
  // 0.13 s in the basis and 0.01 s in their steps).
  static constexpr int64_t kProjWait = 32;
  static constexpr double kProjPayback = 2.0;
  int64_t projection_dims() const {
    return proj_.has_basis() ? proj_.dims() : pcoreset::projection_dims(pool_.p.c);
  }
  bool projection_pays_off(int64_t id) {
    const double n = static_cast<double>(pool_.p.n);
    const double ahead = computed_mean_ * static_cast<double>(steps_left_);
    if (ahead < n) return false;  // the pass alone reads every row
    if (!proj_.has_basis()) {
      if (proj_.basis_work(projection_dims()) > ahead * static_cast<double>(pool_.p.c)) return false;
      proj_.compute_basis(projection_dims());
    }
    const double rejected = proj_.sample_rejection(id);
    if (!(rejected > 0.0)) return false;
    const double row = cost_.computed_row_cost(pool_.team(), dense_mode_);
    return rejected * ahead * row >= kProjPayback * n * proj_.sample_seconds_per_row();
  }
  void choose_projection() {
    proj_now_ = false;
    computed0_ = pool_.stats.rows_computed;
    if (!pool_.p.prune || proj_force_ == 0 || num_centers() < 2) return;
    if (proj_force_ != 1 && !proj_.has_basis() && pool_.p.c < kProjectionMinC) return;
    if (proj_force_ == 1) {
      proj_now_ = true;
    } else if (!proj_.rows_ready()) {
      if (proj_wait_ == 0 || ++proj_wait_ > kProjWait) {
        proj_now_ = projection_pays_off(num_centers() - 1);
        proj_wait_ = proj_now_ ? 0 : 1;
      }
    } else {
      const double need = 1.5 * static_cast<double>(proj_.bytes_per_row()) /
                          static_cast<double>(pool_.p.c * static_cast<int64_t>(sizeof(S)));
      if (proj_rate_ >= need) proj_now_ = true;
      else if (++proj_wait_ >= kProjWait) proj_now_ = true;  // try again
    }
    if (!proj_now_) return;
    if (!proj_.has_basis()) proj_.compute_basis(projection_dims());
    if (!proj_.rows_ready()) proj_.project_rows();
    proj_.ensure_centers(num_centers());
    proj_checked0_ = pool_.stats.proj_checked;
    proj_rejected0_ = pool_.stats.proj_rejected;
  }
  const Projection<S>* step_projection() const { return proj_now_ ? &proj_ : nullptr; }
  void projection_done() {
    const double computed = static_cast<double>(pool_.stats.rows_computed - computed0_);
    computed_mean_ = steps_seen_++ == 0 ? computed : computed_mean_ + (computed - computed_mean_) / 8.0;
    if (!proj_now_) return;
    const int64_t checked = pool_.stats.proj_checked - proj_checked0_;
    const int64_t rejected = pool_.stats.proj_rejected - proj_rejected0_;
    if (checked <= 0) return;
    const double r = static_cast<double>(rejected) / static_cast<double>(checked);
    proj_rate_ = proj_wait_ >= kProjWait ? r : proj_rate_ + (r - proj_rate_) / 4.0;
    proj_wait_ = 0;
  }

  void ensure_cells() {
    if (cells_ready_) return;
    const auto t0 = Clock::now();
    cells_.build();
    cost_.build_done(seconds_since(t0));
    cells_ready_ = true;
    cell_run_ = 0;
  }

  StepResult cell_step(int64_t id, int64_t from, int64_t picked) {
    const auto t0 = Clock::now();
    const int team = pool_.team();
    const int64_t computed0 = pool_.stats.rows_computed;
    const int64_t rows = cells_.begin_step(id, from, picked);
    const double f = static_cast<double>(rows) / static_cast<double>(pool_.p.n);
    reach_mean_ = cell_run_ == 0 ? f : reach_mean_ + (f - reach_mean_) / 8.0;
    if (leave_cells(rows)) {
      // the cells do not pay here: a dense step, and dense steps until they do
      cells_ready_ = false;
      dense_mode_ = true;
      pool_.stats.cell_switches += 1;
      if (cell_run_ < kShortCellRun) hold_ = std::min(kMaxHold, std::max<int64_t>(8, 2 * hold_));
      else if (cell_run_ >= kLongCellRun) hold_ = 0;
      dense_run_ = 0;
      return dense_step(id);
    }
    ++cell_run_;
    pool_.stats.rows_eligible += pool_.p.n - pool_.taken;
    pool_.stats.rows_in_reach += rows;
    cells_.use_projection(step_projection());
    const StepResult r = cells_.finish_step(id, rows);
    projection_done();
    cost_.cell_done(team, rows, pool_.stats.rows_computed - computed0, seconds_since(t0));
    return r;
  }

  StepResult dense_step(int64_t id) {
    const auto t0 = Clock::now();
    const int team = pool_.team();
    const int64_t computed0 = pool_.stats.rows_computed;
    const int64_t k = num_centers(), n = pool_.p.n;
    int64_t reach = 0;
    const StepResult r = dense_.step(id, &reach, step_projection());
    projection_done();
    pool_.stats.rows_eligible += n - pool_.taken;
    pool_.stats.rows_in_reach += reach;
    // back to cell steps once they would pay (rows of centers not skipped
    // whole; the first center reaches them all)
    if (pool_.p.prune) {
      cost_.dense_done(team, reach, pool_.stats.rows_computed - computed0, seconds_since(t0));
      const double f = k == 1 ? 1.0 : static_cast<double>(reach) / static_cast<double>(n);
      reach_mean_ = k == 1 ? 1.0 : reach_mean_ + (f - reach_mean_) / 8.0;
      const bool dense = !enter_cells() || ++dense_run_ <= hold_;
      if (dense_mode_ && !dense) pool_.stats.cell_switches += 1;
      dense_mode_ = dense;
    }
    return r;
  }

  Pool<S> pool_;
  DensePass<S> dense_;
  CellIndex<S> cells_;
  StepCostModel cost_;
  Projection<S> proj_;
  int proj_force_ = -1;       // PCORESET_PROJECTION: -1 the cost model, 0 never, 1 always
  bool proj_now_ = false;     // this step uses the projection bound
  double proj_rate_ = 1.0;    // running mean of the rows it rejects / checks
  int64_t proj_wait_ = 0;     // steps since it last ran (while it does not pay)
  int64_t proj_checked0_ = 0, proj_rejected0_ = 0, computed0_ = 0;
  double computed_mean_ = 0.0;  // rows computed per step, running mean
  int64_t steps_seen_ = 0;
  int64_t steps_left_ = 0;      // update steps left in the current run (0 outside run)
  bool cells_ready_ = false;
  bool dense_mode_ = false;      // dense steps chosen by the cost model (see use_cells)
  double reach_mean_ = 1.0;      // running mean of the rows a cell step would visit (fraction)
  double cell_visit_limit_ = -1.0;
  int64_t cell_run_ = 0;   // cell steps since the cells were last built
  int64_t dense_run_ = 0;  // dense steps since the cells were left
  int64_t hold_ = 0;       // dense steps required before the cells are built again
  int64_t unfinished_ = -1;      // the center whose step raised, to finish (see guarded)
  int64_t unfinished_row_ = -1;  // the row it was picked as, or -1
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
