// The circular replay buffer: named fields of fixed shape and dtype, one or many env streams.
//
// Layout. Rows are stored time-major: with N env streams, one step of all streams occupies N
// consecutive rows, and row `id` (the id-th row ever written) belongs to stream id % N and lives
// in slot id % capacity (ring.hpp: the id / slot arithmetic). The capacity is a multiple of N, so
// the next step of the same stream is always id + N, and a stream's episodes stay intact and in order.
//
// Fields. At most kMaxFields (64) fields in all, the computed episode-return fields included:
// one limit, checked here, for every binding and composite.
//
// Ids. Every row gets a monotonically increasing 64-bit id; `sample` returns ids, which stay
// meaningful after the slot is overwritten (stale ids are those < total() - size()).
//
// Sampling. Uniform (uniform_sampler.hpp), among the steps whose episode has ended
// (return_sampler.hpp), or by a composite's own draw (`sample_with`).
//
// n-step sampling (nstep.hpp). `sample(..., nstep)` / `gather_nstep` return, for each start id,
// the discounted sum of up to n rewards of its stream; next_observations, terminated and
// truncated come from the last summed step, `discounts` is gamma^k; every other field comes from
// the start id. Costs O(B * (n + row_bytes)).
//
// Episode returns (episode_returns.hpp; with episode_returns_gamma >= 0). Two computed fields follow the
// user's: `returns` (float32) and `has_return` (bool). When a step of stream s is terminated or
// truncated, one backward pass fills every stored step of that episode with its observed
// discounted return-to-go and sets has_return; steps of the episode still running are 0 / false.
// A truncated episode gets its observed partial return (no bootstrap). Steps overwritten before
// the episode ended are simply gone: the return-to-go of a stored step only needs the rewards
// after it, which are newer and so still stored, so every stored step gets its exact value.
// Per stream, the steps with a return are exactly the live ids below episode_starts()[s] (the
// first id of the running episode), so `require_return` sampling is exact and O(B log N).
// Cost: O(1) amortised per written row.
//
// Observations stored once (StorageOptions::observations, see observation_store.hpp): without
// stored next observations the next_observations field has no storage and is read from the
// stream's next row (exceptions kept aside); with frame_stack = k the observations field holds
// single frames and observations / next_observations are sampled as stacks of k (sample_specs()).
// Every read equals what the full layout returns, and the same ids are drawn.
// Frame windows: with k > 1, outs[kNextObs] == outs[kObs] + one frame asks for both as views of
// one [B, k + 1, ...] array (row i at outs[kObs] + i (k + 1) frame bytes; see is_window), which
// copies k + 1 frames per row instead of 2k. 1-step only: an n-step next stack is not the
// observation stack shifted by one.
//
// Storage. Each field's zero-filled storage comes from StorageOptions::allocate (calloc when
// null), e.g. regions of a memory-mapped file (mapped_file.hpp).
//
// Costs: write O(rows * row_bytes); sample O(B * row_bytes), independent of capacity.
// Thread safety: `write`, `sample*`, `gather` and the state accessors lock one mutex, so one
// writer and any number of readers may call them from different threads. Raw storage views
// (`data()`) are not synchronised.
//
// Composites (the prioritized buffer) keep per-slot state beside the rows, by composition and
// without changing the row layout: a SlotObserver hears of every write and reset under the lock
// (any new way of appending rows must notify it too), `sample_with` lets them choose the ids with
// this buffer's generator, and `with_lock` runs their updates under the same mutex, so the rows
// and the composite's state always change together.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fastrl/dtype.hpp"
#include "fastrl/episode_returns.hpp"
#include "fastrl/field_spec.hpp"
#include "fastrl/nstep.hpp"
#include "fastrl/observation_store.hpp"
#include "fastrl/return_sampler.hpp"
#include "fastrl/ring.hpp"
#include "fastrl/rng.hpp"
#include "fastrl/uniform_sampler.hpp"

