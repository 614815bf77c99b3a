// The cell index: steps that touch only the cells near the new center.
//
// Each center a keeps its Voronoi cell (the rows whose nearest center it is)
// sorted by running minimum, ascending, equal minima by row, descending: the
// last member is the cell's farthest row (the tie rule's lowest index among
// equals), so a cell's radius r_a (in Pool::radius2) is read, not scanned.
// CellHeap over the cells gives the next pick without a scan. With the new
// center n, a row i of cell a can only come closer to n if d(a, n) < 2 r_a
// (triangle inequality: d(i, n) >= d(a, n) - d(i, a)), so a step visits only
// those cells (found through AnchorIndex, or GridIndex for c <= 3), and inside them only the rows
// with d(a, n) < 2 sqrt(mind[i]): the sorted order makes those a suffix of
// the cell, found by binary search, and the rest of the cell is never read.
// A step's cost follows the rows that can change, not N, the number of
// centers or the size of the cells. Rows keep their order when others leave
// (compaction is stable) and their running minimum while they stay, so only
// the new cell is sorted, once. Over long rows the projection bound
// (projection.h) may also rule a row out before it is read.
//
// Rows at distance 0 from their center can never move (a row moves only when
// strictly closer) nor be farther than any other row of their cell, so each
// cell keeps them apart, sorted by row: a visit never reads them, a cell
// holding only such rows has radius 0 and is never visited again, and its
// farthest row (the lowest eligible one) is found by a cursor that only
// moves forward. Pools of identical or repeated rows (a confident model's
// one-hot outputs, padded inputs) are mostly such rows.
// Compiled per instruction set (included by kcenter_cpu.cpp only).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

#include "anchors.h"
#include "cell_heap.h"
#include "grid_index.h"
#include "pool.h"
#include "projection.h"
#include "team_errors.h"

namespace pcoreset {
namespace PCS_ISA {
namespace {

// Sorts v ascending by key(e), an unsigned integer of `bits` bits, by LSD
// radix. Each pass sorts by the next digit that starts at a bit which is not
// the same in every key (constant bits are never a digit), 11 bits wide, or
// 8 for fewer than 4,096 elements (a pass clears and sums 2^width counters).
// Stable; tmp is scratch. The steps sort lists that are rebuilt every step
// (the rows to compute, the new cell), where a comparison sort cost a fifth
// of a step.
template <typename T, typename Key>
void radix_sort(std::vector<T>& v, std::vector<T>& tmp, int bits, Key key) {
  uint64_t any = 0, all = ~uint64_t(0);
  for (const T& e : v) {
    const uint64_t k = key(e);
    any |= k;
    all &= k;
  }
  uint64_t varies = any ^ all;  // bits that are not the same in every key
  if (bits < 64) varies &= (uint64_t(1) << bits) - 1;
  const int width = v.size() < 4096 ? 8 : 11;
  const uint64_t mask = (uint64_t(1) << width) - 1;
  tmp.resize(v.size());
  size_t count[2049];
  while (varies != 0) {
    const int shift = __builtin_ctzll(varies);
    std::fill(count, count + mask + 2, size_t(0));
    for (const T& e : v) ++count[((key(e) >> shift) & mask) + 1];
    for (uint64_t d = 0; d < mask; ++d) count[d + 1] += count[d];
    for (const T& e : v) tmp[count[(key(e) >> shift) & mask]++] = e;
    v.swap(tmp);
    varies = shift + width >= 64 ? 0 : varies & ~((uint64_t(1) << (shift + width)) - 1);
  }
}

// c values from src to dst (not overlapping): a few moves for the short
// rows whose values the cells keep, where a memmove call per row cost as
// much as the copy.
template <typename A>
inline void copy_values(const A* src, A* dst, int64_t c) {
  switch (c) {
    case 3: dst[2] = src[2]; [[fallthrough]];
    case 2: dst[1] = src[1]; [[fallthrough]];
    case 1: dst[0] = src[0]; return;
    default: std::copy(src, src + c, dst);
  }
}

template <typename S>
class CellIndex {
  using A = typename AccumOf<S>::type;
  using P = Pool<S>;

 public:
  // Short rows (c <= kInlineValues) also keep their values in the cell, in
  // member order: a visit then reads only its cell (no random access to the
  // pool; the pool's rows are scattered over the cells). Same values as
  // row_value, so the same distances.
  static constexpr int64_t kInlineValues = 16;

  explicit CellIndex(P& pool) : pool_(pool), anchors_(pool), grid_(pool) {}

  // Rows of at most kGridDims values find the cells a step changes through
  // the grid (grid_index.h), longer ones through the anchors.
  bool use_grid() const { return pool_.p.c <= kGridDims; }

  bool inline_values() const { return pool_.p.c <= kInlineValues; }

  // Build the cells from the running minimum: members (sorted), radii,
  // farthest rows, the heap and the anchor index.
  // O(N log(N / K) + K * anchors * C).
  void build() {
    P& q = pool_;
    const int64_t n = q.p.n, k = q.num_centers();
    q.stats.cell_builds += 1;
    std::vector<int64_t> count(static_cast<size_t>(k) + 1, 0);
    for (int64_t i = 0; i < n; ++i)
      if (q.mind[i] > A(0) && q.nearest[i] >= 0) ++count[q.nearest[i]];
    members_.assign(static_cast<size_t>(k), {});
    zeros_.assign(static_cast<size_t>(k), {});
    zhead_.assign(static_cast<size_t>(k), 0);
    for (int64_t a = 0; a < k; ++a) members_[a].reserve(static_cast<size_t>(count[a]));
    for (int64_t i = 0; i < n; ++i) {
      const A m = q.mind[i];
      const int64_t a = q.nearest[i];
      if (!is_eligible(m) || a < 0) continue;
      if (m > A(0)) members_[a].push_back(Member{static_cast<uint32_t>(i), m});
      else zeros_[a].push_back(static_cast<uint32_t>(i));  // in row order
    }
    for (auto& mem : members_) sort_members(&mem);
    member_vals_.assign(inline_values() ? static_cast<size_t>(k) : 0, {});
    if (inline_values()) {
      for (int64_t a = 0; a < k; ++a) {
        auto& vals = member_vals_[a];
        vals.resize(members_[a].size() * static_cast<size_t>(q.p.c));
        for (size_t t = 0; t < members_[a].size(); ++t) q.row_values_into(members_[a][t].row, vals.data() + t * q.p.c);
      }
    }
    q.radius2.assign(static_cast<size_t>(k), A(-1));
    far_.assign(static_cast<size_t>(k), -1);
    for (int64_t a = 0; a < k; ++a) rescan_cell(a);
    heap_.clear(k);
    for (int64_t a = 0; a < k; ++a) heap_.push(a, q.radius2[a], far_[a]);
    if (use_grid()) grid_.build();
    else anchors_.build(&q.stats);
  }

