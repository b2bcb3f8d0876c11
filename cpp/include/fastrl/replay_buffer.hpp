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
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "fastrl/dtype.hpp"
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

// Contiguous source rows for one field: `rows * numel` elements of `dtype`.
struct Source {
  const void* data = nullptr;
  DType dtype = DType::Float32;
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

class ReplayBuffer {
 public:
  ReplayBuffer(std::vector<FieldSpec> specs, std::int64_t capacity, std::int64_t num_envs,
               std::uint64_t seed)
      : specs_(std::move(specs)), num_envs_(num_envs), rng_(seed) {
    if (num_envs < 1) throw std::invalid_argument("num_envs must be >= 1, got " + std::to_string(num_envs));
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
    for (const auto& s : specs_) {
      const std::size_t rb = s.row_bytes();
      if (rb != 0 && static_cast<std::uint64_t>(capacity_) > UINT64_MAX / rb)
        throw std::invalid_argument("field '" + s.name + "' is too large");
      const std::size_t bytes = std::max<std::size_t>(1, static_cast<std::size_t>(capacity_) * rb);
      void* p = std::calloc(bytes, 1);  // large blocks come as lazily-zeroed pages
      if (!p) throw std::bad_alloc();
      storage_.emplace_back(static_cast<std::uint8_t*>(p), [](std::uint8_t* q) { std::free(q); });
    }
  }

  const std::vector<FieldSpec>& specs() const { return specs_; }
  std::int64_t capacity() const { return capacity_; }
  std::int64_t num_envs() const { return num_envs_; }
  std::int64_t total() const { std::lock_guard<std::mutex> g(mu_); return total_; }
  std::int64_t size() const { std::lock_guard<std::mutex> g(mu_); return size_locked(); }
  std::size_t num_fields() const { return specs_.size(); }
  int field_index(const std::string& name) const {
    for (std::size_t i = 0; i < specs_.size(); ++i)
      if (specs_[i].name == name) return static_cast<int>(i);
    return -1;
  }
  // Shared ownership of a field's storage: a view made from it outlives the buffer.
  std::shared_ptr<std::uint8_t> storage(std::size_t field) const { return storage_.at(field); }
  std::size_t storage_bytes(std::size_t field) const {
    return static_cast<std::size_t>(capacity_) * specs_.at(field).row_bytes();
  }

  // Appends `rows` rows (a multiple of num_envs), one Source per field in field order.
  // Every cast is checked before anything is written. O(rows * row_bytes).
  void write(const Source* src, std::int64_t rows) {
    if (rows < 0 || rows % num_envs_ != 0)
      throw std::invalid_argument("number of rows must be a multiple of num_envs (" +
                                  std::to_string(num_envs_) + "), got " + std::to_string(rows));
    for (std::size_t f = 0; f < specs_.size(); ++f) {
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
    // Only the last `capacity` rows can survive; skip the ones that would be overwritten at once.
    std::int64_t skip = rows > capacity_ ? rows - capacity_ : 0;
    for (std::size_t f = 0; f < specs_.size(); ++f) {
      const auto& s = specs_[f];
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
    total_ += rows;
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
      if (outs[f]) gather_slots_locked(f, slots_.data(), batch_size, outs[f]);
  }

  // --- composite hooks (see the header comment) ---
  // The observer must outlive the buffer's use of it (the prioritized buffer owns its buffer).
  void set_observer(SlotObserver* observer) { std::lock_guard<std::mutex> g(mu_); observer_ = observer; }

  // Like `sample`, but `draw(rng, total, ids, slots)` writes the batch_size ids and their slots
  // (id % capacity), under the lock and with this buffer's generator; it must write live ids or
  // throw before changing anything. `outs` may be null to gather nothing. Cost: the draw's plus
  // O(B * row_bytes).
  template <class Draw>
  void sample_with(std::int64_t batch_size, Draw&& draw, std::int64_t* ids, void* const* outs) {
    if (batch_size < 0) throw std::invalid_argument("batch_size must be >= 0, got " + std::to_string(batch_size));
    std::lock_guard<std::mutex> g(mu_);
    if (total_ == 0) throw std::invalid_argument("cannot sample from an empty buffer");
    slots_.resize(static_cast<std::size_t>(batch_size));
    draw(rng_, total_, ids, slots_.data());
    if (!outs) return;
    for (std::size_t f = 0; f < specs_.size(); ++f)
      if (outs[f]) gather_slots_locked(f, slots_.data(), batch_size, outs[f]);
  }

  // Runs f(total) under the lock and returns its result.
  template <class F>
  decltype(auto) with_lock(F&& f) const {
    std::lock_guard<std::mutex> g(mu_);
    return f(total_);
  }

  // Copies the rows of `ids` of one field into out (B * row_bytes). Ids must be live.
  void gather(std::size_t field, const std::int64_t* ids, std::int64_t n, void* out) const {
    std::lock_guard<std::mutex> g(mu_);
    check_live_locked(ids, n);
    to_slots_locked(ids, n);
    gather_slots_locked(field, slots_.data(), n, out);
  }

  // Throws std::out_of_range unless every id is currently stored.
  void check_live(const std::int64_t* ids, std::int64_t n) const {
    std::lock_guard<std::mutex> g(mu_);
    check_live_locked(ids, n);
  }

  // --- state (for save / load) ---
  Rng::State rng_state() const { std::lock_guard<std::mutex> g(mu_); return rng_.state(); }
  void set_state(std::int64_t total, const Rng::State& rng) {
    if (total < 0) throw std::invalid_argument("total must be >= 0");
    if (total % num_envs_ != 0) throw std::invalid_argument("total must be a multiple of num_envs");
    if ((rng[0] | rng[1] | rng[2] | rng[3]) == 0) throw std::invalid_argument("rng state must not be all zero");
    std::lock_guard<std::mutex> g(mu_);
    total_ = total;
    rng_.set_state(rng);
    if (observer_) observer_->on_restore(total_);
  }
  void seed(std::uint64_t s) { std::lock_guard<std::mutex> g(mu_); rng_.seed_with(s); }
  void clear() {
    std::lock_guard<std::mutex> g(mu_);
    total_ = 0;
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
    const std::int64_t lo = total_ - n;
    if (replace) {
      for (std::int64_t i = 0; i < batch_size; ++i)
        out[i] = lo + static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(n)));
      return;
    }
    // Floyd's algorithm for a uniform subset, then a Fisher-Yates shuffle for a uniform order.
    std::unordered_set<std::int64_t> chosen;
    chosen.reserve(static_cast<std::size_t>(batch_size) * 2);
    std::int64_t k = 0;
    for (std::int64_t j = n - batch_size; j < n; ++j) {
      const std::int64_t t = static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(j + 1)));
      const std::int64_t pick = chosen.insert(t).second ? t : (chosen.insert(j), j);
      out[k++] = lo + pick;
    }
    for (std::int64_t i = batch_size - 1; i > 0; --i)
      std::swap(out[i], out[static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(i + 1)))]);
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

  std::vector<FieldSpec> specs_;
  std::vector<std::shared_ptr<std::uint8_t>> storage_;
  std::int64_t capacity_ = 0;
  std::int64_t num_envs_ = 1;
  std::int64_t total_ = 0;
  Rng rng_;
  SlotObserver* observer_ = nullptr;  // not owned; see set_observer
  mutable std::mutex mu_;
  mutable std::vector<std::int64_t> slots_;  // scratch, guarded by mu_
};

}  // namespace fastrl