namespace fastrl {

// Told about row changes while the buffer's lock is held; must not throw or call back into the buffer.
class SlotObserver {
 public:
  virtual ~SlotObserver() = default;
  // Rows [first_id, first_id + rows) were just written (only the last `capacity` of them are
  // kept); `ring` is the buffer after the write.
  virtual void on_write(Ring ring, std::int64_t first_id, std::int64_t rows) noexcept = 0;
  // The stored rows were replaced wholesale (clear() or set_state()); `ring` is the buffer after.
  virtual void on_restore(Ring ring) noexcept = 0;
};

// How fields are stored (see the header comment).
struct StorageOptions {
  ObservationOptions observations;
  // Zero-filled storage of `bytes` bytes (>= 1) for field `field`; null: calloc.
  std::function<std::shared_ptr<std::uint8_t>(std::size_t field, std::size_t bytes)> allocate;
};

class ReplayBuffer {
 public:
  // Field indices of the standard fields.
  static constexpr std::size_t kObs = 0, kRewards = 2, kNextObs = 3, kTerminated = 4, kTruncated = 5;
  // Most fields a buffer may have, the computed `returns` and `has_return` included.
  static constexpr std::size_t kMaxFields = 64;

  // episode_returns_gamma < 0 disables episode returns; in [0, 1] appends `returns` and `has_return`.
  ReplayBuffer(std::vector<FieldSpec> specs, std::int64_t capacity, std::int64_t num_envs,
               std::uint64_t seed, double episode_returns_gamma = -1.0, const StorageOptions& storage = {})
      : specs_(std::move(specs)), num_envs_(num_envs), rng_(seed) {
    const std::size_t computed = episode_returns_gamma >= 0.0 ? 2 : 0;
    if (specs_.size() + computed > kMaxFields)
      throw std::invalid_argument("fields: at most " + std::to_string(kMaxFields - computed) + " fields are supported" +
                                  (computed ? " with episode returns" : "") + ", got " + std::to_string(specs_.size()));
    if (num_envs < 1) throw std::invalid_argument("num_envs must be >= 1, got " + std::to_string(num_envs));
    if (std::isnan(episode_returns_gamma) || episode_returns_gamma > 1.0)
      throw std::invalid_argument("episode_returns_gamma must be in [0, 1], got " +
                                  std::to_string(episode_returns_gamma));
    num_written_ = specs_.size();
    if (episode_returns_gamma >= 0.0) {
      if (specs_.size() <= kTruncated || specs_[kRewards].name != "rewards" || specs_[kTruncated].name != "truncated")
        throw std::invalid_argument("episode returns need the standard fields first");
      returns_gamma_ = episode_returns_gamma;
      specs_.push_back({"returns", {}, DType::Float32});
      specs_.push_back({"has_return", {}, DType::Bool});
      episode_starts_.resize(static_cast<std::size_t>(num_envs));
      for (std::int64_t s = 0; s < num_envs; ++s) episode_starts_[s] = s;
    }
    if (capacity < num_envs)
      throw std::invalid_argument("capacity must be >= num_envs (" + std::to_string(num_envs) +
                                  "), got " + std::to_string(capacity));
    if (specs_.empty()) throw std::invalid_argument("a replay buffer needs at least one field");
    capacity_ = capacity / num_envs * num_envs;
    for (std::size_t i = 0; i < specs_.size(); ++i) {
      for (auto d : specs_[i].shape)
        if (d < 0) throw std::invalid_argument("field '" + specs_[i].name + "' has a negative dimension");
      for (std::size_t j = 0; j < i; ++j)
        if (specs_[j].name == specs_[i].name)
          throw std::invalid_argument("field name '" + specs_[i].name + "' is declared twice");
    }
    const ObservationOptions& oo = storage.observations;
    const bool plain_obs = oo.store_next_observations && oo.frame_stack == 1;
    if (!plain_obs && (specs_.size() <= kTruncated || specs_[kObs].name != "observations" ||
                       specs_[kNextObs].name != "next_observations" || specs_[kNextObs].shape != specs_[kObs].shape ||
                       specs_[kNextObs].dtype != specs_[kObs].dtype))
      throw std::invalid_argument("compact observations and frame stacks need the standard fields first");
    out_specs_ = specs_;
    if (!plain_obs) {
      obs_ = ObservationStore(oo, specs_[kObs].dtype, specs_[kObs].numel(), capacity_, num_envs_);
      for (std::size_t f : {kObs, kNextObs})
        if (oo.frame_stack > 1) out_specs_[f].shape.insert(out_specs_[f].shape.begin(), oo.frame_stack);
    }
    for (std::size_t f = 0; f < specs_.size(); ++f) {
      const auto& s = specs_[f];
      const std::size_t rb = s.row_bytes();
      if (rb != 0 && static_cast<std::uint64_t>(capacity_) > UINT64_MAX / rb)
        throw std::invalid_argument("field '" + s.name + "' is too large");
      if (f == kNextObs && obs_.compact()) {  // read from the next row: no storage
        storage_.emplace_back();
        continue;
      }
      const std::size_t bytes = std::max<std::size_t>(1, static_cast<std::size_t>(capacity_) * rb);
      if (storage.allocate) {
        storage_.push_back(storage.allocate(f, bytes));
        if (!storage_.back()) throw std::bad_alloc();
        continue;
      }
      void* p = std::calloc(bytes, 1);  // large blocks come as lazily-zeroed pages
      if (!p) throw std::bad_alloc();
      storage_.emplace_back(static_cast<std::uint8_t*>(p), [](std::uint8_t* q) { std::free(q); });
    }
  }