  StepResult top() const { return heap_.top(); }

  // Row i (eligible) leaves its cell: taken or excluded.
  void remove(int64_t i) {
    P& q = pool_;
    const int64_t a = q.nearest[i];
    if (a < 0) return;
    if (q.mind[i] == A(0)) {  // in the zero part: dropped lazily, the cursor skips taken rows
      if (far_[a] == i) {
        q.mind[i] = P::kTaken;
        set_cell(a, A(-1), -1);
      }
      return;
    }
    if (!erase_member(a, i)) return;
    if (far_[a] == i) {
      q.mind[i] = P::kTaken;
      reset_cell(a);
    }
  }

  // The projection bound for the next steps over long rows (its rows and
  // the new center projected), or null.
  void use_projection(const Projection<S>* proj) { proj_ = proj; }

  // Anchors and lists of the current centers kept (centers were replaced:
  // load_state) or not.
  void forget_centers() {
    anchors_.reset();
    grid_.reset();
  }

  // Tests only: the k-th cell step from now raises std::bad_alloc half way
  // (after the cells it changes were chosen and the picked row left its
  // cell; over short rows also after some of its cells were updated) (k <=
  // 0: never).
  void fail_at(int64_t k) { fail_at_ = k; }

  // First half of a step for the new center `id` (already appended to the
  // pool's centers): an empty cell for it, and the cells it can change
  // (`from`, the cell of the picked row or -1, among them). Returns the rows
  // of those cells: what the step would visit (the cost model reads it).
  int64_t begin_step(int64_t id, int64_t from, int64_t picked) {
    P& q = pool_;
    const double r2max = heap_.top().dist2;  // no cell's radius is larger (before the picked row leaves)
    members_.emplace_back();
    zeros_.emplace_back();
    zhead_.push_back(0);
    zero_from_ = -1;
    if (from >= 0 && picked >= 0 && in_zero_part(from, picked)) {
      // the picked row was at distance 0: its cell need not be visited (its
      // farthest row is settled once the step is done)
      zero_from_ = from;
      from = -1;
    }
    if (inline_values()) member_vals_.emplace_back();
    q.radius2.resize(static_cast<size_t>(id) + 1, A(-1));
    q.radius2[id] = A(-1);
    far_.resize(static_cast<size_t>(id) + 1, -1);
    far_[id] = -1;
    // the row that becomes the center leaves its cell now (the farthest
    // row is its cell's last member; a row pushed by the caller may sit
    // anywhere in it)
    if (from >= 0 && picked >= 0) erase_member(from, picked);
    if (use_grid()) grid_.find_affected(id, from, r2max, &affected_, &q.stats);
    else anchors_.find_affected(id, from, &affected_, &q.stats);
    // the rows of those cells, for the cost model; the rows each step
    // must compute are found by the pass (find_suffixes)
    int64_t rows = 0;
    max_cell_ = 0;
    const size_t na = affected_.size();
    for (size_t k = 0; k < na; ++k) {
      if (k + kCellAhead < na) __builtin_prefetch(&members_[affected_[k + kCellAhead].cell]);
      const int64_t size = static_cast<int64_t>(members_[affected_[k].cell].size());
      rows += size;
      max_cell_ = std::max(max_cell_, size);
    }
    return rows;
  }

  // Second half: visit the rows in reach of the affected cells, move the
  // rows that come closer to the new cell, update radii, heap and anchors.
  // Returns the next pick.
  StepResult finish_step(int64_t id, int64_t rows) {
    if (!inline_values()) {
      // in-memory pools: cell by cell on the team, unless one cell holds
      // much of the step's rows (the first steps), which the row-sorted
      // pass spreads evenly; file-backed pools: the row-sorted pass, which
      // reads the file forward
      const int64_t na = static_cast<int64_t>(affected_.size());
      const int nt = rows * pool_.p.c >= kParallelValues && na > kCellGroup ? pool_.team() : 1;
      if (pool_.p.release_pages || (nt > 1 && max_cell_ * 2 * nt > rows)) {
        find_suffixes();
        pool_.stats.row_sorted_steps += 1;
        return end_step(id, rows, pool_pass(id));
      }
      return end_step(id, rows, cells_pass(id, nt));
    }
    find_suffixes();
    const int nt = visit_rows_ >= kParallelRows ? pool_.team() : 1;
    if (nt == 1) return end_step(id, rows, serial_pass(id));
    return end_step(id, rows, parallel_pass(id, nt));
  }

 private:
  // A cell member: its row and a copy of its running minimum, so that a
  // visit reads its cell sequentially (8 bytes a row for float32) and touches
  // the pool and Pool::mind only for the rows it computes. Pool::mind stays
  // up to date too.
  struct Member {
    uint32_t row;
    A mind;
  };

