// The circular replay buffer: named fields of fixed shape and dtype, one or many env streams.
//
// Layout. Rows are stored time-major: with N env streams, one step of all streams occupies N
// consecutive rows, and row `id` (the id-th row ever written) belongs to stream id % N and lives
// in slot id % capacity. The capacity is a multiple of N, so the next step of the same stream
// is always id + N, and a stream's episodes stay intact and in order.
//
// Ids. Every row gets a monotonically increasing 64-bit id; `sample` returns ids, which stay
// meaningful after the slot is overwritten (stale ids are those < total() - size()).
//
// n-step sampling. `sample(..., nstep)` / `gather_nstep` return, for each start id i, the
// discounted sum of the rewards of ids i, i + N, ..., i + (k-1) N of the same stream (k <= n),
// stopping after a terminated or truncated step and before the first id >= total() (not written
// yet; newer ids of a live id are always live, so nothing overwritten is read). next_observations,
// terminated and truncated come from the last summed step, `discounts` is gamma^k; every other
// field comes from the start id. Costs O(B * (n + row_bytes)).
//
// Episode returns (constructed with episode_returns_gamma >= 0). Two computed fields follow the
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
#include <unordered_set>
#include <utility>
#include <vector>

#include "fastrl/buffer_returns.hpp"
#include "fastrl/dtype.hpp"
#include "fastrl/observation_store.hpp"
#include "fastrl/rng.hpp"

namespace fastrl {

struct FieldSpec {
  std::string name;
  std::vector<std::int64_t> shape;  // per-row shape
  DType dtype = DType::Float32;

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  std::size_t row_bytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype); }
};

// Told about row changes while the buffer's lock is held; must not throw or call back into the buffer.
class SlotObserver {
 public:
  virtual ~SlotObserver() = default;
  // Rows [first_id, first_id + rows) were just written (only the last `capacity` of them are kept).
  virtual void on_write(std::int64_t first_id, std::int64_t rows) noexcept = 0;
  // The stored rows were replaced wholesale (clear() or set_state()); `total` is the new row count.
  virtual void on_restore(std::int64_t total) noexcept = 0;
};

// How fields are stored (see the header comment).
struct StorageOptions {
  ObservationOptions observations;
  // Zero-filled storage of `bytes` bytes (>= 1) for field `field`; null: calloc.
  std::function<std::shared_ptr<std::uint8_t>(std::size_t field, std::size_t bytes)> allocate;
};

// Options of n-step sampling (see the header comment).
struct NStep {
  std::int64_t n = 1;
  double gamma = 1.0;
  void* discounts = nullptr;  // B values of ReplayBuffer::nstep_dtype(): gamma^k, or null
};

class ReplayBuffer {
 public:
  // Field indices of the standard fields.
  static constexpr std::size_t kObs = 0, kRewards = 2, kNextObs = 3, kTerminated = 4, kTruncated = 5;