  // Per-row shapes as stored (observations: one frame) and as sampled (stacks of frame_stack).
  const std::vector<FieldSpec>& specs() const { return specs_; }
  const std::vector<FieldSpec>& sample_specs() const { return out_specs_; }
  // Whether field `field` has storage (next_observations has none when read from the next row).
  bool is_stored(std::size_t field) const { return static_cast<bool>(storage_.at(field)); }
  const ObservationStore& observation_store() const { return obs_; }
  std::int64_t capacity() const { return capacity_; }
  std::int64_t num_envs() const { return num_envs_; }
  std::int64_t total() const { std::lock_guard<std::mutex> g(mu_); return total_; }
  std::int64_t size() const { std::lock_guard<std::mutex> g(mu_); return ring_locked().size(); }
  std::size_t num_fields() const { return specs_.size(); }
  // Fields a write supplies (the computed `returns` / `has_return` are not among them).
  std::size_t num_written_fields() const { return num_written_; }
  bool has_episode_returns() const { return returns_gamma_ >= 0.0; }
  double episode_returns_gamma() const { return returns_gamma_; }
  // First id of the running episode of each stream (empty without episode returns).
  std::vector<std::int64_t> episode_starts() const { std::lock_guard<std::mutex> g(mu_); return episode_starts_; }
  // dtype of n-step rewards and discounts: float64 when the reward field is, else float32.
  DType nstep_dtype() const {
    return specs_.size() > kRewards && specs_[kRewards].dtype == DType::Float64 ? DType::Float64 : DType::Float32;
  }
  // Shared ownership of a field's storage: a view made from it outlives the buffer.
  std::shared_ptr<std::uint8_t> storage(std::size_t field) const { return storage_.at(field); }
  std::size_t storage_bytes(std::size_t field) const {
    return is_stored(field) ? static_cast<std::size_t>(capacity_) * specs_.at(field).row_bytes() : 0;
  }
  // Bytes of the compact-observation side store (grows with episode ends), and of its fixed parts.
  std::size_t side_bytes() const { std::lock_guard<std::mutex> g(mu_); return obs_.side_bytes(); }
  std::size_t observation_fixed_bytes() const { return obs_.fixed_bytes(); }
  std::int64_t side_rows() const { std::lock_guard<std::mutex> g(mu_); return obs_.side_rows(); }
  // Side entries (slots below size(), ascending, and their next observations) for save / load.
  void side_entries(std::vector<std::int64_t>& slots, std::vector<std::uint8_t>& rows) const {
    std::lock_guard<std::mutex> g(mu_);
    obs_.side_entries(ring_locked().size(), slots, rows);
  }
  void set_side_entries(const std::int64_t* slots, const std::uint8_t* rows, std::int64_t m) {
    std::lock_guard<std::mutex> g(mu_);
    obs_.set_side_entries(ring_locked().size(), slots, rows, m);
  }

