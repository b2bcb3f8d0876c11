// Prioritized experience replay (Schaul et al., 2016) over a ReplayBuffer, by composition.
//
// Priorities. Each stored slot keeps a raw priority r = p + eps, where p >= 0 is what the user
// passes to update_priorities (typically |TD error|) and eps >= 0 is fixed at construction. The
// sampling mass of a slot is its leaf r^alpha; the sum tree holds the masses, the min tree their
// positive minimum. alpha can change at any time: the leaves are recomputed from the stored raw
// priorities (O(N)). New rows enter with the largest raw priority seen so far (1 at the start, kept
// as a running maximum), set inside the buffer's locked write.
//
// Sampling is proportional and stratified: the total mass S is cut into B equal slices and one
// point is drawn uniformly in each, with the buffer's own generator; sample i therefore lies in
// slice i. The importance weight of a sampled slot is (N * P(i))^-beta divided by the largest
// possible weight (N * P_min)^-beta; N and S cancel, so it is computed as (m_min / m_i)^beta with
// m the leaf masses. Zero-mass slots (p + eps == 0) are never sampled and do not count for P_min.
//
// Ids are the buffer's monotonically increasing row ids. update_priorities ignores ids whose slot
// was overwritten since they were sampled (id < total - size): a stale update never gives a new
// row an old priority.
//
// Costs: sample O(B log N + B * row_bytes); update_priorities O(B log N); a write of R rows
// O(R + log N) extra; set_alpha O(N). Thread safety: all state is guarded by the buffer's own
// mutex (through its composite hooks), so one writer and any number of samplers / updaters may run
// on different threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fastrl/replay_buffer.hpp"
#include "fastrl/sum_tree.hpp"

namespace fastrl {

class PrioritizedReplayBuffer : private SlotObserver {
 public:
  PrioritizedReplayBuffer(std::vector<FieldSpec> specs, std::int64_t capacity, std::int64_t num_envs,
                          std::uint64_t seed, double alpha, double eps, double episode_returns_gamma = -1.0,
                          const StorageOptions& storage = {})
      : base_(std::move(specs), capacity, num_envs, seed, episode_returns_gamma, storage),
        sum_(base_.capacity()),
        min_(base_.capacity()),
        raw_(static_cast<double*>(std::calloc(static_cast<std::size_t>(base_.capacity()), sizeof(double))),
             [](double* p) { std::free(p); }),
        eps_(eps) {
    if (!raw_) throw std::bad_alloc();
    check_alpha(alpha);
    if (!(eps >= 0.0) || !std::isfinite(eps))
      throw std::invalid_argument("eps must be a finite number >= 0, got " + std::to_string(eps));
    alpha_ = alpha;
    // Leaves above this bound could overflow the total of a full tree.
    max_leaf_ = std::numeric_limits<double>::max() / static_cast<double>(2 * base_.capacity());
    base_.set_observer(this);
  }
  ~PrioritizedReplayBuffer() override { base_.set_observer(nullptr); }

  ReplayBuffer& base() { return base_; }
  const ReplayBuffer& base() const { return base_; }
  std::int64_t capacity() const { return base_.capacity(); }
  double eps() const { return eps_; }
  double alpha() const { return base_.with_lock([&](Ring) { return alpha_; }); }
  double max_priority() const { return base_.with_lock([&](Ring) { return max_raw_; }); }
  // Total mass S and the smallest positive leaf (+inf when none).
  double total_mass() const { return base_.with_lock([&](Ring) { return sum_.root(); }); }
  double min_mass() const { return base_.with_lock([&](Ring) { return min_.root(); }); }
  // Raw priorities (p + eps) by slot: shared so a view of it outlives the buffer. Not synchronised.
  std::shared_ptr<double> raw_priorities() const { return raw_; }

