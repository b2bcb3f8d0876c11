// Segment trees over float64 leaves: a sum tree (total mass and prefix-sum search) and a min tree.
//
// Layout: a K-ary tree (K = 4 by default) stored level by level in one 64-byte aligned array.
// Level `depth` holds the n leaves; level l - 1 holds one node per K consecutive nodes of level
// l; level 0 is the root. Every level is padded to a multiple of K with the identity (0 for sums,
// +inf for minima), so a node's K children are contiguous and share a cache line. A prefix
// search touches one line per level, depth = ceil(log_K n) levels instead of log_2 n: a quarter
// of the dependent cache misses and branches of a binary tree for K = 4 and large n.
//
// No drift: every parent is recomputed from its K children, in child order ((c0 + c1) + c2) + ...,
// never adjusted by a difference, so a node's value is a pure function of the leaves below it
// whatever order the updates came in; the root equals a fresh re-sum of the leaves in that order
// bit for bit (tests/reference.py rebuilds it).
//
// Costs: set O(K log_K N); set of B leaves O(B K log_K N); fill of a contiguous range of R leaves
// O(R + K log_K N); assign (all leaves) O(N); find_prefix O(K log_K N), batched so the B descents
// overlap their cache misses. Not thread-safe: the owner serialises access.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>
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

template <class Op, int K = 4>
class SegmentTree {
  static_assert(K >= 2 && (K & (K - 1)) == 0, "the fan-out must be a power of two");

 public:
  static constexpr int kFanout = K;

  explicit SegmentTree(std::int64_t n) : n_(n) {
    // Level sizes from the leaves up, each padded to a multiple of K (the root level to 1).
    std::vector<std::int64_t> sizes{n};
    while (sizes.back() > 1) sizes.push_back((sizes.back() + K - 1) / K);
    depth_ = static_cast<int>(sizes.size()) - 1;
    std::int64_t total = 0;
    for (int l = 0; l <= depth_; ++l) {
      offset_.push_back(total);
      const std::int64_t s = sizes[depth_ - l];
      total += l == 0 ? K : (s + K - 1) / K * K;  // the root level also gets a full line
    }
    void* p = std::aligned_alloc(64, static_cast<std::size_t>((total * 8 + 63) / 64 * 64));
    if (!p) throw std::bad_alloc();
    t_.reset(static_cast<double*>(p));
    std::fill(t_.get(), t_.get() + total, Op::identity());
  }

  std::int64_t size() const { return n_; }
  int depth() const { return depth_; }
  double root() const { return t_[0]; }
  double get(std::int64_t i) const { return leaves()[i]; }

  // Leaf i = v, then its ancestors recomputed. O(K log_K N).
  void set(std::int64_t i, double v) {
    leaves()[i] = v;
    for (int l = depth_ - 1; l >= 0; --l) {
      i /= K;
      level(l)[i] = combine_children(level(l + 1) + i * K);
    }
  }

  // Leaves idx[q] = v[q] for q < n (a later duplicate wins), then their ancestors level by level,
  // so the n recomputations of a level are independent. `scratch` holds n indices. O(n K log_K N);
  // with sorted idx (what stratified sampling returns) a shared ancestor is recomputed once, so the
  // upper levels cost O(nodes there) instead of O(n).
  void set(const std::int64_t* idx, const double* v, std::int64_t n, std::int64_t* scratch) {
    for (std::int64_t q = 0; q < n; ++q) leaves()[idx[q]] = v[q];
    recompute_ancestors(idx, n, scratch, [this](int l, std::int64_t p) { update_node(l, p); });
  }

  // This tree's leaves idx[q] = v[q] and `other`'s leaves idx[q] = w(v[q]), then the ancestors of
  // both in one pass (the two trees have the same shape). O(n K log_K N), as set.
  template <class OtherOp, class W>
  void set_with(SegmentTree<OtherOp, K>& other, const std::int64_t* idx, const double* v, std::int64_t n,
                std::int64_t* scratch, W&& w) {
    for (std::int64_t q = 0; q < n; ++q) {
      leaves()[idx[q]] = v[q];
      other.leaves()[idx[q]] = w(v[q]);
    }
    recompute_ancestors(idx, n, scratch, [this, &other](int l, std::int64_t p) {
      update_node(l, p);
      other.update_node(l, p);
    });
  }

  // Leaves [first, first + count) = v, then the covering parents level by level. O(count + K log N).
  void fill(std::int64_t first, std::int64_t count, double v) {
    if (count <= 0) return;
    std::fill(leaves() + first, leaves() + first + count, v);
    std::int64_t lo = first, hi = first + count - 1;
    for (int l = depth_ - 1; l >= 0; --l) {
      lo /= K;
      hi /= K;
      for (std::int64_t k = lo; k <= hi; ++k) level(l)[k] = combine_children(level(l + 1) + k * K);
    }
  }