  // Appends `rows` rows (a multiple of num_envs), one Source per written field in field order.
  // Every cast is checked before anything is written. O(rows * row_bytes).
  void write(const Source* src, std::int64_t rows) {
    if (rows < 0 || rows % num_envs_ != 0)
      throw std::invalid_argument("number of rows must be a multiple of num_envs (" +
                                  std::to_string(num_envs_) + "), got " + std::to_string(rows));
    for (std::size_t f = 0; f < num_written_; ++f) {
      const auto& s = specs_[f];
      if (!kind_castable(src[f].dtype, s.dtype))
        throw std::invalid_argument(s.name + ": cannot store " + dtype_name(src[f].dtype) +
                                    " values in a " + dtype_name(s.dtype) + " field");
      const std::int64_t bad = first_unrepresentable(src[f].data, src[f].dtype, s.dtype, rows * s.numel());
      if (bad >= 0)
        throw std::invalid_argument(s.name + ": value at flat position " + std::to_string(bad) +
                                    " does not fit in " + dtype_name(s.dtype));
    }
    std::lock_guard<std::mutex> g(mu_);
    if (rows == 0) return;
    obs_.before_write(row_storage_locked(), src, rows);
    // Only the last `capacity` rows can survive: the runs skip the ones that would be overwritten at once.
    for (std::size_t f = 0; f < num_written_; ++f) {
      const auto& s = specs_[f];
      if (!storage_[f]) continue;
      const std::size_t rb = s.row_bytes();
      const std::size_t in_rb = static_cast<std::size_t>(s.numel()) * dtype_size(src[f].dtype);
      const auto* in = static_cast<const std::uint8_t*>(src[f].data);
      ring_locked().for_each_run(total_, rows, [&](std::int64_t slot, std::int64_t offset, std::int64_t n) {
        cast_copy(storage_[f].get() + slot * rb, s.dtype, in + offset * in_rb, src[f].dtype, n * s.numel());
      });
    }
    const std::int64_t first = total_;
    total_ += rows;
    obs_.after_write(row_storage_locked(), src, first, rows);
    if (has_episode_returns()) update_returns_locked(src, first);
    if (observer_) observer_->on_write(ring_locked(), first, rows);
  }

  // Draws B ids (uniformly from the stored rows, or with require_return among the steps whose
  // episode has ended; distinct with replace=false) and gathers every field whose output pointer
  // is not null. With nstep the batch holds n-step targets (outs[kRewards] then has
  // nstep_dtype()). Everything is checked before the generator advances; one lock. Throws when
  // empty or when B is larger than the population without replacement.
  void sample(std::int64_t batch_size, bool replace, std::int64_t* ids, void* const* outs,
              bool require_return = false, const NStep* nstep = nullptr) {
    if (nstep) nstep->check();
    check_window(outs, nstep);
    if (require_return && !has_episode_returns())
      throw std::invalid_argument("require_return needs a buffer built with episode_returns_gamma");
    std::lock_guard<std::mutex> g(mu_);
    if (require_return) return_sampler_.sample(rng_, ring_locked(), episode_starts_.data(), batch_size, replace, ids);
    else sample_uniform(rng_, ring_locked(), batch_size, replace, ids);
    to_slots_locked(ids, batch_size);
    gather_batch_locked(ids, batch_size, outs, nstep);
  }

