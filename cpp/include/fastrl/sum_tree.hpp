// Segment trees over float64 leaves: a sum tree (total mass and prefix-sum search) and a min tree.
//
// Layout: a complete binary tree in one array; the root is node 1, node k has children 2k and 2k+1,
// and the n leaves sit at [P, P + n) where P is the smallest power of two >= n. Unused leaves hold
// the identity (0 for sums, +inf for minima).
//
// No drift: every parent is recomputed from its two children (never adjusted by a difference), so
// a node's value is a pure function of the leaves below it, whatever order the updates came in; the
// root equals a fresh pairwise re-sum of the leaves bit for bit.
//
// Costs: set O(log N); set over B leaves O(B log N); fill of a contiguous range of R leaves
// O(R + log N); assign (all leaves) O(N); find_prefix O(log N), batched with prefetching so the
// B descents overlap their cache misses. Not thread-safe: the owner serialises access.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

namespace fastrl {

struct SumOp {
  static constexpr double identity() { return 0.0; }
  static double combine(double a, double b) { return a + b; }
};

struct MinOp {
  static constexpr double identity() { return std::numeric_limits<double>::infinity(); }
  static double combine(double a, double b) { return std::min(a, b); }
};

template <class Op>
class SegmentTree {
 public:
  explicit SegmentTree(std::int64_t n) : n_(n) {
    while (leaf0_ < n) leaf0_ <<= 1;
    t_.assign(static_cast<std::size_t>(2 * leaf0_), Op::identity());
  }

  std::int64_t size() const { return n_; }
  double root() const { return t_[1]; }
  double get(std::int64_t i) const { return t_[leaf0_ + i]; }

  // Leaf i = v, then its ancestors recomputed. O(log N).
  void set(std::int64_t i, double v) {
    std::size_t k = static_cast<std::size_t>(leaf0_ + i);
    t_[k] = v;
    for (k >>= 1; k >= 1; k >>= 1) t_[k] = Op::combine(t_[2 * k], t_[2 * k + 1]);
  }

  // Leaves [first, first + count) = v, then the covering parents level by level. O(count + log N).
  void fill(std::int64_t first, std::int64_t count, double v) {
    if (count <= 0) return;
    std::size_t lo = static_cast<std::size_t>(leaf0_ + first), hi = lo + static_cast<std::size_t>(count) - 1;
    std::fill(t_.begin() + lo, t_.begin() + hi + 1, v);
    while (lo > 1) {
      lo >>= 1;
      hi >>= 1;
      for (std::size_t k = lo; k <= hi; ++k) t_[k] = Op::combine(t_[2 * k], t_[2 * k + 1]);
    }
  }

  // Every leaf i = leaf(i), every parent recomputed. O(N); allocates nothing.
  template <class F>
  void assign(F&& leaf) {
    for (std::int64_t i = 0; i < n_; ++i) t_[leaf0_ + i] = leaf(i);
    std::fill(t_.begin() + leaf0_ + n_, t_.end(), Op::identity());
    for (std::int64_t k = leaf0_ - 1; k >= 1; --k) t_[k] = Op::combine(t_[2 * k], t_[2 * k + 1]);
  }

 protected:
  std::int64_t n_;
  std::int64_t leaf0_ = 1;  // index of leaf 0
  std::vector<double> t_;
};

using MinTree = SegmentTree<MinOp>;

class SumTree : public SegmentTree<SumOp> {
 public:
  using SegmentTree<SumOp>::SegmentTree;

  // Leaf whose cumulative interval [prefix, prefix + leaf) holds `mass` (0 <= mass, root() > 0).
  // Only leaves with positive mass are returned: where rounding puts `mass` at or past the end of
  // a subtree, the descent stays on the side that has mass. O(log N).
  std::int64_t find_prefix(double mass) const {
    std::size_t k = 1;
    const std::size_t leaf0 = static_cast<std::size_t>(leaf0_);
    while (k < leaf0) {
      const double left = t_[2 * k];
      if (mass < left || !(t_[2 * k + 1] > 0.0)) {
        k = 2 * k;
      } else {
        mass -= left;
        k = 2 * k + 1;
      }
    }
    return static_cast<std::int64_t>(k - leaf0);
  }

  // find_prefix for n masses at once, level by level: each level prefetches the next level's
  // nodes of every query, so the n descents overlap their memory latency. `node` is scratch (n).
  void find_prefix(double* mass, std::int64_t n, std::int64_t* out, std::size_t* node) const {
    const std::size_t leaf0 = static_cast<std::size_t>(leaf0_);
    for (std::int64_t i = 0; i < n; ++i) node[i] = 1;
    for (std::size_t level = 1; level < leaf0; level <<= 1) {
      for (std::int64_t i = 0; i < n; ++i) {
        const std::size_t k = node[i];
        const double left = t_[2 * k];
        std::size_t c;
        if (mass[i] < left || !(t_[2 * k + 1] > 0.0)) {
          c = 2 * k;
        } else {
          mass[i] -= left;
          c = 2 * k + 1;
        }
        node[i] = c;
        if (2 * c < t_.size()) __builtin_prefetch(&t_[2 * c]);
      }
    }
    for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<std::int64_t>(node[i] - leaf0);
  }
};

}  // namespace fastrl
