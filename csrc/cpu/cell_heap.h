// The max structure over the cells: an indexed binary max-heap ordered by
// (radius, lowest farthest row) with the tie rule of row_math.h, so its top
// is the next pick without a scan. Nodes carry their keys, so a sift reads
// the heap array only (no chase into per-cell arrays). Compiled per
// instruction set (included by kcenter_cpu.cpp only).
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "distance.h"

namespace pcoreset {
namespace PCS_ISA {
namespace {

template <typename A>
class CellHeap {
 public:
  void clear(int64_t cells) {
    heap_.clear();
    pos_.assign(static_cast<size_t>(cells), -1);
  }

  // Cell a with squared radius r2 (-1 when it has no eligible row) and
  // farthest row far (-1 when none).
  void push(int64_t a, A r2, int64_t far) {
    if (static_cast<int64_t>(pos_.size()) <= a) pos_.resize(static_cast<size_t>(a) + 1, -1);
    const Node x = node(a, r2, far);
    heap_.push_back(x);
    sift(heap_.size() - 1, x);
  }

  // Cell a's key changed.
  void fix(int64_t a, A r2, int64_t far) { sift(static_cast<size_t>(pos_[a]), node(a, r2, far)); }

  StepResult top() const {
    if (heap_.empty() || heap_[0].r2 < A(0)) return StepResult{-1, 0.0};
    return StepResult{heap_[0].far, static_cast<double>(heap_[0].r2)};
  }

 private:
  struct Node {
    A r2;         // cell radius (squared); -1 for a cell with no eligible row
    int64_t far;  // its farthest row (lowest index); INT64_MAX when empty
    int64_t cell;
  };
  static Node node(int64_t a, A r2, int64_t far) {
    return Node{r2, far < 0 ? std::numeric_limits<int64_t>::max() : far, a};
  }
  static bool above(const Node& x, const Node& y) { return better(x.r2, x.far, y.r2, y.far); }
  void place(size_t pos, const Node& x) {
    heap_[pos] = x;
    pos_[x.cell] = static_cast<int64_t>(pos);
  }
  void sift(size_t pos, Node x) {
    while (pos > 0) {
      const size_t parent = (pos - 1) / 2;
      if (!above(x, heap_[parent])) break;
      place(pos, heap_[parent]);
      pos = parent;
    }
    const size_t size = heap_.size();
    for (;;) {
      size_t child = 2 * pos + 1;
      if (child >= size) break;
      if (child + 1 < size && above(heap_[child + 1], heap_[child])) ++child;
      if (!above(heap_[child], x)) break;
      place(pos, heap_[child]);
      pos = child;
    }
    place(pos, x);
  }

  std::vector<Node> heap_;
  std::vector<int64_t> pos_;
};

}  // namespace
}  // namespace PCS_ISA
}  // namespace pcoreset