  // Draws B ids by stratified proportional sampling, their weights (computed in float64, stored
  // as W: float or double) and, for every non-null out, the rows' fields; one lock. Throws when
  // empty or when every mass is zero.
  // With `nstep` the rows are gathered as n-step targets (ReplayBuffer::gather_nstep).
  template <class W>
  void sample(std::int64_t batch_size, double beta, std::int64_t* ids, W* weights, void* const* outs,
              const NStep* nstep = nullptr) {
    check_beta(beta);
    base_.sample_with(
        batch_size,
        [&](Rng& rng, Ring ring, std::int64_t* out, std::int64_t* slots) {
          draw_locked(rng, ring, batch_size, beta, out, slots, weights);
        },
        ids, outs, nstep);
  }

  // New priorities p (P: float or double) for the rows `ids` (raw = p + eps, in float64). Stale
  // ids are skipped; a later duplicate wins. Throws (changing nothing) for p < 0, NaN or inf, for a
  // mass (p + eps)^alpha too large to sum, and for ids never written. Returns the number of
  // updates applied. O(B log N).
  template <class P>
  std::int64_t update_priorities(const std::int64_t* ids, const P* priorities, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i)
      if (!(priorities[i] >= 0) || !std::isfinite(priorities[i]))
        throw std::invalid_argument("priorities must be finite and >= 0 (pass |TD error|), got " +
                                    std::to_string(priorities[i]) + " at position " + std::to_string(i));
    return base_.with_lock([&](Ring ring) {
      for (std::int64_t i = 0; i < n; ++i)
        if (ids[i] < 0 || ids[i] >= ring.total)
          throw std::out_of_range("index " + std::to_string(ids[i]) + " was never written (ids written so far are [0, " +
                                  std::to_string(ring.total) + "))");
      scratch_.resize(static_cast<std::size_t>(n));
      for (std::int64_t i = 0; i < n; ++i) {
        scratch_[i] = mass(static_cast<double>(priorities[i]) + eps_);
        if (!(scratch_[i] <= max_leaf_))
          throw std::invalid_argument("priority " + std::to_string(priorities[i]) + " at position " +
                                      std::to_string(i) + " is too large: (p + eps)^alpha overflows the sum tree");
      }
      // Live ids only (stale ones skipped), as slots; then both trees level by level.
      const Ring::LiveSlots slot_of = ring.live_slots();
      slot_scratch_.resize(static_cast<std::size_t>(2 * n));
      std::int64_t* slots = slot_scratch_.data();
      std::int64_t applied = 0;
      for (std::int64_t i = 0; i < n; ++i) {
        if (ids[i] < slot_of.lo) continue;
        const std::int64_t slot = slot_of(ids[i]);
        const double r = static_cast<double>(priorities[i]) + eps_;
        raw_.get()[slot] = r;
        max_raw_ = std::max(max_raw_, r);
        slots[applied] = slot;
        scratch_[applied] = scratch_[i];  // applied <= i: compacting in place is safe
        ++applied;
      }
      sum_.set_with(min_, slots, scratch_.data(), applied, slots + n, min_leaf);
      return applied;
    });
  }

  // Raw priorities (p + eps) of stored ids into out; std::out_of_range for an id not stored.
  void priorities(const std::int64_t* ids, std::int64_t n, double* out) const {
    base_.with_lock([&](Ring ring) {
      ring.check_live(ids, n);
      for (std::int64_t i = 0; i < n; ++i) out[i] = raw_.get()[ring.slot(ids[i])];
    });
  }

  // Leaf masses by slot (0 for empty slots), a copy. O(N).
  void masses(double* out) const {
    base_.with_lock([&](Ring) {
      for (std::int64_t s = 0; s < base_.capacity(); ++s) out[s] = sum_.get(s);
    });
  }

  // New alpha; every leaf recomputed from the raw priorities. O(N). Throws (changing nothing) if
  // a mass would overflow.
  void set_alpha(double alpha) {
    check_alpha(alpha);
    base_.with_lock([&](Ring ring) {
      for (std::int64_t s = -1; s < ring.size(); ++s)  // -1: the running maximum new rows get
        if (!(std::pow(s < 0 ? max_raw_ : raw_.get()[s], alpha) <= max_leaf_))
          throw std::invalid_argument("alpha " + std::to_string(alpha) + " makes a stored priority overflow the sum tree");
      alpha_ = alpha;
      rebuild_locked(ring.size());
    });
  }