  // --- composite hooks (see the header comment) ---
  // The observer must outlive the buffer's use of it (the prioritized buffer owns its buffer).
  void set_observer(SlotObserver* observer) { std::lock_guard<std::mutex> g(mu_); observer_ = observer; }

  // Like `sample`, but `draw(rng, ring, ids, slots)` writes the batch_size ids and their slots,
  // under the lock and with this buffer's generator; it must write live ids or throw before
  // changing anything. `outs` may be null to gather nothing. Cost: the draw's plus O(B * row_bytes).
  template <class Draw>
  void sample_with(std::int64_t batch_size, Draw&& draw, std::int64_t* ids, void* const* outs,
                   const NStep* nstep = nullptr) {
    check_batch_size(batch_size);
    if (nstep) nstep->check();
    check_window(outs, nstep);
    std::lock_guard<std::mutex> g(mu_);
    if (total_ == 0) throw std::invalid_argument("cannot sample from an empty buffer");
    slots_.resize(static_cast<std::size_t>(batch_size));
    draw(rng_, ring_locked(), ids, slots_.data());
    if (outs) gather_batch_locked(ids, batch_size, outs, nstep);
  }

  // Whether outs asks for frame windows (see the header comment): stacked observations, and the
  // next observations' output one frame after the observations'.
  bool is_window(const void* const* outs) const {
    return outs && obs_.frame_stack() > 1 && specs_.size() > kNextObs && outs[kObs] &&
           outs[kNextObs] == static_cast<const std::uint8_t*>(outs[kObs]) + obs_.frame_bytes();
  }

  // Runs f(ring) under the lock and returns its result.
  template <class F>
  decltype(auto) with_lock(F&& f) const {
    std::lock_guard<std::mutex> g(mu_);
    return f(ring_locked());
  }

  // n-step targets for the given ids (which must be stored) into outs (null entries are skipped;
  // outs[kRewards] has nstep_dtype()).
  void gather_nstep(const std::int64_t* ids, std::int64_t n, const NStep& nstep, void* const* outs) const {
    nstep.check();
    check_window(outs, &nstep);
    std::lock_guard<std::mutex> g(mu_);
    ring_locked().check_live(ids, n);
    to_slots_locked(ids, n);
    gather_nstep_locked(ids, n, nstep, outs);
  }

  // Copies the rows of `ids` of one field, as sampled, into out (n * sampled row bytes). Ids must be live.
  void gather(std::size_t field, const std::int64_t* ids, std::int64_t n, void* out) const {
    std::lock_guard<std::mutex> g(mu_);
    ring_locked().check_live(ids, n);
    to_slots_locked(ids, n);
    gather_field_locked(field, ids, slots_.data(), n, out);
  }

  // --- state (for save / load) ---
  Rng::State rng_state() const { std::lock_guard<std::mutex> g(mu_); return rng_.state(); }
  // episode_starts: one per stream with episode returns (stream s: s + k * num_envs, at most
  // total + s), empty without.
  void set_state(std::int64_t total, const Rng::State& rng, const std::vector<std::int64_t>& episode_starts = {}) {
    if (total < 0) throw std::invalid_argument("total must be >= 0");
    if (total % num_envs_ != 0) throw std::invalid_argument("total must be a multiple of num_envs");
    if ((rng[0] | rng[1] | rng[2] | rng[3]) == 0) throw std::invalid_argument("rng state must not be all zero");
    if (episode_starts.size() != episode_starts_.size())
      throw std::invalid_argument("episode_starts: expected " + std::to_string(episode_starts_.size()) +
                                  " values, got " + std::to_string(episode_starts.size()));
    for (std::size_t s = 0; s < episode_starts.size(); ++s) {
      const std::int64_t v = episode_starts[s], si = static_cast<std::int64_t>(s);
      if (v < si || v > total + si || (v - si) % num_envs_ != 0)
        throw std::invalid_argument("episode_starts[" + std::to_string(s) + "] = " + std::to_string(v) +
                                    " is not an id of stream " + std::to_string(s) + " in [" + std::to_string(s) +
                                    ", total + " + std::to_string(s) + "]");
    }
    std::lock_guard<std::mutex> g(mu_);
    total_ = total;
    rng_.set_state(rng);
    episode_starts_ = episode_starts;
    obs_.reset();
    if (observer_) observer_->on_restore(ring_locked());
  }
  void clear() {
    std::lock_guard<std::mutex> g(mu_);
    total_ = 0;
    for (std::size_t s = 0; s < episode_starts_.size(); ++s) episode_starts_[s] = static_cast<std::int64_t>(s);
    obs_.reset();
    if (observer_) observer_->on_restore(ring_locked());
  }

