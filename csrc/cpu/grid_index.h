// The grid index over the centers, for rows of at most kGridDims values: the
// cell steps' other way (besides AnchorIndex) to find the cells that a new
// center can change.
//
// A cell a can only change when d(a, n) < 2 r_a, and no cell's radius is
// above the largest one, R (the heap's top at the start of the step). So
// every such center lies within rho = 2 R (widened for rounding) of the new
// center n, in a cube of side 2 rho around it. The centers sit in a uniform
// grid of buckets over the pool's bounding box (a bucket's index is
// clamp(floor((v - lo) / h)) per coordinate: monotone in v, so a center
// outside the box lands in an edge bucket and every query still finds it);
// a step reads the buckets that the cube meets and tests each center there
// as the anchor index does. R only shrinks between builds, so the grid is
// rebuilt finer when rho falls below half the side it was built for (a few
// times a run). In three dimensions the anchor lists' windows are shells
// that hold far more centers than the few cells a step changes; the grid
// measures the centers near n only.
// Compiled per instruction set (included by kcenter_cpu.cpp only).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "anchors.h"
#include "pool.h"

namespace pcoreset {
namespace PCS_ISA {
namespace {

// Rows of at most this many values use the grid.
constexpr int64_t kGridDims = 3;

template <typename S>
class GridIndex {
  using A = typename AccumOf<S>::type;

 public:
  explicit GridIndex(const Pool<S>& pool) : pool_(pool) {}

  // The centers changed (load_state, or steps taken without the index):
  // the next query rebuilds the grid from every center.
  void reset() { built_ = false; }
  void build() { built_ = false; }

  // As AnchorIndex::find_affected; r2max: the largest cell radius
  // (squared) before the step.
  void find_affected(int64_t id, int64_t from, double r2max, std::vector<Affected<A>>* out, KCenterStats* stats) {
    const Pool<S>& q = pool_;
    const int64_t c = q.p.c;
    out->clear();
    const A* ctr = q.center(id);
    if (!(r2max > 0.0)) {  // no cell has a row that could move: only the picked row's
      if (from >= 0) {
        out->push_back(Affected<A>{from, center_dist2(q.center(from), ctr, c, A(-1))});
        stats->center_dists += 1;
      }
      return;
    }
    // every affected center's computed distance is below prune_bound(r2) <=
    // prune_bound(R^2); the widening covers the rounding of that distance
    // (a few operations on c <= 3 values; PruneFloor is far above the
    // subnormal error) and of the square root
    const double slack = static_cast<double>(PruneSlack<A>::value), floor = static_cast<double>(PruneFloor<A>::value);
    const double rho = std::sqrt((slack * r2max + floor) * (1.0 + 1e-3)) * (1.0 + 1e-3);
    if (!built_ || (rho < 0.5 * rho_built_ && !capped_) || (capped_ && id >= 2 * k_built_)) {
      rebuild(id, rho);
    } else {
      for (; indexed_ < id; ++indexed_) insert(indexed_);  // a step that ended early did not add its center
    }
    int64_t lo[kGridDims] = {0, 0, 0}, hi[kGridDims] = {0, 0, 0};
    for (int64_t d = 0; d < c; ++d) {
      const double v = static_cast<double>(ctr[d]);
      // one ulp outward: the exact v -/+ rho, not its rounding, bounds the
      // coordinates of the centers in reach
      const double a = std::nextafter(v - rho, -std::numeric_limits<double>::infinity());
      const double b = std::nextafter(v + rho, std::numeric_limits<double>::infinity());
      if (std::isfinite(a) && std::isfinite(b)) {
        lo[d] = index(d, a);
        hi[d] = index(d, b);
      } else {
        lo[d] = 0;
        hi[d] = dims_[d] - 1;
      }
    }
    bool from_seen = false;
    int64_t measured = 0;
    for (int64_t i0 = lo[0]; i0 <= hi[0]; ++i0)
      for (int64_t i1 = lo[1]; i1 <= hi[1]; ++i1)
        for (int64_t i2 = lo[2]; i2 <= hi[2]; ++i2) {
          for (int64_t a = head_[static_cast<size_t>((i0 * dims_[1] + i1) * dims_[2] + i2)]; a >= 0;
               a = next_[static_cast<size_t>(a)]) {
            if (a == id) continue;
            const A r2 = q.radius2[a];
            if (a == from) {
              from_seen = true;
              out->push_back(Affected<A>{a, center_dist2(q.center(a), ctr, c, A(-1))});
              ++measured;
              continue;
            }
            if (!(r2 > A(0))) continue;
            const A bound = prune_bound(r2);
            const A dcc2 = center_dist2(q.center(a), ctr, c, bound);
            ++measured;
            if (dcc2 < bound || !finite_bound(bound)) out->push_back(Affected<A>{a, dcc2});
          }
        }
    if (from >= 0 && !from_seen) {
      out->push_back(Affected<A>{from, center_dist2(q.center(from), ctr, c, A(-1))});
      ++measured;
    }
    stats->center_dists += measured;
  }