  // A cell's order: running minimum ascending, equal ones by row descending,
  // so that the last member is the farthest by the tie rule.
  static bool member_less(const Member& x, const Member& y) {
    return x.mind < y.mind || (x.mind == y.mind && x.row > y.row);
  }

  // The failure fail_at asked for, where a step calls it (half way).
  void injected_failure() {
    if (fail_at_ > 0 && --fail_at_ == 0) throw std::bad_alloc();
  }

  // Cells a step reads ahead of the one it works on (their lists are
  // scattered in memory; each is a few cache misses away).
  static constexpr size_t kCellAhead = 8;

  // Fetch two cache lines of mem's members from position `from` on (from
  // 16 before its end when from < 0): where a step's rows in reach are.
  static void prefetch_members(const std::vector<Member>& mem, int64_t from) {
    const int64_t size = static_cast<int64_t>(mem.size());
    const int64_t at = from < 0 ? std::max<int64_t>(0, size - 16) : from;
    if (at >= size) return;
    const char* p = reinterpret_cast<const char*>(mem.data() + at);
    __builtin_prefetch(p);
    __builtin_prefetch(p + 64);
  }

  // The first member of mem that a center at squared distance dcc2 from
  // the cell's center can move: the rows that can move are a suffix, most
  // often a short one, so it is found by galloping from the end (a few
  // neighbouring cache lines) rather than by bisecting the whole cell.
  static int64_t suffix_in_reach(const std::vector<Member>& mem, A dcc2) {
    size_t hi = mem.size(), lo = 0;  // mem[hi, size) are in reach; the point lies in [lo, hi]
    for (size_t step = 1; step <= hi; step *= 2) {
      const size_t t = hi - step;
      if (can_skip_row(dcc2, mem[t].mind)) {
        lo = t + 1;
        break;
      }
      hi = t;
    }
    return std::partition_point(mem.begin() + static_cast<std::ptrdiff_t>(lo), mem.begin() + static_cast<std::ptrdiff_t>(hi),
                                [dcc2](const Member& e) { return can_skip_row(dcc2, e.mind); }) -
           mem.begin();
  }

  // In each affected cell, the rows the step must compute (start_[k] on),
  // and their count (visit_rows_). The cells are scattered in memory: a
  // later cell's list, then the end of its members, are fetched while this
  // one is searched.
  void find_suffixes() {
    const size_t na = affected_.size();
    start_.resize(na);
    visit_rows_ = 0;
    for (size_t k = 0; k < na; ++k) {
      if (k + 2 * kCellAhead < na) __builtin_prefetch(&members_[affected_[k + 2 * kCellAhead].cell]);
      if (k + kCellAhead < na) prefetch_members(members_[affected_[k + kCellAhead].cell], -1);
      const auto& mem = members_[affected_[k].cell];
      start_[k] = suffix_in_reach(mem, affected_[k].dcc2);
      visit_rows_ += static_cast<int64_t>(mem.size()) - start_[k];
    }
  }

  // Row i leaves the members of cell a, the others keep their order (and
  // their values, inline). Searched from the end: the row leaving is most
  // often the farthest. False when i is not a member.
  bool erase_member(int64_t a, int64_t i) {
    auto& mem = members_[a];
    size_t pos = mem.size();
    while (pos > 0 && mem[pos - 1].row != static_cast<uint32_t>(i)) --pos;
    if (pos == 0) return false;
    --pos;
    mem.erase(mem.begin() + static_cast<std::ptrdiff_t>(pos));
    if (inline_values()) {
      auto& vals = member_vals_[a];
      const size_t c = static_cast<size_t>(pool_.p.c);
      vals.erase(vals.begin() + static_cast<std::ptrdiff_t>(pos * c), vals.begin() + static_cast<std::ptrdiff_t>((pos + 1) * c));
    }
    return true;
  }

  // Mark in a member's running-minimum copy for the combine step: the row
  // moves to the new center.
  static constexpr A kMoved = A(-2);

  // Rows per work item: big enough to amortise, small enough to spread one
  // huge cell (the first steps) over the threads.
  static constexpr int64_t kItemRows = 8192;
  // A step runs on several threads only when its rows outnumber this (a
  // parallel region costs tens of microseconds, more on a busy machine).
  static constexpr int64_t kParallelRows = 32768;
  // Pool-reading steps: values computed before a second thread pays (a
  // parallel region costs a few microseconds on a quiet machine; the team
  // shrinks under load).
  static constexpr int64_t kParallelValues = int64_t(1) << 18;
  // Rows of a cell are scattered over the pool: reading them one after the
  // other waits on memory for each, so the first cache lines of the rows a
  // few places ahead are prefetched.
  static constexpr int kPrefetchAhead = 6;

  // One unit of a parallel cell step: rows [lo, hi) of the member list of a
  // cell (inside the rows it must compute).
  struct Item {
    int64_t cell;
    int64_t lo, hi;
    int64_t moved = 0;
    // after compact_item: the rows that stay, compacted to [lo, lo + kept);
    // the moved ones (new running minimum, values)
    int64_t kept = 0;
    std::vector<Member> moved_mem;
    std::vector<A> moved_vals;
    std::vector<uint32_t> moved_zero;  // moved rows at distance 0
  };

  // Radius and farthest row of cell a: its last member, else its zero part.
  void rescan_cell(int64_t a) {
    A r2 = A(-1);
    int64_t far = -1;
    last_member(a, &r2, &far);
    settle(a, &r2, &far);
    pool_.radius2[a] = r2;
    far_[a] = far;
  }

  void last_member(int64_t a, A* r2, int64_t* far) const {
    const auto& mem = members_[a];
    if (mem.empty()) return;
    *r2 = mem.back().mind;
    *far = mem.back().row;
  }

  // Cell a after a visit: radius and farthest row from its members, the heap.
  void reset_cell(int64_t a) {
    A r2 = A(-1);
    int64_t far = -1;
    last_member(a, &r2, &far);
    set_cell(a, r2, far);
  }

