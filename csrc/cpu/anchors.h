// The anchor index over the centers: finds the cells that a new center can
// change without measuring it against every center.
//
// A fixed set of anchor centers (every center while there are fewer than the
// maximum, a spread subset of the initial centers otherwise) each keeps the
// other centers nearest to it, sorted by their distance to the anchor, and
// an upper bound of their cells' radii. |d(g, n) - d(g, a)| <= d(a, n) bounds
// every center a of anchor g from below, so only a window of each list is
// read. Compiled per instruction set (included by kcenter_cpu.cpp only).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "pool.h"

namespace pcoreset {
namespace PCS_ISA {
namespace {

template <typename A>
struct Affected {
  int64_t cell;
  A dcc2;  // squared distance from the cell's center to the new center
};

template <typename S>
class AnchorIndex {
  using A = typename AccumOf<S>::type;

 public:
  explicit AnchorIndex(const Pool<S>& pool) : pool_(pool) {}

  int64_t max_anchors() const {
    // a new center is measured against every anchor: keep that near the
    // cost of reading a few cells
    return std::max<int64_t>(16, std::min<int64_t>(128, (int64_t(1) << 21) / std::max<int64_t>(1, pool_.p.c)));
  }

  // The centers replaced (load_state): the next build starts over.
  void reset() { indexed_ = 0; }

  // Every center indexed (O(K * anchors * C) the first time); later builds
  // (the cells are rebuilt after dense steps) add only the centers that came
  // since, then tighten the radius bounds to the rebuilt cells.
  void build(KCenterStats* stats) {
    const Pool<S>& q = pool_;
    const int64_t k = q.num_centers();
    if (indexed_ > 0 && indexed_ <= k) {
      for (int64_t a = indexed_; a < k; ++a) {
        const int64_t na = static_cast<int64_t>(anchors_.size());
        if (na < max_anchors()) {
          add_anchor(a);
          continue;
        }
        double bd = std::numeric_limits<double>::infinity();
        int64_t bg = 0;
        for (int64_t g = 0; g < na; ++g) {
          const double d = std::sqrt(static_cast<double>(sq_dist_vec(q.center(anchors_[g]), q.center(a), q.p.c, A(-1))));
          if (d < bd) {
            bd = d;
            bg = g;
          }
        }
        stats->center_dists += na;
        insert(a, bg, bd, true);
      }
      indexed_ = k;
      tighten();
      return;
    }
    const int64_t na = std::min(k, max_anchors());
    anchors_.clear();
    for (int64_t g = 0; g < na; ++g) anchors_.push_back(g * k / na);  // spread over the given order
    list_.assign(static_cast<size_t>(na), {});
    maxr_.assign(static_cast<size_t>(na), 0.0);
    std::vector<int64_t> best_g(static_cast<size_t>(k), 0);
    std::vector<double> best_d(static_cast<size_t>(k), 0.0);
#pragma omp parallel for schedule(dynamic, 64) num_threads(k * na * q.p.c >= (int64_t(1) << 22) ? q.team() : 1)
    for (int64_t a = 0; a < k; ++a) {
      double bd = std::numeric_limits<double>::infinity();
      int64_t bg = 0;
      for (int64_t g = 0; g < na; ++g) {
        const double d = std::sqrt(static_cast<double>(sq_dist_vec(q.center(anchors_[g]), q.center(a), q.p.c, A(-1))));
        if (d < bd) {
          bd = d;
          bg = g;
        }
      }
      best_g[a] = bg;
      best_d[a] = bd;
    }
    stats->center_dists += k * na;
    for (int64_t g = 0; g < na; ++g) best_d[anchors_[g]] = 0.0, best_g[anchors_[g]] = g;
    for (int64_t a = 0; a < k; ++a) insert(a, best_g[a], best_d[a], false);
    for (auto& list : list_) std::sort(list.begin(), list.end());
    span_.resize(list_.size());
    for (size_t g = 0; g < list_.size(); ++g) refresh_span(g);
    indexed_ = k;
  }

