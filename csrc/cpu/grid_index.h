// The grid index over the centers, for rows of at most kGridDims values: the
// cell steps' other way (besides AnchorIndex) to find the cells that a new
// center can change.
//
// A cell a can only change when d(a, n) < 2 r_a, and no cell's radius is
// above the largest one, R (the heap's top at the start of the step). So
// every such center lies within rho = 2 R (widened for rounding) of the new
// center n, in a cube of side 2 rho around it. The centers sit in buckets of
// a uniform grid of side h, kept in a hash table (only the buckets that hold
// centers exist, so a few far outliers cost nothing); a bucket's coordinate
// is floor(v / h) clamped to +-2^40 per value, monotone in v, so the buckets
// that the cube's corners fall in bound those of every center inside it. A
// step reads those buckets (at most 4 per dimension) and tests each center
// there as the anchor index does. R only shrinks between builds, so the grid
// is rebuilt finer when rho falls below half of h (a few times a run). In
// three dimensions the anchor lists' windows are shells that hold far more
// centers than the few cells a step changes; the grid measures the centers
// near n only.
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
    from_seen_ = false;
    measured_ = 0;
    if (!(r2max > 0.0)) {  // no cell has a row that could move: only the picked row's
      finish(from, ctr, out, stats);
      return;
    }
    // every affected center's computed distance is below prune_bound(r2) <=
    // prune_bound(R^2); the widening covers the rounding of that distance
    // (a few operations on c <= 3 values; PruneFloor is far above the
    // subnormal error) and of the square root
    const double slack = static_cast<double>(PruneSlack<A>::value), floor = static_cast<double>(PruneFloor<A>::value);
    const double rho = std::sqrt((slack * r2max + floor) * (1.0 + 1e-3)) * (1.0 + 1e-3);
    if (!built_ || rho < 0.5 * h_) {
      rebuild(id, rho);
    } else {
      for (; indexed_ < id; ++indexed_) insert(indexed_);  // a step that ended early did not add its center
    }
    int64_t lo[kGridDims] = {0, 0, 0}, hi[kGridDims] = {0, 0, 0};
    bool all = !(inv_h_ > 0.0);
    for (int64_t d = 0; d < c && !all; ++d) {
      const double v = static_cast<double>(ctr[d]);
      // one ulp outward: the exact v -/+ rho, not its rounding, bounds the
      // values of the centers in reach
      const double a = std::nextafter(v - rho, -std::numeric_limits<double>::infinity());
      const double b = std::nextafter(v + rho, std::numeric_limits<double>::infinity());
      if (!(std::isfinite(a) && std::isfinite(b))) {
        all = true;
        break;
      }
      lo[d] = coord(a);
      hi[d] = coord(b);
      if (hi[d] - lo[d] > 8) all = true;  // (only after a reach that grew: every center instead)
    }
    if (all) {
      for (int64_t a = 0; a < id; ++a) test(a, id, from, ctr, out);
    } else {
      for (int64_t i0 = lo[0]; i0 <= hi[0]; ++i0)
        for (int64_t i1 = lo[1]; i1 <= hi[1]; ++i1)
          for (int64_t i2 = lo[2]; i2 <= hi[2]; ++i2) {
            const int64_t slot = find(Key{i0, i1, i2});
            if (slot < 0) continue;
            for (int64_t a = table_[static_cast<size_t>(slot)].head; a >= 0; a = next_[static_cast<size_t>(a)])
              test(a, id, from, ctr, out);
          }
    }
    finish(from, ctr, out, stats);
  }

  // The new center `id` joins the grid (after its step).
  void add(int64_t id) {
    if (!built_ || id < indexed_) return;
    for (; indexed_ <= id; ++indexed_) insert(indexed_);
  }

 private:
  struct Key {
    int64_t k[kGridDims];
    bool operator==(const Key& o) const { return k[0] == o.k[0] && k[1] == o.k[1] && k[2] == o.k[2]; }
  };
  struct Slot {
    Key key;
    int64_t head;  // the bucket's last center inserted; -1: the slot is free
  };
  static constexpr double kCoordLimit = 1099511627776.0;  // 2^40

  // One center of a bucket in reach: measured (stopping early past its
  // bound) and kept unless the rows' own pruning test would skip its cell.
  void test(int64_t a, int64_t id, int64_t from, const A* ctr, std::vector<Affected<A>>* out) {
    const Pool<S>& q = pool_;
    if (a == id) return;
    if (a == from) {
      from_seen_ = true;
      out->push_back(Affected<A>{a, center_dist2(q.center(a), ctr, q.p.c, A(-1))});
      ++measured_;
      return;
    }
    const A r2 = q.radius2[a];
    if (!(r2 > A(0))) return;
    const A dcc2 = center_dist2(q.center(a), ctr, q.p.c, prune_bound(r2));
    ++measured_;
    if (!can_skip_row(dcc2, r2)) out->push_back(Affected<A>{a, dcc2});
  }

  // The picked row's cell, if no bucket held it; the count of centers measured.
  void finish(int64_t from, const A* ctr, std::vector<Affected<A>>* out, KCenterStats* stats) {
    if (from >= 0 && !from_seen_) {
      out->push_back(Affected<A>{from, center_dist2(pool_.center(from), ctr, pool_.p.c, A(-1))});
      ++measured_;
    }
    stats->center_dists += measured_;
  }

  // The bucket coordinate of value v: monotone in v (NaN goes to the lowest).
  int64_t coord(double v) const {
    const double t = v * inv_h_;
    if (!(t > -kCoordLimit)) return -static_cast<int64_t>(kCoordLimit);
    if (t > kCoordLimit) return static_cast<int64_t>(kCoordLimit);
    return static_cast<int64_t>(std::floor(t));
  }

  Key key_of(int64_t a) const {
    const A* v = pool_.center(a);
    Key key{{0, 0, 0}};
    for (int64_t d = 0; d < pool_.p.c; ++d) key.k[d] = coord(static_cast<double>(v[d]));
    return key;
  }

  size_t hash(const Key& key) const {
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (int d = 0; d < kGridDims; ++d) {
      h ^= static_cast<uint64_t>(key.k[d]) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
      h *= 0xff51afd7ed558ccdull;
      h ^= h >> 33;
    }
    return static_cast<size_t>(h) & (table_.size() - 1);
  }

  // The slot of a bucket, or -1 when no center is in it.
  int64_t find(const Key& key) const {
    for (size_t s = hash(key);; s = (s + 1) & (table_.size() - 1)) {
      const Slot& e = table_[s];
      if (e.head < 0) return -1;
      if (e.key == key) return static_cast<int64_t>(s);
    }
  }

  void insert(int64_t a) {
    if (static_cast<int64_t>(next_.size()) <= a) next_.resize(static_cast<size_t>(a) + 1, -1);
    if (2 * (used_ + 1) > table_.size()) grow();
    const Key key = key_of(a);
    for (size_t s = hash(key);; s = (s + 1) & (table_.size() - 1)) {
      Slot& e = table_[s];
      if (e.head < 0) {
        e.key = key;
        ++used_;
      } else if (!(e.key == key)) {
        continue;
      }
      next_[static_cast<size_t>(a)] = e.head;
      e.head = a;
      return;
    }
  }

  // Twice the slots, the buckets moved over (their lists unchanged).
  void grow() {
    std::vector<Slot> old;
    old.swap(table_);
    table_.assign(std::max<size_t>(64, 2 * old.size()), Slot{Key{{0, 0, 0}}, -1});
    for (const Slot& e : old) {
      if (e.head < 0) continue;
      size_t s = hash(e.key);
      while (table_[s].head >= 0) s = (s + 1) & (table_.size() - 1);
      table_[s] = e;
    }
  }

  // Buckets of side rho (a cube of side 2 rho meets at most 3 per
  // dimension); the centers [0, id) go in.
  void rebuild(int64_t id, double rho) {
    h_ = rho;
    inv_h_ = std::isfinite(rho) && rho > 0.0 ? 1.0 / rho : 0.0;
    if (!(inv_h_ > 0.0) || !std::isfinite(inv_h_)) {
      inv_h_ = 0.0;
      h_ = std::numeric_limits<double>::infinity();
    }
    size_t slots = 64;
    while (slots < 2 * static_cast<size_t>(id) + 2) slots *= 2;
    table_.assign(slots, Slot{Key{{0, 0, 0}}, -1});
    used_ = 0;
    next_.assign(static_cast<size_t>(id), -1);
    built_ = true;
    for (indexed_ = 0; indexed_ < id; ++indexed_) insert(indexed_);
  }

  const Pool<S>& pool_;
  bool built_ = false;
  double h_ = 0.0, inv_h_ = 0.0;  // the buckets' side and its inverse (0: one bucket, every center)
  int64_t indexed_ = 0;         // centers [0, indexed_) are in the grid
  std::vector<Slot> table_;     // open addressing, a power of two slots, at most half used
  size_t used_ = 0;
  std::vector<int64_t> next_;   // per center: the one inserted before it in its bucket
  bool from_seen_ = false;
  int64_t measured_ = 0;
};

}  // namespace
}  // namespace PCS_ISA
}  // namespace pcoreset