  // A cell whose members are all gone falls back to its zero part: radius 0
  // and the lowest eligible row (every member outranks a row at distance 0).
  void settle(int64_t a, A* r2, int64_t* far) {
    if (*far >= 0) return;
    const auto& z = zeros_[a];
    size_t& h = zhead_[a];
    while (h < z.size() && !is_eligible(pool_.mind[z[h]])) ++h;
    if (h < z.size()) {
      *r2 = A(0);
      *far = z[h];
    }
  }

  bool in_zero_part(int64_t a, int64_t i) const {
    const auto& z = zeros_[a];
    return std::binary_search(z.begin() + static_cast<std::ptrdiff_t>(zhead_[a]), z.end(), static_cast<uint32_t>(i));
  }

  void set_cell(int64_t a, A r2, int64_t far) {
    settle(a, &r2, &far);
    pool_.radius2[a] = r2;
    far_[a] = far;
    heap_.fix(a, r2, far);
  }

  // The new cell from the rows that moved (gathered in visit order: `count`
  // members, and their values when inline): its members sorted, its rows at
  // distance 0 sorted, its radius and farthest row set.
  void close_new_cell(int64_t id, const Member* fresh, const A* fresh_vals, int64_t count) {
    auto& z = zeros_[id];
    std::sort(z.begin(), z.end());
    member_order(fresh, count);
    auto& mem = members_[id];
    mem.resize(static_cast<size_t>(count));
    for (int64_t t = 0; t < count; ++t) mem[t] = fresh[order_[t]];
    if (inline_values()) {
      const size_t c = static_cast<size_t>(pool_.p.c);
      auto& vals = member_vals_[id];
      vals.resize(static_cast<size_t>(count) * c);
      for (int64_t t = 0; t < count; ++t)
        copy_values(fresh_vals + order_[t] * c, vals.data() + t * c, c);
    }
    rescan_cell(id);
  }

  // order_ = the permutation of fresh[0, count) into member order. With a
  // float running minimum the bits of a non-negative float order as the
  // float, so the rows are sorted by radix on those 32 bits (stable: equal
  // minima keep their order), then each run of equal minima, rare in real
  // pools, is put in row order, descending. The first steps gather new
  // cells of a large part of the pool: a comparison sort of those was a
  // sixth of a 3-D run, a radix sort on a 64-bit key with the row a tenth.
  void member_order(const Member* fresh, int64_t count) {
    const size_t n = static_cast<size_t>(count);
    order_.resize(n);
    if constexpr (sizeof(A) == 4) {
      if (n >= 64) {
        keyed_.resize(n);
        for (size_t t = 0; t < n; ++t) {
          uint32_t bits;
          std::memcpy(&bits, &fresh[t].mind, sizeof(bits));
          keyed_[t] = Keyed{bits, static_cast<uint32_t>(t)};
        }
        radix_sort(keyed_, keyed_tmp_, 32, [](const Keyed& e) { return uint64_t(e.key); });
        for (size_t t = 0; t < n; ++t) order_[t] = keyed_[t].idx;
        for (size_t t = 0; t + 1 < n;) {
          size_t e = t + 1;
          while (e < n && keyed_[e].key == keyed_[t].key) ++e;
          if (e - t > 1)
            std::sort(order_.begin() + static_cast<std::ptrdiff_t>(t), order_.begin() + static_cast<std::ptrdiff_t>(e),
                      [fresh](uint32_t u, uint32_t v) { return fresh[u].row > fresh[v].row; });
          t = e;
        }
        return;
      }
    }
    for (size_t t = 0; t < n; ++t) order_[t] = static_cast<uint32_t>(t);
    std::sort(order_.begin(), order_.end(), [fresh](uint32_t u, uint32_t v) { return member_less(fresh[u], fresh[v]); });
  }

  // A cell's members into member order (the build: a cell can hold most of
  // the pool when few rows are labeled).
  void sort_members(std::vector<Member>* mem) {
    const int64_t count = static_cast<int64_t>(mem->size());
    if (count < 64) {
      std::sort(mem->begin(), mem->end(), member_less);
      return;
    }
    member_order(mem->data(), count);
    scratch_members_.resize(static_cast<size_t>(count));
    for (int64_t t = 0; t < count; ++t) scratch_members_[t] = (*mem)[order_[t]];
    std::copy(scratch_members_.begin(), scratch_members_.begin() + count, mem->begin());
  }

  // The rest of a step once the cells are updated and the new cell's radius
  // and farthest row are set: the heap, the anchor index, counters, page
  // release.
  StepResult end_step(int64_t id, int64_t rows, int64_t computed) {
    P& q = pool_;
    if (zero_from_ >= 0 && far_[zero_from_] >= 0 && !is_eligible(q.mind[far_[zero_from_]])) set_cell(zero_from_, A(-1), -1);
    heap_.push(id, q.radius2[id], far_[id]);
    if (use_grid()) grid_.add(id);
    else anchors_.add(id);
    q.stats.steps += 1;
    q.stats.cell_steps += 1;
    q.stats.cells_visited += static_cast<int64_t>(affected_.size());
    q.stats.rows_visited += visit_rows_;
    q.stats.rows_computed += computed;
    if (q.p.release_pages) {
      touched_bytes_ += computed * q.p.c * static_cast<int64_t>(sizeof(S));
      if (touched_bytes_ > (int64_t(64) << 20)) {  // random rows: hand the pool's pages back now and then
        q.release_rows(0, q.p.n);
        touched_bytes_ = 0;
      }
    }
    return heap_.top();
  }

  // ---- steps over short rows (values kept in the cells) ----