  // The cells that the new center `id` can change: every cell a with
  // d(a, new) < 2 r_a; `from` (the cell of the picked row, or -1) is always
  // included. Squared center distances in the kernel's arithmetic, as in the
  // dense pass. Keeps the new center's distances to the anchors for add().
  void find_affected(int64_t id, int64_t from, std::vector<Affected<A>>* out, KCenterStats* stats) {
    const Pool<S>& q = pool_;
    const A* ctr = q.center(id);
    const int64_t na = static_cast<int64_t>(anchors_.size());
    const double eps = geom_eps();
    // absolute slack (distance units) for squared distances near the
    // subnormal range: above the square root of PruneFloor
    const double tiny = sizeof(A) == 4 ? 0x1p-48 : 0x1p-478;
    out->clear();
    cand_.clear();
    ++epoch_;
    if (stamp_.size() < static_cast<size_t>(q.num_centers())) stamp_.resize(static_cast<size_t>(q.num_centers()), 0);
    d2_.resize(static_cast<size_t>(na));
    for (int64_t g = 0; g < na; ++g) d2_[g] = center_dist2(q.center(anchors_[g]), ctr, q.p.c, A(-1));
    stats->center_dists += na;
    for (int64_t g = 0; g < na; ++g) {
      const auto& list = list_[g];
      if (list.empty()) continue;
      const double dq = std::sqrt(static_cast<double>(d2_[g]));
      const double w = (2.0 * maxr_[g] * (1.0 + eps) + tiny + 2.0 * eps * dq) / (1.0 - eps);
      if (span_[g].second < dq - w || span_[g].first > dq + w) continue;  // the window holds none
      auto it = std::lower_bound(list.begin(), list.end(), std::pair<double, int64_t>{dq - w, -1});
      for (; it != list.end() && it->first <= dq + w; ++it) {
        const int64_t a = it->second;
        if (a == id) continue;
        const A r2 = q.radius2[a];
        if (!(r2 > A(0)) && a != from) continue;
        const double r = r2 > A(0) ? std::sqrt(static_cast<double>(r2)) : 0.0;
        if (std::fabs(dq - it->first) - eps * (dq + it->first) >= 2.0 * r * (1.0 + eps) + tiny && a != from)
          continue;
        // measured below, once the windows are read: their centers are
        // scattered over the centers, so the ones a few places ahead are
        // prefetched
        cand_.push_back(Cand{a, a == from ? A(-1) : prune_bound(r2), a == anchors_[g] ? d2_[g] : A(-1)});
      }
    }
    const int64_t nc = static_cast<int64_t>(cand_.size());
    // enough of them run on the team, each thread over a contiguous range
    const int nt = nc * q.p.c >= kParallelValues ? q.team() : 1;
    int64_t measured = 0;
#pragma omp parallel num_threads(nt) reduction(+ : measured)
    {
#ifdef _OPENMP
      const int64_t tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
      const int64_t tid = 0, nth = 1;
#endif
      const int64_t lo = nc * tid / nth, hi = nc * (tid + 1) / nth;
      for (int64_t j = lo; j < hi; ++j) {
        if (j + kAhead < hi && cand_[j + kAhead].known < A(0)) prefetch_center(cand_[j + kAhead].a);
        Cand& e = cand_[j];
        if (e.known < A(0)) {
          e.known = center_dist2(q.center(e.a), ctr, q.p.c, e.bound);
          ++measured;
        }
      }
    }
    stats->center_dists += measured;
    for (int64_t j = 0; j < nc; ++j) {
      const Cand& e = cand_[j];
      const A dcc2 = e.known;
      if (dcc2 < e.bound || !finite_bound(e.bound) || e.a == from) {
        stamp_[e.a] = epoch_;
        out->push_back(Affected<A>{e.a, dcc2});
      }
    }
    if (from >= 0 && stamp_[from] != epoch_) {
      out->push_back(Affected<A>{from, center_dist2(q.center(from), ctr, q.p.c, A(-1))});
      stats->center_dists += 1;
    }
  }

  // The new center `id` (after find_affected, its cell's radius set) joins
  // the index: as an anchor while there are fewer than the maximum, else in
  // its nearest anchor's list. Every 64 centers the lists' radius bounds are
  // tightened (cells only shrink).
  void add(int64_t id) {
    const int64_t na = static_cast<int64_t>(anchors_.size());
    indexed_ = std::max(indexed_, id + 1);
    if (na < max_anchors()) {
      add_anchor(id);
    } else {
      int64_t g_best = 0;
      for (int64_t g = 1; g < na; ++g)
        if (d2_[g] < d2_[g_best]) g_best = g;
      insert(id, g_best, std::sqrt(static_cast<double>(d2_[g_best])), true);
    }
    if (++steps_since_tighten_ >= 64) {
      tighten();
      steps_since_tighten_ = 0;
    }
  }