 private:
  Ring ring_locked() const { return Ring{num_envs_, capacity_, total_}; }

  // Element i of a field's storage or of a source, of dtype t, as a double.
  static double value_at(const void* base, DType t, std::int64_t i) {
    return detail::visit_dtype(t, [&](auto z) { return static_cast<double>(static_cast<const decltype(z)*>(base)[i]); });
  }

  void check_window(const void* const* outs, const NStep* nstep) const {
    if (nstep && is_window(outs))
      throw std::invalid_argument("frame windows (observations and next_observations as one array) are 1-step only");
  }

  // The fields of a batch whose ids are in `ids` and their slots in slots_, into the non-null outs.
  void gather_batch_locked(const std::int64_t* ids, std::int64_t b, void* const* outs, const NStep* nstep) const {
    if (nstep) return gather_nstep_locked(ids, b, *nstep, outs);
    const bool window = is_window(outs);
    if (window) obs_.gather_windows(row_storage_locked(), ids, slots_.data(), b, static_cast<std::uint8_t*>(outs[kObs]));
    for (std::size_t f = 0; f < specs_.size(); ++f)
      if (outs[f] && !(window && (f == kObs || f == kNextObs))) gather_field_locked(f, ids, slots_.data(), b, outs[f]);
  }

  // n-step targets of ids (their slots in slots_); see nstep.hpp.
  void gather_nstep_locked(const std::int64_t* ids, std::int64_t b, const NStep& ns, void* const* outs) const {
    const auto* term = storage_[kTerminated].get();
    const auto* trunc = storage_[kTruncated].get();
    detail::visit_dtype(specs_[kRewards].dtype, [&](auto z) {
      nstep_.compute(reinterpret_cast<const decltype(z)*>(storage_[kRewards].get()), term, trunc, ring_locked(), ids,
                     slots_.data(), b, ns);
    });
    nstep_.write(nstep_dtype(), outs[kRewards], ns.discounts);
    if (outs[kNextObs] && (!is_stored(kNextObs) || obs_.frame_stack() > 1))  // it needs the last ids
      nstep_.compute_last_ids(ring_locked());
    for (std::size_t f = 0; f < specs_.size(); ++f) {
      if (!outs[f] || f == kRewards) continue;
      const bool from_last = f == kNextObs || f == kTerminated || f == kTruncated;
      if (from_last) gather_field_locked(f, nstep_.last_ids.data(), nstep_.last_slots.data(), b, outs[f]);
      else gather_field_locked(f, ids, slots_.data(), b, outs[f]);
    }
  }

  // After rows [first, total_) were written: episode returns (see episode_returns.hpp). Flags of
  // rows that were never stored (a write larger than the capacity) are read from `src`.
  void update_returns_locked(const Source* src, std::int64_t first) {
    const Ring ring = ring_locked();
    const std::int64_t lo = ring.oldest();
    const auto* term = storage_[kTerminated].get();
    const auto* trunc = storage_[kTruncated].get();
    auto done = [&](std::int64_t j) {
      if (j >= lo) return (term[ring.slot(j)] | trunc[ring.slot(j)]) != 0;
      return value_at(src[kTerminated].data, src[kTerminated].dtype, j - first) != 0.0 ||
             value_at(src[kTruncated].data, src[kTruncated].dtype, j - first) != 0.0;
    };
    auto* ret = reinterpret_cast<float*>(storage_[num_written_].get());
    auto* has = storage_[num_written_ + 1].get();
    detail::visit_dtype(specs_[kRewards].dtype, [&](auto z) {
      fill_episode_returns(reinterpret_cast<const decltype(z)*>(storage_[kRewards].get()), ring, first,
                           returns_gamma_, done, episode_starts_.data(), ret, has);
    });
  }