  // The new center `id` joins the grid (after its step).
  void add(int64_t id) {
    if (!built_ || id < indexed_) return;
    for (int64_t a = indexed_; a <= id; ++a) insert(a);
    indexed_ = id + 1;
  }

 private:
  // The bucket coordinate of value v along dimension d: monotone in v.
  int64_t index(int64_t d, double v) const {
    const double t = (v - lo_[d]) * inv_h_[d];
    if (!(t >= 0.0)) return 0;  // below the box (or NaN)
    if (t >= static_cast<double>(dims_[d] - 1)) return dims_[d] - 1;
    return static_cast<int64_t>(t);
  }

  void insert(int64_t a) {
    const A* v = pool_.center(a);
    int64_t b = 0;
    for (int64_t d = 0; d < kGridDims; ++d)
      b = b * dims_[d] + (d < pool_.p.c ? index(d, static_cast<double>(v[d])) : 0);
    if (static_cast<int64_t>(next_.size()) <= a) next_.resize(static_cast<size_t>(a) + 1, -1);
    next_[static_cast<size_t>(a)] = head_[static_cast<size_t>(b)];
    head_[static_cast<size_t>(b)] = a;
  }

  // The pool's bounding box (once: the rows do not change).
  void ensure_box() {
    if (box_ready_) return;
    const Pool<S>& q = pool_;
    const int64_t c = q.p.c;
    std::vector<A> row(static_cast<size_t>(c));
    for (int64_t d = 0; d < kGridDims; ++d) box_lo_[d] = box_hi_[d] = 0.0;
    bool first = true;
    for (int64_t i = 0; i < q.p.n; ++i) {
      q.row_values_into(i, row.data());
      for (int64_t d = 0; d < c; ++d) {
        const double v = static_cast<double>(row[static_cast<size_t>(d)]);
        if (!std::isfinite(v)) continue;
        if (first || v < box_lo_[d]) box_lo_[d] = v;
        if (first || v > box_hi_[d]) box_hi_[d] = v;
      }
      first = false;
    }
    box_ready_ = true;
  }

  // Buckets of side about rho (at most a few per center) over the box;
  // the centers [0, id) go in.
  void rebuild(int64_t id, double rho) {
    ensure_box();
    const int64_t c = pool_.p.c;
    const int64_t cap = std::max<int64_t>(4096, 4 * id);
    int64_t total = 1;
    capped_ = false;
    for (int64_t d = 0; d < kGridDims; ++d) {
      lo_[d] = box_lo_[d];
      const double ext = box_hi_[d] - box_lo_[d];
      int64_t n = 1;
      if (d < c && std::isfinite(rho) && rho > 0.0 && std::isfinite(ext) && ext > 0.0) {
        const double want = std::ceil(ext / rho);
        n = want >= 1e6 ? int64_t(1000000) : std::max<int64_t>(1, static_cast<int64_t>(want));
      }
      dims_[d] = n;
    }
    // the buckets' count within the cap: the longest dimensions give way
    for (;;) {
      total = dims_[0] * dims_[1] * dims_[2];
      if (total <= cap) break;
      capped_ = true;
      int64_t w = 0;
      for (int64_t d = 1; d < kGridDims; ++d)
        if (dims_[d] > dims_[w]) w = d;
      dims_[w] = std::max<int64_t>(1, dims_[w] / 2);
    }
    for (int64_t d = 0; d < kGridDims; ++d) {
      const double ext = box_hi_[d] - box_lo_[d];
      inv_h_[d] = dims_[d] > 1 ? static_cast<double>(dims_[d]) / ext : 0.0;
    }
    head_.assign(static_cast<size_t>(total), -1);
    next_.assign(static_cast<size_t>(id), -1);
    built_ = true;
    indexed_ = 0;
    rho_built_ = rho;
    k_built_ = std::max<int64_t>(1, id);
    for (int64_t a = 0; a < id; ++a) insert(a);
    indexed_ = id;
  }

  const Pool<S>& pool_;
  bool built_ = false, box_ready_ = false, capped_ = false;
  double box_lo_[kGridDims] = {0, 0, 0}, box_hi_[kGridDims] = {0, 0, 0};
  double lo_[kGridDims] = {0, 0, 0}, inv_h_[kGridDims] = {0, 0, 0};
  int64_t dims_[kGridDims] = {1, 1, 1};
  double rho_built_ = 0.0;
  int64_t k_built_ = 1;
  int64_t indexed_ = 0;       // centers [0, indexed_) are in the grid
  std::vector<int64_t> head_;  // per bucket: its last center inserted, -1 when none
  std::vector<int64_t> next_;  // per center: the one inserted before it in its bucket
};

}  // namespace
}  // namespace PCS_ISA
}  // namespace pcoreset
