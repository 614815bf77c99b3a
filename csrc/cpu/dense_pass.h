// Passes over every row of the pool: the seeding passes (exact nearest
// center among new centers, or among candidates found elsewhere), the pool
// mean and the row farthest from it, the radii, and the fused update +
// argmax step that the kernel runs when no cell index exists (the first
// center, prune off, or when the cost model says cell visits do not pay).
//
// The step, with the new center n:
//   1. (prune on) for every active center a (one whose rows are not all at
//      distance 0): dcc2[a] = d^2(a, n), stopping early once it exceeds the
//      bound under which no row of a can move (then dcc2[a] = +inf: the
//      whole cluster is skipped without reading its rows);
//   2. for every row i: skip it when can_skip_row(dcc2[nearest[i]], mind[i])
//      (8 bytes read instead of C values), or (long rows, when the cost
//      model uses it) when the projection bound of projection.h proves it
//      unchanged (d + 1 floats read); else compute d^2(i, n) with an early
//      exit at mind[i], update mind/nearest, and fold (mind[i], i) into the
//      thread's argmax.
// Compiled per instruction set (included by kcenter_cpu.cpp only).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "pool.h"
#include "projection.h"

namespace pcoreset {
namespace PCS_ISA {
namespace {

template <typename S>
class DensePass {
  using A = typename AccumOf<S>::type;
  using P = Pool<S>;

 public:
  explicit DensePass(P& pool) : pool_(pool) {}

  // Rows as the kernel sees them, row-major count x c into out.
  void rows_values(const int64_t* rows, int64_t count, A* out) const {
    const int64_t c = pool_.p.c;
#pragma omp parallel for schedule(static) \
    num_threads(count * c >= ThreadPolicy::kMinParallelValues ? pool_.team() : 1)
    for (int64_t k = 0; k < count; ++k) pool_.row_values_into(rows[k], out + k * c);
  }

  void mean_vector(double* out) const {
    // Fixed blocks summed in order: the same bits whatever the thread count.
    const P& q = pool_;
    const int64_t c = q.p.c, n = q.p.n;
    constexpr int64_t kBlock = 4096;
    const int64_t nblocks = (n + kBlock - 1) / kBlock;
    std::vector<double> partial(static_cast<size_t>(nblocks * c), 0.0);
    const int64_t tile_blocks = std::max<int64_t>(1, q.tile / kBlock);
#pragma omp parallel num_threads(q.team())
    for (int64_t b0 = 0; b0 < nblocks; b0 += tile_blocks) {
      const int64_t b1 = std::min(nblocks, b0 + tile_blocks);
#pragma omp for schedule(static)
      for (int64_t b = b0; b < b1; ++b) {
        double* acc = partial.data() + b * c;
        const int64_t end = std::min(n, (b + 1) * kBlock);
        for (int64_t i = b * kBlock; i < end; ++i) {
          const S* row = q.x + i * c;
          const SoftmaxRow<A> sm = q.softmax_of(i);
          for (int64_t j = 0; j < c; ++j)
            acc[j] += static_cast<double>(row_value<S, A>(row, j, q.p.from_logits, sm, q.inv_t));
        }
      }
#pragma omp single
      q.release_rows(b0 * kBlock, std::min(n, b1 * kBlock));
    }
    for (int64_t j = 0; j < c; ++j) out[j] = 0.0;
    for (int64_t b = 0; b < nblocks; ++b)
      for (int64_t j = 0; j < c; ++j) out[j] += partial[b * c + j];
    for (int64_t j = 0; j < c; ++j) out[j] /= static_cast<double>(n);
  }

  StepResult farthest_from(const double* vec) const {
    const P& q = pool_;
    std::vector<A> v(vec, vec + q.p.c);
    const int64_t n = q.p.n;
    std::vector<Best> best(q.threads);
#pragma omp parallel num_threads(q.team())
    {
      Best local;
      for (int64_t t0 = 0; t0 < n; t0 += q.tile) {
        const int64_t t1 = std::min(n, t0 + q.tile);
#pragma omp for schedule(static)
        for (int64_t i = t0; i < t1; ++i) {
          if (!is_eligible(q.mind[i])) continue;
          local.offer(static_cast<double>(q.dist_row(i, v.data(), A(-1))), i);
        }
#pragma omp single
        q.release_rows(t0, t1);
      }
      best[thread_id()] = local;
    }
    return combine(best);
  }