  // One work item of a parallel cell step, the distance unrolled for this C.
  void run_item(Item& it, const A* ctr, int32_t id32) {
    switch (pool_.p.c) {
      case 1: return run_item_c<1>(it, ctr, id32);
      case 2: return run_item_c<2>(it, ctr, id32);
      case 3: return run_item_c<3>(it, ctr, id32);
      case 4: return run_item_c<4>(it, ctr, id32);
      case 5: return run_item_c<5>(it, ctr, id32);
      case 6: return run_item_c<6>(it, ctr, id32);
      case 7: return run_item_c<7>(it, ctr, id32);
      case 8: return run_item_c<8>(it, ctr, id32);
      default: return run_item_c<-1>(it, ctr, id32);
    }
  }

  // kC > 0: inline values of kC columns; -1: inline values, any C. Every row
  // of the item is in reach (a suffix of its cell).
  template <int kC>
  void run_item_c(Item& it, const A* ctr, int32_t id32) {
    P& q = pool_;
    auto& mem = members_[it.cell];
    const A* vals = member_vals_[it.cell].data();
    const int64_t c = q.p.c;
    for (int64_t t = it.lo; t < it.hi; ++t) {
      Member& e = mem[t];
      const A m = e.mind;
      A d;
      if constexpr (kC > 0) d = sq_dist_small<kC, A>(vals + t * kC, ctr);
      else d = sq_dist_vec(vals + t * c, ctr, c, m);
      if (d < m) {
        const int64_t i = e.row;
        q.mind[i] = d;
        q.nearest[i] = id32;
        e.mind = kMoved;
        ++it.moved;
      }
    }
  }

  // The parallel part of a cell step's combine, per work item: move the
  // moved rows out to the item's buffers, and compact the rest to the front
  // of the item's range, in order. The serial combine then only copies
  // contiguous blocks.
  void compact_item(Item& it) {
    if (it.moved == 0) {
      it.kept = it.hi - it.lo;
      return;
    }
    auto& mem = members_[it.cell];
    const size_t c = static_cast<size_t>(pool_.p.c);
    A* vals = member_vals_[it.cell].data();
    int64_t w = it.lo;
    for (int64_t t = it.lo; t < it.hi; ++t) {
      const Member e = mem[t];
      if (e.mind == kMoved) {
        const A d = pool_.mind[e.row];
        if (d == A(0)) {
          it.moved_zero.push_back(e.row);
          continue;
        }
        it.moved_mem.push_back(Member{e.row, d});
        it.moved_vals.insert(it.moved_vals.end(), vals + t * c, vals + (t + 1) * c);
        continue;
      }
      if (w != t) {
        mem[w] = e;
        copy_values(vals + t * c, vals + w * c, c);
      }
      ++w;
    }
    it.kept = w - it.lo;
  }

  // A step over short rows on nt threads, in work items of kItemRows.
  // Returns the rows computed.
  int64_t parallel_pass(int64_t id, int nt) {
    P& q = pool_;
    const A* ctr = q.center(id);
    const int32_t id32 = static_cast<int32_t>(id);
    q.stats.parallel_steps += 1;
    items_.clear();
    for (size_t k = 0; k < affected_.size(); ++k) {
      const int64_t size = static_cast<int64_t>(members_[affected_[k].cell].size());
      for (int64_t lo = start_[k]; lo < size || lo == start_[k]; lo += kItemRows) {
        items_.emplace_back();
        Item& it = items_.back();
        it.cell = affected_[k].cell;
        it.lo = lo;
        it.hi = std::min(size, lo + kItemRows);
        if (lo >= size) break;
      }
    }
    const int64_t n_items = static_cast<int64_t>(items_.size());
    TeamErrors errors;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t t = 0; t < n_items; ++t)
      errors.run([&] {
        if (t == n_items / 2) injected_failure();
        run_item(items_[t], ctr, id32);
        compact_item(items_[t]);
      });
    errors.rethrow();
    // combine: per cell, join the items' compacted blocks (in order); the new
    // cell gets the items' moved rows (in the order of the cells visited)
    fresh_.clear();
    fresh_vals_.clear();
    const size_t c = static_cast<size_t>(q.p.c);
    int64_t computed = 0;
    size_t t = 0;
    while (t < items_.size()) {
      const int64_t a = items_[t].cell;
      auto& mem = members_[a];
      A* vals = member_vals_[a].data();
      bool moved = false;
      size_t w = static_cast<size_t>(items_[t].lo);
      for (; t < items_.size() && items_[t].cell == a; ++t) {
        const Item& it = items_[t];
        computed += it.hi - it.lo;
        moved = moved || it.moved > 0;
        if (static_cast<size_t>(it.lo) != w && it.kept > 0) {  // w < lo: a forward copy is safe
          std::copy(mem.begin() + it.lo, mem.begin() + it.lo + it.kept, mem.begin() + w);
          std::copy(vals + it.lo * c, vals + (it.lo + it.kept) * c, vals + w * c);
        }
        w += static_cast<size_t>(it.kept);
        fresh_.insert(fresh_.end(), it.moved_mem.begin(), it.moved_mem.end());
        fresh_vals_.insert(fresh_vals_.end(), it.moved_vals.begin(), it.moved_vals.end());
        zeros_[id].insert(zeros_[id].end(), it.moved_zero.begin(), it.moved_zero.end());
      }
      if (moved) {
        mem.resize(w);
        member_vals_[a].resize(w * c);
      }
      reset_cell(a);
    }
    close_new_cell(id, fresh_.data(), fresh_vals_.data(), static_cast<int64_t>(fresh_.size()));
    return computed;
  }

  // A step on one thread over short rows: the rows in reach of each affected
  // cell are read once, kept rows compacted in place (in order) and moved
  // rows gathered for the new cell as it goes. Returns the rows computed.
  int64_t serial_pass(int64_t id) {
    switch (pool_.p.c) {
      case 1: return serial_pass_c<1>(id);
      case 2: return serial_pass_c<2>(id);
      case 3: return serial_pass_c<3>(id);
      case 4: return serial_pass_c<4>(id);
      case 5: return serial_pass_c<5>(id);
      case 6: return serial_pass_c<6>(id);
      case 7: return serial_pass_c<7>(id);
      case 8: return serial_pass_c<8>(id);
      default: return serial_pass_c<-1>(id);
    }
  }