  // Restores the running maximum (for load). Must be finite and > 0.
  void set_max_priority(double r) {
    if (!(r > 0.0) || !std::isfinite(r))
      throw std::invalid_argument("max_priority must be finite and > 0, got " + std::to_string(r));
    base_.with_lock([&](Ring) {
      if (!(mass(r) <= max_leaf_)) throw std::invalid_argument("max_priority is too large for the sum tree");
      max_raw_ = r;
    });
  }

 private:
  static void check_alpha(double alpha) {
    if (!(alpha >= 0.0) || !std::isfinite(alpha))
      throw std::invalid_argument("alpha must be a finite number >= 0, got " + std::to_string(alpha));
  }
  static void check_beta(double beta) {
    if (!(beta >= 0.0) || !std::isfinite(beta))
      throw std::invalid_argument("beta must be a finite number >= 0, got " + std::to_string(beta));
  }

  double mass(double raw) const { return std::pow(raw, alpha_); }
  // The min tree's leaf for a mass: zero-mass slots do not count for the minimum.
  static double min_leaf(double m) { return m > 0.0 ? m : std::numeric_limits<double>::infinity(); }

  template <class W>
  void draw_locked(Rng& rng, Ring ring, std::int64_t b, double beta, std::int64_t* ids, std::int64_t* slots,
                   W* weights) {
    const double s = sum_.root();
    if (!(s > 0.0)) throw std::invalid_argument("cannot sample: every stored priority is zero (use eps > 0)");
    const double slice = s / static_cast<double>(b);
    mass_scratch_.resize(static_cast<std::size_t>(b));
    for (std::int64_t i = 0; i < b; ++i) mass_scratch_[i] = (static_cast<double>(i) + rng.uniform()) * slice;
    leaf_scratch_.resize(static_cast<std::size_t>(b));
    sum_.find_prefix(mass_scratch_.data(), b, slots, leaf_scratch_.data());
    const double m_min = min_.root();
    for (std::int64_t i = 0; i < b; ++i)
      weights[i] = static_cast<W>(beta == 0.0 ? 1.0 : std::pow(m_min / leaf_scratch_[i], beta));
    ring.ids_of_slots(slots, b, ids);
  }

  // Every leaf from the raw priorities of the n stored rows (slots [0, n)); empty slots get no mass.
  void rebuild_locked(std::int64_t n) {
    sum_.assign([&](std::int64_t s) { return s < n ? mass(raw_.get()[s]) : 0.0; });
    min_.assign([&](std::int64_t s) { return min_leaf(sum_.get(s)); });
  }

  // SlotObserver: called by base_ with its lock held.
  void on_write(Ring ring, std::int64_t first_id, std::int64_t rows) noexcept override {
    const double m = mass(max_raw_);
    ring.for_each_run(first_id, rows, [&](std::int64_t slot, std::int64_t, std::int64_t run) {
      std::fill(raw_.get() + slot, raw_.get() + slot + run, max_raw_);
      sum_.fill(slot, run, m);
      min_.fill(slot, run, min_leaf(m));
    });
  }

  void on_restore(Ring ring) noexcept override {
    if (ring.total == 0) {
      max_raw_ = 1.0;
      std::fill(raw_.get(), raw_.get() + base_.capacity(), 0.0);
    }
    rebuild_locked(ring.size());
  }

  ReplayBuffer base_;
  SumTree sum_;
  MinTree min_;
  std::shared_ptr<double> raw_;  // raw priority (p + eps) per slot
  double alpha_ = 0.6;
  double eps_ = 0.0;
  double max_raw_ = 1.0;  // running maximum raw priority: what new rows enter with
  double max_leaf_ = 0.0;
  std::vector<double> scratch_, mass_scratch_, leaf_scratch_;  // guarded by base_'s mutex
  std::vector<std::int64_t> slot_scratch_;
};

}  // namespace fastrl