  // The eligible row with the largest running minimum.
  StepResult current_best() const {
    const P& q = pool_;
    const int64_t n = q.p.n;
    std::vector<Best> best(q.threads);
#pragma omp parallel num_threads(q.team())
    {
      Best local;
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; ++i)
        if (is_eligible(q.mind[i])) local.offer(static_cast<double>(q.mind[i]), i);
      best[thread_id()] = local;
    }
    return combine(best);
  }

  // Exact distances to each row's candidate centers first + cand[i][t]
  // (t < k; -1 or out of range = none), kept when closer than the current
  // nearest center (lower center id on ties).
  void refine_candidates(int64_t first, int64_t count, const int64_t* cand, int64_t k) {
    P& q = pool_;
    const int64_t n = q.p.n;
#pragma omp parallel num_threads(q.team())
    for (int64_t t0 = 0; t0 < n; t0 += q.tile) {
      const int64_t t1 = std::min(n, t0 + q.tile);
#pragma omp for schedule(static)
      for (int64_t i = t0; i < t1; ++i) {
        A best = q.mind[i];
        if (!is_eligible(best)) continue;
        int64_t best_c = q.nearest[i];
        for (int64_t t = 0; t < k; ++t) {
          const int64_t a = cand[i * k + t];
          if (a < 0 || a >= count) continue;
          const A d = q.dist_row(i, q.center(first + a), A(-1));
          if (closer_center(d, first + a, best, best_c)) {
            best = d;
            best_c = first + a;
          }
        }
        q.mind[i] = best;
        q.nearest[i] = static_cast<int32_t>(best_c);
      }
#pragma omp single
      q.release_rows(t0, t1);
    }
    refresh_radii();
  }

  // Exact nearest center among centers [first, end) for every row not taken,
  // against its current one; each distance stops early at the best so far.
  void assign_nearest(int64_t first) {
    P& q = pool_;
    const int64_t n = q.p.n;
    const int64_t total = q.num_centers();
#pragma omp parallel num_threads(q.team())
    for (int64_t t0 = 0; t0 < n; t0 += q.tile) {
      const int64_t t1 = std::min(n, t0 + q.tile);
#pragma omp for schedule(dynamic, 256)
      for (int64_t i = t0; i < t1; ++i) {
        A best = q.mind[i];
        if (!is_eligible(best)) continue;
        int64_t best_c = q.nearest[i];
        for (int64_t a = first; a < total; ++a) {
          const A d = q.dist_row(i, q.center(a), q.p.prune ? best : A(-1));
          // centers in increasing order: the lower index keeps ties; a row
          // with no center yet takes the first one, even at +inf (squared
          // distances of huge values overflow)
          if (d < best || best_c < 0) {
            best = d;
            best_c = a;
          }
        }
        q.mind[i] = best;
        q.nearest[i] = static_cast<int32_t>(best_c);
      }
#pragma omp single
      q.release_rows(t0, t1);
    }
    refresh_radii();
  }

  // Exact per-center radius (max squared distance of its rows); centers with
  // none are inactive and cost nothing in the pruning stage.
  void refresh_radii() {
    P& q = pool_;
    const int64_t k = q.num_centers(), n = q.p.n;
    // one slot per possible thread (the team may be smaller: adaptive)
    std::vector<std::vector<A>> local(q.threads, std::vector<A>(static_cast<size_t>(k), A(0)));
#pragma omp parallel num_threads(q.team())
    {
      std::vector<A>& r = local[thread_id()];
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        const int64_t a = q.nearest[i];
        if (a >= 0) r[a] = std::max(r[a], q.mind[i]);  // taken rows hold -1
      }
    }
    q.radius2.assign(k, A(0));
    for (const auto& r : local)
      for (int64_t a = 0; a < k; ++a) q.radius2[a] = std::max(q.radius2[a], r[a]);
    steps_since_refresh_ = 0;
  }