  template <int kC>
  int64_t serial_pass_c(int64_t id) {
    P& q = pool_;
    const A* ctr = q.center(id);
    const int32_t id32 = static_cast<int32_t>(id);
    // a constant for the unrolled sizes: the copies below are a few moves,
    // not a call each
    const int64_t c = kC > 0 ? kC : q.p.c;
    // moved rows gather in reused buffers, sorted into the new cell once
    if (static_cast<int64_t>(scratch_members_.size()) < visit_rows_) scratch_members_.resize(static_cast<size_t>(visit_rows_));
    if (static_cast<int64_t>(scratch_vals_.size()) < visit_rows_ * c) scratch_vals_.resize(static_cast<size_t>(visit_rows_ * c));
    Member* fresh = scratch_members_.data();
    A* fresh_vals = scratch_vals_.data();
    int64_t n_fresh = 0;
    int64_t computed = 0;
    // the pool's arrays as locals: the stores through them below would
    // otherwise make the compiler read their addresses again every row
    A* const mind = q.mind.data();
    int32_t* const nearest = q.nearest.data();
    for (size_t k = 0; k < affected_.size(); ++k) {
      const int64_t a = affected_[k].cell;
      auto& mem = members_[a];
      A* vals = member_vals_[a].data();
      const int64_t size = static_cast<int64_t>(mem.size());
      int64_t keep = start_[k];
      computed += size - keep;
      for (int64_t t = keep; t < size; ++t) {
        const Member e = mem[t];
        const A m = e.mind;
        A d;
        if constexpr (kC > 0) d = sq_dist_small<kC, A>(vals + t * kC, ctr);
        else d = sq_dist_vec(vals + t * c, ctr, c, m);
        if (d < m) {  // moves to the new cell
          const int64_t i = e.row;
          mind[i] = d;
          nearest[i] = id32;
          if (d == A(0)) {
            zeros_[id].push_back(e.row);
            continue;
          }
          fresh[n_fresh] = Member{e.row, d};
          copy_values(vals + t * c, fresh_vals + n_fresh * c, c);
          ++n_fresh;
          continue;
        }
        if (keep != t) {
          mem[keep] = e;
          copy_values(vals + t * c, vals + keep * c, c);
        }
        ++keep;
      }
      if (keep != size) {
        mem.resize(static_cast<size_t>(keep));
        member_vals_[a].resize(static_cast<size_t>(keep * c));
      }
      reset_cell(a);
      if (k == affected_.size() / 2) injected_failure();
    }
    close_new_cell(id, fresh, fresh_vals, n_fresh);
    return computed;
  }

  // ---- steps over long rows (read from the pool) ----

  void prefetch_row(int64_t i) const {
    const char* p = reinterpret_cast<const char*>(pool_.x + i * pool_.p.c);
    const int64_t bytes = std::min<int64_t>(pool_.p.c * static_cast<int64_t>(sizeof(S)), 512);
    for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off);
  }

  // Distances for todo_[j0, j1) (sorted by row), on nt threads in contiguous
  // ranges so each thread still reads the pool forward.
  void compute_sorted(int64_t j0, int64_t j1, const A* ctr, int32_t id32, int nt) {
#pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
      const int64_t tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
      const int64_t tid = 0, nth = 1;
#endif
      const int64_t lo = j0 + (j1 - j0) * tid / nth, hi = j0 + (j1 - j0) * (tid + 1) / nth;
      compute_rows(todo_.data() + lo, hi - lo, ctr, id32);
    }
  }

  // The distances of the rows todo[0, count) to the new center (rows a few
  // places ahead prefetched); a row that comes closer gets its new running
  // minimum and nearest center, and its member is marked kMoved.
  void compute_rows(Member* const* todo, int64_t count, const A* ctr, int32_t id32) {
    P& q = pool_;
    for (int64_t j = 0; j < std::min(count, int64_t(kPrefetchAhead)); ++j) prefetch_row(todo[j]->row);
    for (int64_t j = 0; j < count; ++j) {
      if (j + kPrefetchAhead < count) prefetch_row(todo[j + kPrefetchAhead]->row);
      Member& e = *todo[j];
      const int64_t i = e.row;
      const A d = q.dist_row(i, ctr, e.mind);
      if (d < e.mind) {
        q.mind[i] = d;
        q.nearest[i] = id32;
        e.mind = kMoved;
      }
    }
  }

  // After a pool-reading visit of the rows [from, end) of cell a (members
  // marked kMoved): append the moved ones (with their new running minimum)
  // to fresh, compact the rest in place (in order), and set the cell's
  // radius, farthest row and heap position.
  void compact_cell(int64_t a, int64_t from, Member* fresh, int64_t* n_fresh) {
    compact_members(a, from, [&](uint32_t row, A d) {
      if (d == A(0)) zeros_[fresh_id_].push_back(row);
      else fresh[(*n_fresh)++] = Member{row, d};
    });
    reset_cell(a);
  }

  // Cell a's members from `from` on after their rows were computed: the
  // ones marked kMoved go to moved(row, new running minimum), the rest close
  // up in order.
  template <typename Moved>
  void compact_members(int64_t a, int64_t from, Moved&& moved) {
    auto& mem = members_[a];
    size_t keep = static_cast<size_t>(from);
    for (size_t t = keep; t < mem.size(); ++t) {
      const Member e = mem[t];
      if (e.mind == kMoved) {
        moved(e.row, pool_.mind[e.row]);
        continue;
      }
      mem[keep++] = e;
    }
    mem.resize(keep);
  }