  // Every leaf i = leaf(i), every parent recomputed. O(N); allocates nothing.
  template <class F>
  void assign(F&& leaf) {
    for (std::int64_t i = 0; i < n_; ++i) leaves()[i] = leaf(i);
    std::int64_t count = n_;
    for (int l = depth_ - 1; l >= 0; --l) {
      count = (count + K - 1) / K;
      for (std::int64_t k = 0; k < count; ++k) level(l)[k] = combine_children(level(l + 1) + k * K);
    }
  }

 protected:
  template <class, int>
  friend class SegmentTree;

  void update_node(int l, std::int64_t p) { level(l)[p] = combine_children(level(l + 1) + p * K); }

  // Calls node(l, p) for every ancestor p at level l of the leaves idx[0..n), deepest level first;
  // equal neighbours are merged, so with sorted idx each ancestor is visited once.
  template <class F>
  void recompute_ancestors(const std::int64_t* idx, std::int64_t n, std::int64_t* scratch, F&& node) const {
    const std::int64_t* cur = idx;
    for (int l = depth_ - 1; l >= 0; --l) {
      std::int64_t m = 0, prev = -1;
      for (std::int64_t q = 0; q < n; ++q) {
        const std::int64_t p = cur[q] / K;
        if (p == prev) continue;
        node(l, p);
        scratch[m++] = prev = p;
      }
      n = m;
      cur = scratch;
    }
  }

  double* level(int l) { return t_.get() + offset_[l]; }
  const double* level(int l) const { return t_.get() + offset_[l]; }
  double* leaves() { return level(depth_); }
  const double* leaves() const { return level(depth_); }

  static double combine_children(const double* c) {
    double acc = c[0];
    for (int j = 1; j < K; ++j) acc = Op::combine(acc, c[j]);
    return acc;
  }

  struct Free {
    void operator()(double* p) const { std::free(p); }
  };

  std::int64_t n_;
  int depth_ = 0;
  std::vector<std::int64_t> offset_;  // start of each level, root first
  std::unique_ptr<double[], Free> t_;
};

using MinTree = SegmentTree<MinOp>;

class SumTree : public SegmentTree<SumOp> {
  static constexpr int K = kFanout;

 public:
  using SegmentTree<SumOp>::SegmentTree;

  // For each of the n masses (0 <= mass, root() > 0), the leaf whose cumulative interval
  // [prefix, prefix + leaf) holds it, into out. At each node the child taken is the first whose
  // running sum c0 + ... + cj exceeds the mass; where rounding leaves the mass at or past the
  // node's end it is the last child with positive mass, so only leaves with positive mass are
  // returned. The n descents go level by level with prefetching, overlapping their cache misses.
  // `mass` is used as scratch; `leaf`, when given, receives each found leaf's value. O(n K log_K N).
  void find_prefix(double* mass, std::int64_t n, std::int64_t* out, double* leaf = nullptr) const {
    for (std::int64_t q = 0; q < n; ++q) out[q] = 0;
    if (depth_ == 0 && leaf)  // one leaf, which is the root
      for (std::int64_t q = 0; q < n; ++q) leaf[q] = t_[0];
    for (int l = 1; l <= depth_; ++l) {
      const double* base = level(l);
      const double* next = l < depth_ ? level(l + 1) : nullptr;
      for (std::int64_t q = 0; q < n; ++q) {
        const double* c = base + out[q] * K;
        const double m = mass[q];
        double cum = 0.0, before = 0.0;
        int child = 0, last_positive = 0;
        for (int j = 0; j < K; ++j) {
          const double upto = cum + c[j];  // 0.0 + c0 == c0: the same sums as combine_children
          const bool past = upto <= m;
          before = past ? upto : before;
          child += past;
          last_positive = c[j] > 0.0 ? j : last_positive;
          cum = upto;
        }
        if (child > last_positive) {  // rounding put the mass at or past the end: stay on mass
          child = last_positive;
          before = 0.0;
          for (int j = 0; j < child; ++j) before += c[j];
        }
        mass[q] = m - before;
        out[q] = out[q] * K + child;
        if (next) __builtin_prefetch(next + out[q] * K);
        else if (leaf) leaf[q] = c[child];
      }
    }
  }

  std::int64_t find_prefix(double mass) const {
    std::int64_t out;
    find_prefix(&mass, 1, &out);
    return out;
  }
};

}  // namespace fastrl