 private:
  // Relative rounding of a computed distance (not squared) between two
  // vectors, widened: the anchor windows must never drop a cell that the
  // exact test would keep.
  static constexpr double kGeomEps = sizeof(A) == 4 ? 2e-4 : 1e-12;
  double geom_eps() const { return kGeomEps * (1.0 + static_cast<double>(pool_.p.c) / 256.0); }

  // A center of a window that its anchor does not rule out: its bound on
  // the squared distance (-1 for the picked row's cell, always kept), and
  // its distance when already known (an anchor's; else -1, then measured).
  struct Cand {
    int64_t a;
    A bound;
    A known;
  };
  static constexpr int64_t kAhead = 4;
  // Values measured (candidates x C) before a second thread pays: a parallel
  // region costs a few microseconds on a quiet machine.
  static constexpr int64_t kParallelValues = int64_t(1) << 18;
  void prefetch_center(int64_t a) const {
    const char* p = reinterpret_cast<const char*>(pool_.center(a));
    const int64_t bytes = std::min<int64_t>(pool_.p.c * static_cast<int64_t>(sizeof(A)), 1024);
    for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off);
  }

  void add_anchor(int64_t a) {
    anchors_.push_back(a);
    list_.emplace_back();
    maxr_.push_back(0.0);
    span_.emplace_back(kNoSpan);
    insert(a, static_cast<int64_t>(anchors_.size()) - 1, 0.0, true);
  }

  // A cell never grows: one with radius <= 0 (no row, or only rows at
  // distance 0 from its center) can never be changed by a new center, so it
  // leaves the lists (a picked row's own cell is handled apart).
  void insert(int64_t a, int64_t g, double d, bool sorted) {
    auto& list = list_[g];
    if (!(pool_.radius2[a] > A(0))) return;
    const std::pair<double, int64_t> e{d, a};
    if (sorted) {
      list.insert(std::upper_bound(list.begin(), list.end(), e), e);
      refresh_span(static_cast<size_t>(g));
    } else {
      list.push_back(e);  // build sorts once (and sets the spans)
    }
    const A r2 = pool_.radius2[a];
    const double r = r2 > A(0) ? std::sqrt(static_cast<double>(r2)) : 0.0;
    maxr_[g] = std::max(maxr_[g], r);
  }

  void tighten() {
    for (size_t g = 0; g < list_.size(); ++g) {
      auto& list = list_[g];
      double m = 0.0;
      list.erase(std::remove_if(list.begin(), list.end(),
                                [&](const std::pair<double, int64_t>& e) { return !(pool_.radius2[e.second] > A(0)); }),
                 list.end());
      for (const auto& e : list) m = std::max(m, static_cast<double>(pool_.radius2[e.second]));
      maxr_[g] = std::sqrt(m);
      refresh_span(g);
    }
  }

  static constexpr std::pair<double, double> kNoSpan{std::numeric_limits<double>::infinity(),
                                                     -std::numeric_limits<double>::infinity()};
  void refresh_span(size_t g) {
    const auto& list = list_[g];
    span_[g] = list.empty() ? kNoSpan : std::pair<double, double>{list.front().first, list.back().first};
  }

  const Pool<S>& pool_;
  std::vector<int64_t> anchors_;
  std::vector<std::vector<std::pair<double, int64_t>>> list_;  // (distance to the anchor, center)
  std::vector<double> maxr_;  // upper bound of the radii of each list's cells
  // each list's first and last distance (lists empty: +inf, -inf), apart
  // from the lists: a window that misses them all is passed by without
  // touching the list (in few dimensions most windows do)
  std::vector<std::pair<double, double>> span_;
  std::vector<A> d2_;         // the last new center's squared distance to each anchor
  std::vector<uint64_t> stamp_;
  std::vector<Cand> cand_;
  uint64_t epoch_ = 0;
  int steps_since_tighten_ = 0;
  int64_t indexed_ = 0;  // centers [0, indexed_) are in the index
};

}  // namespace
}  // namespace PCS_ISA
}  // namespace pcoreset