  // Slots of live ids, into the scratch vector slots_ (one division per id, not per field).
  void to_slots_locked(const std::int64_t* ids, std::int64_t n) const {
    slots_.resize(static_cast<std::size_t>(n));
    const Ring ring = ring_locked();
    for (std::int64_t i = 0; i < n; ++i) slots_[i] = ring.slot(ids[i]);
  }

  template <std::size_t RB>
  static void gather_fixed(const std::uint8_t* base, const std::int64_t* slots, std::int64_t n, std::uint8_t* out) {
    for (std::int64_t i = 0; i < n; ++i) std::memcpy(out + i * RB, base + slots[i] * RB, RB);
  }

  RowStorage row_storage_locked() const {
    RowStorage R;
    if (specs_.size() > kTruncated) {
      R.obs = storage_[kObs].get();
      R.next = storage_[kNextObs].get();
      R.terminated = storage_[kTerminated].get();
      R.truncated = storage_[kTruncated].get();
    }
    R.ring = ring_locked();
    return R;
  }

  // Rows of live ids (with their slots) of one field, as sampled: observations and next
  // observations through the observation store when they are stacked or read from the next row.
  void gather_field_locked(std::size_t f, const std::int64_t* ids, const std::int64_t* slots, std::int64_t n,
                           void* out) const {
    if ((f == kObs || f == kNextObs) && obs_.frame_stack() > 1)
      return obs_.gather_stacks(row_storage_locked(), ids, slots, n, f == kNextObs, static_cast<std::uint8_t*>(out));
    if (f == kNextObs && !storage_[f])
      return obs_.gather_next(row_storage_locked(), ids, slots, n, static_cast<std::uint8_t*>(out));
    gather_slots_locked(f, slots, n, out);
  }

  void gather_slots_locked(std::size_t field, const std::int64_t* slots, std::int64_t n, void* out_v) const {
    const std::size_t rb = specs_[field].row_bytes();
    const std::uint8_t* base = storage_[field].get();
    auto* out = static_cast<std::uint8_t*>(out_v);
    switch (rb) {
      case 1: return gather_fixed<1>(base, slots, n, out);
      case 4: return gather_fixed<4>(base, slots, n, out);
      case 8: return gather_fixed<8>(base, slots, n, out);
      case 16: return gather_fixed<16>(base, slots, n, out);
      case 32: return gather_fixed<32>(base, slots, n, out);
      default:
        for (std::int64_t i = 0; i < n; ++i) std::memcpy(out + i * rb, base + slots[i] * rb, rb);
    }
  }

  std::vector<FieldSpec> specs_, out_specs_;
  std::vector<std::shared_ptr<std::uint8_t>> storage_;  // null for a field without storage
  ObservationStore obs_;  // inactive (plain fields) unless compact or stacked
  std::int64_t capacity_ = 0;
  std::int64_t num_envs_ = 1;
  std::int64_t total_ = 0;
  Rng rng_;
  SlotObserver* observer_ = nullptr;  // not owned; see set_observer
  mutable std::mutex mu_;
  // n-step and episode returns
  std::size_t num_written_ = 0;
  double returns_gamma_ = -1.0;
  std::vector<std::int64_t> episode_starts_;
  // scratch, guarded by mu_: slots of the batch, the return sampler's prefix counts, n-step sums
  mutable std::vector<std::int64_t> slots_;
  ReturnSampler return_sampler_;
  mutable NStepTargets nstep_;
};

}  // namespace fastrl