  // The fused pass for new center `id` over every row. *reach gets the rows
  // a cell step would have visited (rows of centers not skipped whole; all
  // of them when prune is off). proj: the projection bound to use (its rows
  // and the new center projected), or null.
  StepResult step(int64_t id, int64_t* reach_out, const Projection<S>* proj = nullptr) {
    P& q = pool_;
    const int64_t n = q.p.n, k = q.num_centers();
    const A* ctr = q.center(id);
    const bool prune = q.p.prune;
    constexpr A kInf = P::kInf;
    if (prune) {
      // Stage 1: center-to-center distances of active centers. A cluster whose
      // bound already fails is skipped whole (dcc2 = +inf).
      dcc2_.assign(k, kInf);
      int64_t computed = 0;
#pragma omp parallel for schedule(dynamic, 64) num_threads(q.team()) reduction(+ : computed)
      for (int64_t a = 0; a < k; ++a) {
        const A r2 = q.radius2[a];
        if (a == id || !(r2 > A(0))) continue;
        const A bound = prune_bound(r2);
        const A d = sq_dist_vec(q.center(a), ctr, q.p.c, bound);
        ++computed;
        dcc2_[a] = d >= bound ? kInf : d;
      }
      q.stats.center_dists += computed;
    }
    std::vector<Best> best(q.threads);
    std::vector<A> new_radius(q.threads, A(0));
    int64_t computed_rows = 0, reach = 0, checked = 0, rejected = 0;
    const typename Projection<S>::Center pc = proj ? proj->center(id) : typename Projection<S>::Center{};
#pragma omp parallel num_threads(q.team()) reduction(+ : computed_rows, reach, checked, rejected)
    {
      A best_d = A(-1);
      int64_t best_i = -1;
      A rad = A(0);
      const int32_t id32 = static_cast<int32_t>(id);
      for (int64_t t0 = 0; t0 < n; t0 += q.tile) {
        const int64_t t1 = std::min(n, t0 + q.tile);
#pragma omp for schedule(static)
        for (int64_t i = t0; i < t1; ++i) {
          A m = q.mind[i];
          if (!is_eligible(m)) continue;
          const int32_t a = q.nearest[i];
          if (prune && (a < 0 || dcc2_[a] != kInf)) ++reach;
          bool skip = prune && a >= 0 && can_skip_row(dcc2_[a], m);
          if (!skip && proj) {
            ++checked;
            skip = proj->keeps(i, pc, m);
            rejected += skip ? 1 : 0;
          }
          if (!skip) {
            ++computed_rows;
            const A d = q.dist_row(i, ctr, prune ? m : A(-1));
            if (d < m || a < 0) {  // a row with no center yet takes this one, even at +inf
              m = d;
              q.mind[i] = d;
              q.nearest[i] = id32;
              rad = std::max(rad, d);  // the rows of the new center are exactly these
            }
          }
          if (best_i < 0 || better(m, i, best_d, best_i)) {
            best_d = m;
            best_i = i;
          }
        }
        if (q.p.release_pages) {
#pragma omp single
          q.release_rows(t0, t1);
        }
      }
      if (best_i >= 0) best[thread_id()].offer(static_cast<double>(best_d), best_i);
      new_radius[thread_id()] = rad;
    }
    A rad = A(0);
    for (A r : new_radius) rad = std::max(rad, r);
    q.radius2[id] = rad;
    q.stats.steps += 1;
    q.stats.dense_steps += 1;
    if (q.team() > 1 && n * q.p.c >= ThreadPolicy::kMinParallelValues) q.stats.parallel_steps += 1;
    q.stats.rows_computed += computed_rows;
    q.stats.rows_visited += n;
    q.stats.proj_checked += checked;
    q.stats.proj_rejected += rejected;
    // Old centers keep their radius as an upper bound (their rows only move
    // away or come closer); tighten the bounds now and then.
    if (prune && ++steps_since_refresh_ >= 16) refresh_radii();
    *reach_out = prune ? reach : n;
    return combine(best);
  }

 private:
  P& pool_;
  std::vector<A> dcc2_;
  int steps_since_refresh_ = 0;
};

}  // namespace
}  // namespace PCS_ISA
}  // namespace pcoreset