  // The rows to compute (todo_) in ascending row order, so that the pool is
  // read forward.
  void sort_todo() {
    if (todo_.size() < 64) {
      std::sort(todo_.begin(), todo_.end(), [](const Member* x, const Member* y) { return x->row < y->row; });
      return;
    }
    radix_sort(todo_, todo_tmp_, 32, [](const Member* e) { return uint64_t(e->row); });
  }

  // Per thread of a cells_pass: the rows it computes (a group of cells at a
  // time) and the rows that moved to the new cell.
  struct Lane {
    std::vector<Member*> todo;
    std::vector<Member> fresh;
    std::vector<uint32_t> zero;
    int64_t computed = 0, visited = 0, checked = 0, rejected = 0;
  };
  // Affected cells per work item of a cells_pass (a few rows each, most
  // often: enough to prefetch rows ahead and to amortise the hand-out).
  static constexpr int64_t kCellGroup = 16;
  // Projection records fetched ahead of the one checked.
  static constexpr int64_t kProjAhead = 8;

  // The projection bound over the rows a step would compute: those it
  // proves keep their running minimum leave `todo` (in order; their values
  // are never read). Their records are scattered over the pool's rows, so
  // the ones a few places ahead are fetched. Returns the rows ruled out.
  int64_t drop_kept(std::vector<Member*>* todo, const Projection<S>* proj, const typename Projection<S>::Center& pc) {
    auto& v = *todo;
    const int64_t asked = static_cast<int64_t>(v.size());
    for (int64_t j = 0; j < std::min<int64_t>(asked, kProjAhead); ++j) proj->prefetch(v[j]->row);
    int64_t w = 0;
    for (int64_t j = 0; j < asked; ++j) {
      if (j + kProjAhead < asked) proj->prefetch(v[j + kProjAhead]->row);
      Member* e = v[j];
      if (!proj->keeps(e->row, pc, e->mind)) v[w++] = e;
    }
    v.resize(static_cast<size_t>(w));
    return asked - w;
  }

  // A step whose rows are read from an in-memory pool (C > kInlineValues),
  // cell by cell: each thread takes a group of affected cells, computes
  // the rows in reach (prefetching rows ahead), compacts the cells in place
  // and keeps the rows that moved. Then, on the calling thread, the cells'
  // radii go into the heap and the moved rows form the new cell (sorted
  // there, so the order the threads gathered them in does not matter).
  // Returns the rows computed.
  int64_t cells_pass(int64_t id, int nt) {
    P& q = pool_;
    const A* ctr = q.center(id);
    const int32_t id32 = static_cast<int32_t>(id);
    const Projection<S>* proj = proj_;
    const typename Projection<S>::Center pc = proj ? proj->center(id) : typename Projection<S>::Center{};
    const int64_t na = static_cast<int64_t>(affected_.size());
    const int64_t groups = (na + kCellGroup - 1) / kCellGroup;
    if (lanes_.size() < static_cast<size_t>(nt)) lanes_.resize(static_cast<size_t>(nt));
    for (int t = 0; t < nt; ++t) {  // a lane whose thread does not come stays empty
      Lane& lane = lanes_[static_cast<size_t>(t)];
      lane.fresh.clear();
      lane.zero.clear();
      lane.computed = lane.visited = lane.checked = lane.rejected = 0;
    }
    start_.resize(static_cast<size_t>(na));
    cell_r2_.resize(static_cast<size_t>(na));
    cell_far_.resize(static_cast<size_t>(na));
    if (nt > 1) q.stats.parallel_steps += 1;
    TeamErrors errors;
#pragma omp parallel num_threads(nt)
    {
      Lane& lane = lanes_[static_cast<size_t>(thread_id())];
#pragma omp for schedule(dynamic, 1)
      for (int64_t g = 0; g < groups; ++g) errors.run([&] {
        if (g == groups / 2) injected_failure();
        const int64_t k0 = g * kCellGroup, k1 = std::min(na, k0 + kCellGroup);
        lane.todo.clear();
        for (int64_t k = k0; k < k1; ++k) __builtin_prefetch(&members_[affected_[k].cell]);
        for (int64_t k = k0; k < k1; ++k) prefetch_members(members_[affected_[k].cell], -1);
        for (int64_t k = k0; k < k1; ++k) {
          const auto& mem = members_[affected_[k].cell];
          start_[k] = suffix_in_reach(mem, affected_[k].dcc2);
          lane.visited += static_cast<int64_t>(mem.size()) - start_[k];
        }
        for (int64_t k = k0; k < k1; ++k) {
          auto& mem = members_[affected_[k].cell];
          for (size_t t = static_cast<size_t>(start_[k]); t < mem.size(); ++t) lane.todo.push_back(&mem[t]);
        }
        if (proj) {
          lane.checked += static_cast<int64_t>(lane.todo.size());
          lane.rejected += drop_kept(&lane.todo, proj, pc);
        }
        lane.computed += static_cast<int64_t>(lane.todo.size());
        compute_rows(lane.todo.data(), static_cast<int64_t>(lane.todo.size()), ctr, id32);
        for (int64_t k = k0; k < k1; ++k) {
          const int64_t a = affected_[k].cell;
          compact_members(a, start_[k], [&lane](uint32_t row, A d) {
            if (d == A(0)) lane.zero.push_back(row);
            else lane.fresh.push_back(Member{row, d});
          });
          A r2 = A(-1);
          int64_t far = -1;
          last_member(a, &r2, &far);
          cell_r2_[k] = r2;
          cell_far_[k] = far;
        }
      });
    }
    errors.rethrow();
    int64_t computed = 0, n_fresh = 0;
    visit_rows_ = 0;
    for (int t = 0; t < nt; ++t) {
      Lane& lane = lanes_[static_cast<size_t>(t)];
      computed += lane.computed;
      visit_rows_ += lane.visited;
      q.stats.proj_checked += lane.checked;
      q.stats.proj_rejected += lane.rejected;
      n_fresh += static_cast<int64_t>(lane.fresh.size());
      zeros_[id].insert(zeros_[id].end(), lane.zero.begin(), lane.zero.end());
    }
    for (int64_t k = 0; k < na; ++k) set_cell(affected_[k].cell, cell_r2_[k], cell_far_[k]);
    if (static_cast<int64_t>(scratch_members_.size()) < n_fresh) scratch_members_.resize(static_cast<size_t>(n_fresh));
    Member* fresh = scratch_members_.data();
    int64_t w = 0;
    for (int t = 0; t < nt; ++t) {
      const auto& f = lanes_[static_cast<size_t>(t)].fresh;
      std::copy(f.begin(), f.end(), fresh + w);
      w += static_cast<int64_t>(f.size());
    }
    close_new_cell(id, fresh, nullptr, n_fresh);
    return computed;
  }