  // episode_returns_gamma < 0 disables episode returns; in [0, 1] appends `returns` and `has_return`.
  ReplayBuffer(std::vector<FieldSpec> specs, std::int64_t capacity, std::int64_t num_envs,
               std::uint64_t seed, double episode_returns_gamma = -1.0, const StorageOptions& storage = {})
      : specs_(std::move(specs)), num_envs_(num_envs), rng_(seed) {
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
  std::int64_t size() const { std::lock_guard<std::mutex> g(mu_); return size_locked(); }
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
  int field_index(const std::string& name) const {
    for (std::size_t i = 0; i < specs_.size(); ++i)
      if (specs_[i].name == name) return static_cast<int>(i);
    return -1;
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
    obs_.side_entries(size_locked(), slots, rows);
  }
  void set_side_entries(const std::int64_t* slots, const std::uint8_t* rows, std::int64_t m) {
    std::lock_guard<std::mutex> g(mu_);
    obs_.set_side_entries(size_locked(), slots, rows, m);
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
    // Only the last `capacity` rows can survive; skip the ones that would be overwritten at once.
    std::int64_t skip = rows > capacity_ ? rows - capacity_ : 0;
    for (std::size_t f = 0; f < num_written_; ++f) {
      const auto& s = specs_[f];
      if (!storage_[f]) continue;
      const std::size_t rb = s.row_bytes();
      const std::size_t in_rb = static_cast<std::size_t>(s.numel()) * dtype_size(src[f].dtype);
      const auto* in = static_cast<const std::uint8_t*>(src[f].data) + skip * in_rb;
      std::int64_t id = total_ + skip, left = rows - skip;
      while (left > 0) {
        const std::int64_t slot = id % capacity_;
        const std::int64_t n = std::min(left, capacity_ - slot);
        cast_copy(storage_[f].get() + slot * rb, s.dtype, in, src[f].dtype, n * s.numel());
        in += n * in_rb;
        id += n;
        left -= n;
      }
    }
    const std::int64_t first = total_;
    total_ += rows;
    obs_.after_write(row_storage_locked(), src, first, rows);
    if (has_episode_returns()) update_returns_locked(src, first);
    if (observer_) observer_->on_write(total_ - rows, rows);
  }

  // Draws B ids uniformly from the stored rows; with replace=false they are distinct.
  // O(B) expected. Throws when empty or when B > size() without replacement.
  void sample_ids(std::int64_t batch_size, bool replace, std::int64_t* out) {
    std::lock_guard<std::mutex> g(mu_);
    sample_ids_locked(batch_size, replace, out);
  }

  // sample_ids followed by gathering every field whose output pointer is not null; one lock.
  void sample(std::int64_t batch_size, bool replace, std::int64_t* ids, void* const* outs) {
    std::lock_guard<std::mutex> g(mu_);
    sample_ids_locked(batch_size, replace, ids);
    to_slots_locked(ids, batch_size);
    for (std::size_t f = 0; f < specs_.size(); ++f)
      if (outs[f]) gather_field_locked(f, ids, slots_.data(), batch_size, outs[f]);
  }

  // --- composite hooks (see the header comment) ---
  // The observer must outlive the buffer's use of it (the prioritized buffer owns its buffer).
  void set_observer(SlotObserver* observer) { std::lock_guard<std::mutex> g(mu_); observer_ = observer; }

  // Like `sample`, but `draw(rng, total, ids, slots)` writes the batch_size ids and their slots
  // (id % capacity), under the lock and with this buffer's generator; it must write live ids or
  // throw before changing anything. `outs` may be null to gather nothing. Cost: the draw's plus
  // O(B * row_bytes).
  // With `nstep` the rows are gathered as n-step targets (as in `sample`), still under one lock.
  template <class Draw>
  void sample_with(std::int64_t batch_size, Draw&& draw, std::int64_t* ids, void* const* outs,
                   const NStep* nstep = nullptr) {
    if (batch_size < 0) throw std::invalid_argument("batch_size must be >= 0, got " + std::to_string(batch_size));
    if (nstep) check_nstep(*nstep);
    std::lock_guard<std::mutex> g(mu_);
    if (total_ == 0) throw std::invalid_argument("cannot sample from an empty buffer");
    slots_.resize(static_cast<std::size_t>(batch_size));
    draw(rng_, total_, ids, slots_.data());
    if (!outs) return;
    if (nstep) return gather_nstep_locked(ids, batch_size, *nstep, outs);
    for (std::size_t f = 0; f < specs_.size(); ++f)
      if (outs[f]) gather_field_locked(f, ids, slots_.data(), batch_size, outs[f]);
  }

  // The general sample: with require_return only steps whose episode has ended are drawn
  // (uniformly among them); with nstep the batch holds n-step targets (outs[kRewards] then has
  // nstep_dtype()). Everything is checked before the generator advances. One lock.
  void sample(std::int64_t batch_size, bool replace, std::int64_t* ids, void* const* outs, bool require_return,
              const NStep* nstep) {
    if (nstep) check_nstep(*nstep);
    std::lock_guard<std::mutex> g(mu_);
    if (require_return) sample_with_return_locked(batch_size, replace, ids);
    else sample_ids_locked(batch_size, replace, ids);
    if (nstep) return gather_nstep_locked(ids, batch_size, *nstep, outs);
    to_slots_locked(ids, batch_size);
    for (std::size_t f = 0; f < specs_.size(); ++f)
      if (outs[f]) gather_field_locked(f, ids, slots_.data(), batch_size, outs[f]);
  }

  // Runs f(total) under the lock and returns its result.
  template <class F>
  decltype(auto) with_lock(F&& f) const {
    std::lock_guard<std::mutex> g(mu_);
    return f(total_);
  }

  // n-step targets for the given ids (which must be stored) into outs (null entries are skipped;
  // outs[kRewards] has nstep_dtype()). For samplers that draw their own ids (prioritized replay).
  void gather_nstep(const std::int64_t* ids, std::int64_t n, const NStep& nstep, void* const* outs) const {
    check_nstep(nstep);
    std::lock_guard<std::mutex> g(mu_);
    check_live_locked(ids, n);
    gather_nstep_locked(ids, n, nstep, outs);
  }

  // Copies the rows of `ids` of one field, as sampled, into out (n * sampled row bytes). Ids must be live.
  void gather(std::size_t field, const std::int64_t* ids, std::int64_t n, void* out) const {
    std::lock_guard<std::mutex> g(mu_);
    check_live_locked(ids, n);
    to_slots_locked(ids, n);
    gather_field_locked(field, ids, slots_.data(), n, out);
  }

  // Throws std::out_of_range unless every id is currently stored.
  void check_live(const std::int64_t* ids, std::int64_t n) const {
    std::lock_guard<std::mutex> g(mu_);
    check_live_locked(ids, n);
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
    if (observer_) observer_->on_restore(total_);
  }
  void seed(std::uint64_t s) { std::lock_guard<std::mutex> g(mu_); rng_.seed_with(s); }
  void clear() {
    std::lock_guard<std::mutex> g(mu_);
    total_ = 0;
    for (std::size_t s = 0; s < episode_starts_.size(); ++s) episode_starts_[s] = static_cast<std::int64_t>(s);
    obs_.reset();
    if (observer_) observer_->on_restore(0);
  }

 private:
  std::int64_t size_locked() const { return std::min(total_, capacity_); }

  void check_live_locked(const std::int64_t* ids, std::int64_t n) const {
    const std::int64_t lo = total_ - size_locked();
    for (std::int64_t i = 0; i < n; ++i)
      if (ids[i] < lo || ids[i] >= total_)
        throw std::out_of_range("index " + std::to_string(ids[i]) + " is not stored (live ids are [" +
                                std::to_string(lo) + ", " + std::to_string(total_) + "))");
  }

  void sample_ids_locked(std::int64_t batch_size, bool replace, std::int64_t* out) {
    const std::int64_t n = size_locked();
    if (batch_size < 0) throw std::invalid_argument("batch_size must be >= 0, got " + std::to_string(batch_size));
    if (n == 0) throw std::invalid_argument("cannot sample from an empty buffer");
    if (!replace && batch_size > n)
      throw std::invalid_argument("batch_size " + std::to_string(batch_size) +
                                  " is larger than the number of stored transitions (" + std::to_string(n) +
                                  ") and replace=False");
    draw_locked(n, batch_size, replace, out);
    const std::int64_t lo = total_ - n;
    for (std::int64_t i = 0; i < batch_size; ++i) out[i] += lo;
  }

  // B uniform draws from [0, n): independent with replace, else a uniform ordered subset.
  void draw_locked(std::int64_t n, std::int64_t batch_size, bool replace, std::int64_t* out) {
    if (replace) {
      for (std::int64_t i = 0; i < batch_size; ++i)
        out[i] = static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(n)));
      return;
    }
    // Floyd's algorithm for a uniform subset, then a Fisher-Yates shuffle for a uniform order.
    std::unordered_set<std::int64_t> chosen;
    chosen.reserve(static_cast<std::size_t>(batch_size) * 2);
    std::int64_t k = 0;
    for (std::int64_t j = n - batch_size; j < n; ++j) {
      const std::int64_t t = static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(j + 1)));
      const std::int64_t pick = chosen.insert(t).second ? t : (chosen.insert(j), j);
      out[k++] = pick;
    }
    for (std::int64_t i = batch_size - 1; i > 0; --i)
      std::swap(out[i], out[static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(i + 1)))]);
  }

  // Uniform draws among the live ids whose episode has ended: per stream s the live ids below
  // episode_starts_[s]. O(N + B log N).
  void sample_with_return_locked(std::int64_t batch_size, bool replace, std::int64_t* out) {
    if (!has_episode_returns())
      throw std::invalid_argument("require_return needs a buffer built with episode_returns_gamma");
    if (batch_size < 0) throw std::invalid_argument("batch_size must be >= 0, got " + std::to_string(batch_size));
    const std::int64_t lo = total_ - size_locked();
    prefix_.assign(static_cast<std::size_t>(num_envs_) + 1, 0);
    for (std::int64_t s = 0; s < num_envs_; ++s)  // count of ids lo + s + k N below episode_starts_[s]
      prefix_[s + 1] = prefix_[s] + std::max<std::int64_t>(0, (episode_starts_[s] - lo - s) / num_envs_);
    const std::int64_t n = prefix_.back();
    if (n == 0)
      throw std::invalid_argument("no stored transition has an episode return yet (require_return=True)");
    if (!replace && batch_size > n)
      throw std::invalid_argument("batch_size " + std::to_string(batch_size) +
                                  " is larger than the number of stored transitions with a return (" +
                                  std::to_string(n) + ") and replace=False");
    draw_locked(n, batch_size, replace, out);
    for (std::int64_t i = 0; i < batch_size; ++i) {
      const std::int64_t s = std::upper_bound(prefix_.begin(), prefix_.end(), out[i]) - prefix_.begin() - 1;
      out[i] = lo + s + (out[i] - prefix_[s]) * num_envs_;
    }
  }

  static void check_nstep(const NStep& ns) {
    if (ns.n < 1) throw std::invalid_argument("n_step must be >= 1, got " + std::to_string(ns.n));
    if (!(ns.gamma >= 0.0 && ns.gamma <= 1.0))
      throw std::invalid_argument("gamma must be in [0, 1], got " + std::to_string(ns.gamma));
  }

  // Element i of a field's storage or of a source, of dtype t, as a double.
  static double value_at(const void* base, DType t, std::int64_t i) {
    return detail::visit_dtype(t, [&](auto z) { return static_cast<double>(static_cast<const decltype(z)*>(base)[i]); });
  }

  StreamLayout layout_locked() const { return StreamLayout{num_envs_, capacity_, total_}; }

  void gather_nstep_locked(const std::int64_t* ids, std::int64_t b, const NStep& ns, void* const* outs) const {
    to_slots_locked(ids, b);
    last_slots_.resize(static_cast<std::size_t>(b));
    nstep_rewards_.resize(static_cast<std::size_t>(b));
    nstep_discounts_.resize(static_cast<std::size_t>(b));
    const auto* term = storage_[kTerminated].get();
    const auto* trunc = storage_[kTruncated].get();
    detail::visit_dtype(specs_[kRewards].dtype, [&](auto z) {
      nstep_sums(reinterpret_cast<const decltype(z)*>(storage_[kRewards].get()), term, trunc, layout_locked(), ids,
                 slots_.data(), b, ns.n, ns.gamma, last_slots_.data(), nstep_rewards_.data(),
                 nstep_discounts_.data());
    });
    auto put = [&](void* out, const std::vector<double>& v) {
      if (!out) return;
      if (nstep_dtype() == DType::Float64) std::memcpy(out, v.data(), v.size() * sizeof(double));
      else std::copy(v.begin(), v.end(), static_cast<float*>(out));
    };
    put(outs[kRewards], nstep_rewards_);
    put(ns.discounts, nstep_discounts_);
    if (outs[kNextObs] && (!is_stored(kNextObs) || obs_.frame_stack() > 1)) {  // it needs the last ids
      last_ids_.resize(static_cast<std::size_t>(b));
      const std::int64_t lo = total_ - size_locked(), lo_slot = lo % capacity_;
      for (std::int64_t i = 0; i < b; ++i)
        last_ids_[i] = lo + (last_slots_[i] >= lo_slot ? last_slots_[i] - lo_slot : last_slots_[i] - lo_slot + capacity_);
    }
    for (std::size_t f = 0; f < specs_.size(); ++f) {
      if (!outs[f] || f == kRewards) continue;
      const bool from_last = f == kNextObs || f == kTerminated || f == kTruncated;
      if (from_last) gather_field_locked(f, last_ids_.data(), last_slots_.data(), b, outs[f]);
      else gather_field_locked(f, ids, slots_.data(), b, outs[f]);
    }
  }

  // After rows [first, total_) were written: episode returns (see buffer_returns.hpp). Flags of
  // rows that were never stored (a write larger than the capacity) are read from `src`.
  void update_returns_locked(const Source* src, std::int64_t first) {
    const std::int64_t lo = total_ - size_locked();
    const auto* term = storage_[kTerminated].get();
    const auto* trunc = storage_[kTruncated].get();
    auto done = [&](std::int64_t j) {
      if (j >= lo) return (term[j % capacity_] | trunc[j % capacity_]) != 0;
      return value_at(src[kTerminated].data, src[kTerminated].dtype, j - first) != 0.0 ||
             value_at(src[kTruncated].data, src[kTruncated].dtype, j - first) != 0.0;
    };
    auto* ret = reinterpret_cast<float*>(storage_[num_written_].get());
    auto* has = storage_[num_written_ + 1].get();
    detail::visit_dtype(specs_[kRewards].dtype, [&](auto z) {
      fill_episode_returns(reinterpret_cast<const decltype(z)*>(storage_[kRewards].get()), layout_locked(), first,
                           returns_gamma_, done, episode_starts_.data(), ret, has);
    });
  }

  // Slots of live ids, into the scratch vector slots_ (one division per id, not per field).
  void to_slots_locked(const std::int64_t* ids, std::int64_t n) const {
    slots_.resize(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) slots_[i] = ids[i] % capacity_;
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
    R.L = layout_locked();
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
  mutable std::vector<std::int64_t> slots_;  // scratch, guarded by mu_
  // n-step and episode returns
  std::size_t num_written_ = 0;
  double returns_gamma_ = -1.0;
  std::vector<std::int64_t> episode_starts_;
  std::vector<std::int64_t> prefix_;  // scratch, guarded by mu_
  mutable std::vector<std::int64_t> last_slots_, last_ids_;  // scratch, guarded by mu_
  mutable std::vector<double> nstep_rewards_, nstep_discounts_;  // scratch, guarded by mu_
};

}  // namespace fastrl