  // A step whose rows are read from the pool (C > kInlineValues) in pool
  // order (file-backed pools, and steps where one cell holds much of the
  // rows: see finish_step): the rows that need a distance, over all the
  // cells visited, are listed and sorted by row, so the pool is read forward
  // as the dense pass reads it (its rows are scattered over the cells);
  // enough of them run on several threads, in even shares. Then each cell is
  // compacted and the new cell gathered. Returns the rows computed.
  int64_t pool_pass(int64_t id) {
    P& q = pool_;
    const A* ctr = q.center(id);
    const int32_t id32 = static_cast<int32_t>(id);
    todo_.clear();
    const Projection<S>* proj = proj_;
    const typename Projection<S>::Center pc = proj ? proj->center(id) : typename Projection<S>::Center{};
    for (size_t k = 0; k < affected_.size(); ++k) {
      auto& mem = members_[affected_[k].cell];
      for (size_t t = static_cast<size_t>(start_[k]); t < mem.size(); ++t) todo_.push_back(&mem[t]);
    }
    if (proj) {  // asked about every row in reach, before it drops some
      q.stats.proj_checked += static_cast<int64_t>(todo_.size());
      q.stats.proj_rejected += drop_kept(&todo_, proj, pc);
    }
    sort_todo();
    const int64_t count = static_cast<int64_t>(todo_.size());
    const int nt = count * q.p.c >= kParallelValues ? q.team() : 1;
    if (nt > 1) q.stats.parallel_steps += 1;
    injected_failure();
    // File-backed pools: the sweep goes forward in row tiles, each tile's
    // pages handed back once read (resident memory stays near a tile).
    int64_t j0 = 0;
    while (j0 < count) {
      int64_t j1 = count;
      if (q.p.release_pages) {
        const int64_t tile_end = (todo_[j0]->row / q.tile + 1) * q.tile;
        j1 = std::lower_bound(todo_.begin() + j0, todo_.end(), tile_end,
                              [](const Member* m, int64_t r) { return static_cast<int64_t>(m->row) < r; }) -
             todo_.begin();
      }
      compute_sorted(j0, j1, ctr, id32, (j1 - j0) * q.p.c >= kParallelValues ? nt : 1);
      if (q.p.release_pages) q.release_rows(todo_[j0]->row, static_cast<int64_t>(todo_[j1 - 1]->row) + 1);
      j0 = j1;
    }
    if (static_cast<int64_t>(scratch_members_.size()) < visit_rows_) scratch_members_.resize(static_cast<size_t>(visit_rows_));
    Member* fresh = scratch_members_.data();
    int64_t n_fresh = 0;
    fresh_id_ = id;
    for (size_t k = 0; k < affected_.size(); ++k) {
      if (k + kCellAhead < affected_.size()) prefetch_members(members_[affected_[k + kCellAhead].cell], start_[k + kCellAhead]);
      compact_cell(affected_[k].cell, start_[k], fresh, &n_fresh);
    }
    close_new_cell(id, fresh, nullptr, n_fresh);
    return count;
  }

  P& pool_;
  std::vector<std::vector<Member>> members_;  // rows at distance > 0 from the center
  std::vector<std::vector<uint32_t>> zeros_;  // rows at distance 0, ascending (taken ones skipped lazily)
  std::vector<size_t> zhead_;                // zeros_[a][zhead_[a]] is the first that may be eligible
  int64_t zero_from_ = -1;                   // the cell of a picked row at distance 0, this step
  int64_t fresh_id_ = -1;                    // the new cell, this step (compact_cell)
  std::vector<std::vector<A>> member_vals_;  // inline values, c per member, in member order
  std::vector<int64_t> far_;                 // each cell's farthest row (lowest index); -1 when empty
  CellHeap<A> heap_;
  AnchorIndex<S> anchors_;
  GridIndex<S> grid_;
  std::vector<Affected<A>> affected_;  // the cells of the current step
  std::vector<Item> items_;
  std::vector<Member> scratch_members_;
  std::vector<A> scratch_vals_;
  std::vector<Member*> todo_, todo_tmp_;
  std::vector<int64_t> start_;  // per affected cell: its first member in reach
  int64_t max_cell_ = 0;        // the most rows of one affected cell, this step
  std::vector<Lane> lanes_;     // per thread of a cells_pass
  std::vector<A> cell_r2_;      // per affected cell after a cells_pass: radius and farthest row
  std::vector<int64_t> cell_far_;
  int64_t visit_rows_ = 0;      // rows in reach over the affected cells, this step
  std::vector<Member> fresh_;   // the new cell's members and values, gathered (parallel steps)
  std::vector<A> fresh_vals_;
  std::vector<uint32_t> order_;
  struct Keyed {
    uint32_t key;  // the running minimum's bits
    uint32_t idx;
  };
  std::vector<Keyed> keyed_, keyed_tmp_;
  int64_t touched_bytes_ = 0;
  const Projection<S>* proj_ = nullptr;
  int64_t fail_at_ = 0;  // see fail_at
};

}  // namespace
}  // namespace PCS_ISA
}  // namespace pcoreset
