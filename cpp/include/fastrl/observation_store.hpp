// Observations stored once: next observations read from the stream's following row, and frame
// stacks assembled at sample time. Owned by ReplayBuffer, which calls it under its lock.
//
// Compact next observations (store_next_observations = false). The next observation of row id
// is, bit for bit, the observation of row id + N (same stream) unless the env emitted something
// else: at an episode end (the true final observation, not the reset one), or wherever the
// caller's rows are not consecutive. So when row j = id + N is written, its stored observation is
// compared (bytes, after the cast to the field's dtype) with the next observation given for id,
// and only if they differ is that next observation kept, in a side pool keyed by id's slot
// (freed when the slot is overwritten). The next observation of each stream's newest row, whose
// successor is not written yet, waits in `pending` (one row per stream). Every read therefore
// returns exactly what was written, every live row stays sampleable, and sampling draws exactly
// what the full layout draws (same ids, same generator use, same prioritized masses).
// Memory: one observation per row, plus one per episode end (or discontinuity), plus N rows,
// plus 4 bytes per slot (the pool index).
//
// Frame stacks (frame_stack = k > 1). Rows hold single frames. The observation of row id is the
// stack of the frames of ids id - (k-1)N, ..., id of its stream, oldest first, where positions
// before the episode's first step are padding: that first frame repeated ("reset", the default
// of gymnasium's FrameStackObservation) or zeros ("zero"). An episode starts at the first row a
// stream writes and after every terminated or truncated step. The next observation of id is the
// same stack shifted by one with id's next frame appended (what the wrapper returns from step).
// So that every live row's stack stays whole, the frames and done flags of the (k-1)N ids evicted
// last are kept in a small `tail` ring.
//
// Terminated rows' next observations dropped (zero_terminated_next, compact only). A target never
// bootstraps from the observation after a terminated step, and where such steps are frequent (lost
// lives in Atari) keeping them is most of the side pool. With this option none is kept, and the
// next observation (frame) of a terminated row reads as zeros, whatever was written.
//
// Costs: write O(rows * frame_bytes) extra (one compare per row); a stack O(k * frame_bytes).
// Thread safety: none of its own (the buffer's lock).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastrl/dtype.hpp"
#include "fastrl/ring.hpp"

namespace fastrl {

struct ObservationOptions {
  bool store_next_observations = true;  // false: next observations read from the next row
  std::int64_t frame_stack = 1;         // k > 1: rows hold single frames, stacks of k are sampled
  bool zero_padding = false;            // stack padding before an episode's first frame: zeros
  bool zero_terminated_next = false;    // compact only: terminated rows' next frames not kept, read as zeros
};

// What the store reads of the buffer's slot-indexed rows (capacity rows each).
struct RowStorage {
  const std::uint8_t* obs = nullptr;
  const std::uint8_t* next = nullptr;  // the stored next_observations field, null when compact
  const std::uint8_t* terminated = nullptr;
  const std::uint8_t* truncated = nullptr;
  Ring ring;
};

inline std::shared_ptr<std::uint8_t> zeroed_bytes(std::size_t n) {
  void* p = std::calloc(std::max<std::size_t>(1, n), 1);
  if (!p) throw std::bad_alloc();
  return std::shared_ptr<std::uint8_t>(static_cast<std::uint8_t*>(p), [](std::uint8_t* q) { std::free(q); });
}

class ObservationStore {
 public:
  static constexpr std::uint32_t kNone = UINT32_MAX;

  ObservationStore() = default;
  ObservationStore(ObservationOptions opt, DType dtype, std::int64_t numel, std::int64_t capacity,
                   std::int64_t num_envs)
      : opt_(opt), dtype_(dtype), numel_(numel), rb_(static_cast<std::size_t>(numel) * dtype_size(dtype)),
        cap_(capacity), n_(num_envs) {
    if (opt.frame_stack < 1 || opt.frame_stack > 1024)
      throw std::invalid_argument("frame_stack must be in [1, 1024], got " + std::to_string(opt.frame_stack));
    if (opt.zero_terminated_next && opt.store_next_observations)
      throw std::invalid_argument("zero_terminated_next needs compact next observations (store_next_observations=False)");
    if (opt.zero_terminated_next) zero_frame_ = zeroed_bytes(rb_);
    if (!opt.store_next_observations) {
      if (capacity >= static_cast<std::int64_t>(kNone))
        throw std::invalid_argument("capacity must be < 2**32 - 1 without stored next observations");
      side_of_.assign(static_cast<std::size_t>(capacity), kNone);
      pending_ = zeroed_bytes(static_cast<std::size_t>(num_envs) * rb_);
    }
    if (opt.frame_stack > 1) {
      tail_n_ = (opt.frame_stack - 1) * num_envs;
      tail_frames_ = zeroed_bytes(static_cast<std::size_t>(tail_n_) * rb_);
      tail_done_ = zeroed_bytes(static_cast<std::size_t>(tail_n_));
    }
    scratch_.resize(rb_);
  }

  const ObservationOptions& options() const { return opt_; }
  bool compact() const { return !opt_.store_next_observations; }
  std::int64_t frame_stack() const { return opt_.frame_stack; }
  std::size_t frame_bytes() const { return rb_; }

  // --- write hooks: `R` describes the rows before (before_write) or after (after_write) the
  // write of `rows` rows starting at id `first`; sources are in field order (obs, ..., truncated).

  // Before the rows are copied: keeps the frames about to be evicted that stacks still need, and
  // frees the side entries of the slots about to be overwritten. O(rows + (k-1)N).
  void before_write(const RowStorage& R, const Source* src, std::int64_t rows) {
    const std::int64_t first = R.ring.total, end = first + rows;
    const std::int64_t old_lo = R.ring.oldest(), new_lo = Ring{n_, cap_, end}.oldest();
    if (tail_n_ > 0) {
      for (std::int64_t q = std::max({old_lo, new_lo - tail_n_, std::int64_t{0}}); q < new_lo; ++q) {
        const std::int64_t t = q % tail_n_;
        std::uint8_t* dst = tail_frames_.get() + t * rb_;
        if (q < first) {  // stored: about to be overwritten
          const std::int64_t s = R.ring.slot(q);
          std::memcpy(dst, R.obs + s * rb_, rb_);
          tail_done_.get()[t] = (R.terminated[s] | R.truncated[s]) != 0;
        } else {  // a row of this write that is never stored
          const std::int64_t r = q - first;
          cast_copy(dst, dtype_, static_cast<const std::uint8_t*>(src[0].data) + r * src_row_bytes(src[0]), src[0].dtype,
                    numel_);
          tail_done_.get()[t] = flag(src[4], r) || flag(src[5], r);
        }
      }
    }
    if (compact()) {
      const std::int64_t j = std::max(first, new_lo);
      R.ring.for_each_run(j, end - j, [&](std::int64_t slot, std::int64_t, std::int64_t n) {
        for (std::int64_t s = slot; s < slot + n; ++s) release(s);
      });
    }
  }

  // After the rows are copied: keeps the next observations that differ from the successor's
  // observation, and the newest rows' next observations in `pending`. O(rows * frame_bytes).
  void after_write(const RowStorage& R, const Source* src, std::int64_t first, std::int64_t rows) {
    if (!compact() || rows == 0) return;
    const std::int64_t end = first + rows, lo = R.ring.oldest();
    const Source& next = src[3];
    const std::size_t in_rb = src_row_bytes(next);
    auto next_of = [&](std::int64_t p) -> const std::uint8_t* {  // next observation of id p, as stored bytes
      if (p < first) return pending_.get() + R.ring.stream(p) * rb_;
      const auto* in = static_cast<const std::uint8_t*>(next.data) + (p - first) * in_rb;
      if (next.dtype == dtype_) return in;
      cast_copy(scratch_.data(), dtype_, in, next.dtype, numel_);
      return scratch_.data();
    };
    std::int64_t j = std::max(first, lo + n_), slot = R.ring.slot(j), pslot = R.ring.prev_slot(slot);
    for (; j < end; ++j) {
      const bool dropped = opt_.zero_terminated_next && R.terminated[pslot] != 0;
      if (!dropped) {
        const std::uint8_t* nx = next_of(j - n_);
        if (std::memcmp(nx, R.obs + slot * rb_, rb_) != 0) put(pslot, nx);
      }
      slot = R.ring.after(slot);
      pslot = R.ring.after(pslot);
    }
    for (std::int64_t p = end - n_; p < end; ++p) std::memcpy(pending_.get() + R.ring.stream(p) * rb_, next_of(p), rb_);
  }

  // The stored rows were replaced (clear, set_state): side entries refer to nothing any more.
  void reset() {
    if (!compact()) return;
    std::fill(side_of_.begin(), side_of_.end(), kNone);
    free_.clear();
    pool_.clear();
    pool_.shrink_to_fit();
    pool_rows_ = 0;
  }

  // --- reads

  // Stacked observations (k frames each, oldest first) of live ids into out. O(n * k * frame_bytes).
  void gather_stacks(const RowStorage& R, const std::int64_t* ids, const std::int64_t* slots, std::int64_t n,
                     bool next, std::uint8_t* out) const {
    const std::int64_t k = opt_.frame_stack;
    std::vector<const std::uint8_t*>& ptrs = ptrs_;
    ptrs.resize(static_cast<std::size_t>(k) + 1);
    for (std::int64_t i = 0; i < n; ++i) {
      stack_ptrs(R, ids[i], slots[i], ptrs.data());
      if (next) ptrs[k] = next_frame(R, ids[i], slots[i]);
      copy_frames(ptrs.data() + (next ? 1 : 0), k, out + i * k * rb_);
    }
  }

  // Windows of k + 1 frames of live ids into out (row i at out + i (k + 1) frame_bytes): the
  // observation stack then its next observation's newest frame. The next stack is always the
  // observation stack shifted by one frame (gymnasium's FrameStackObservation), so the window's
  // first k frames are the observation stack and its last k the next stack, both exactly what
  // gather_stacks returns: 1 + 1/k frames copied per row instead of 2. O(n * (k + 1) * frame_bytes).
  void gather_windows(const RowStorage& R, const std::int64_t* ids, const std::int64_t* slots, std::int64_t n,
                      std::uint8_t* out) const {
    const std::int64_t k = opt_.frame_stack;
    std::vector<const std::uint8_t*>& ptrs = ptrs_;
    ptrs.resize(static_cast<std::size_t>(k) + 1);
    for (std::int64_t i = 0; i < n; ++i) {
      stack_ptrs(R, ids[i], slots[i], ptrs.data());
      ptrs[k] = next_frame(R, ids[i], slots[i]);
      copy_frames(ptrs.data(), k + 1, out + i * (k + 1) * rb_);
    }
  }

  // Single next observations (k == 1, compact) of live ids into out. O(n * frame_bytes).
  void gather_next(const RowStorage& R, const std::int64_t* ids, const std::int64_t* slots, std::int64_t n,
                   std::uint8_t* out) const {
    for (std::int64_t i = 0; i < n; ++i) std::memcpy(out + i * rb_, next_frame(R, ids[i], slots[i]), rb_);
  }

  // --- state (save / load) and memory

  std::shared_ptr<std::uint8_t> pending() const { return pending_; }
  std::shared_ptr<std::uint8_t> tail_frames() const { return tail_frames_; }
  std::shared_ptr<std::uint8_t> tail_done() const { return tail_done_; }
  std::int64_t tail_rows() const { return tail_n_; }
  std::int64_t side_rows() const { return pool_rows_ - static_cast<std::int64_t>(free_.size()); }

  // Slots with a side entry (ascending) and their rows, for slots below `size`.
  void side_entries(std::int64_t size, std::vector<std::int64_t>& slots, std::vector<std::uint8_t>& rows) const {
    slots.clear();
    rows.clear();
    for (std::int64_t s = 0; s < std::min<std::int64_t>(size, static_cast<std::int64_t>(side_of_.size())); ++s)
      if (side_of_[s] != kNone) {
        slots.push_back(s);
        rows.insert(rows.end(), pool_.data() + side_of_[s] * rb_, pool_.data() + (side_of_[s] + 1) * rb_);
      }
  }

  // Replaces the side entries; slots must be distinct and in [0, size). Checked before any change.
  void set_side_entries(std::int64_t size, const std::int64_t* slots, const std::uint8_t* rows, std::int64_t m) {
    if (!compact() && m > 0) throw std::invalid_argument("side entries need compact next observations");
    std::vector<bool> seen(static_cast<std::size_t>(std::max<std::int64_t>(size, 0)));
    for (std::int64_t i = 0; i < m; ++i) {
      if (slots[i] < 0 || slots[i] >= size || seen[slots[i]])
        throw std::invalid_argument("side entry slot " + std::to_string(slots[i]) +
                                    " is out of range or repeated (stored slots are [0, " + std::to_string(size) + "))");
      seen[slots[i]] = true;
    }
    reset();
    for (std::int64_t i = 0; i < m; ++i) put(slots[i], rows + i * rb_);
  }

  // Bytes held besides the fields: side pool and index, pending rows, tail ring.
  std::size_t side_bytes() const {
    return pool_.capacity() + (side_of_.capacity() + free_.capacity()) * sizeof(std::uint32_t);
  }
  std::size_t fixed_bytes() const {
    return (pending_ ? static_cast<std::size_t>(n_) * rb_ : 0) + static_cast<std::size_t>(tail_n_) * (rb_ + 1) +
           (zero_frame_ ? rb_ : 0);
  }

 private:
  std::size_t src_row_bytes(const Source& s) const { return static_cast<std::size_t>(numel_) * dtype_size(s.dtype); }
  static bool flag(const Source& s, std::int64_t r) {
    return detail::visit_dtype(s.dtype, [&](auto z) { return static_cast<const decltype(z)*>(s.data)[r] != decltype(z)(0); });
  }

  void put(std::int64_t slot, const std::uint8_t* row) {
    std::uint32_t idx;
    if (!free_.empty()) {
      idx = free_.back();
      free_.pop_back();
    } else {
      idx = static_cast<std::uint32_t>(pool_rows_++);
      pool_.resize(static_cast<std::size_t>(pool_rows_) * rb_);
    }
    std::memcpy(pool_.data() + idx * rb_, row, rb_);
    side_of_[slot] = idx;
  }

  void release(std::int64_t slot) {
    const std::uint32_t idx = side_of_[slot];
    if (idx == kNone) return;
    free_.push_back(idx);
    side_of_[slot] = kNone;
  }

  // The next single observation (frame) of a live id.
  const std::uint8_t* next_frame(const RowStorage& R, std::int64_t id, std::int64_t slot) const {
    if (R.next) return R.next + slot * rb_;
    if (zero_frame_ && R.terminated[slot]) return zero_frame_.get();
    const std::uint32_t idx = side_of_[slot];
    if (idx != kNone) return pool_.data() + idx * rb_;
    if (id + n_ >= R.ring.total) return pending_.get() + R.ring.stream(id) * rb_;
    return R.obs + R.ring.next_slot(slot) * rb_;
  }

  // Frame pointers of id's stack, oldest first, into ptrs[0..k); null means a zero frame.
  void stack_ptrs(const RowStorage& R, std::int64_t id, std::int64_t slot, const std::uint8_t** ptrs) const {
    const std::int64_t k = opt_.frame_stack, lo = R.ring.oldest();
    ptrs[k - 1] = R.obs + slot * rb_;
    std::int64_t pos = k - 2, q = id - n_, s = slot;
    for (; pos >= 0 && q >= 0; --pos, q -= n_) {
      const std::uint8_t* f;
      bool done;
      if (q >= lo) {
        s = R.ring.prev_slot(s);
        f = R.obs + s * rb_;
        done = (R.terminated[s] | R.truncated[s]) != 0;
      } else {
        const std::int64_t t = q % tail_n_;
        f = tail_frames_.get() + t * rb_;
        done = tail_done_.get()[t] != 0;
      }
      if (done) break;  // q ended the previous episode: ptrs[pos + 1] is this episode's first frame
      ptrs[pos] = f;
    }
    const std::uint8_t* pad = opt_.zero_padding ? nullptr : ptrs[pos + 1];
    for (; pos >= 0; --pos) ptrs[pos] = pad;
  }

  // Copies k frames to out, merging frames adjacent in memory into one copy.
  void copy_frames(const std::uint8_t* const* ptrs, std::int64_t k, std::uint8_t* out) const {
    std::int64_t i = 0;
    while (i < k) {
      if (!ptrs[i]) {
        std::memset(out + i * rb_, 0, rb_);
        ++i;
        continue;
      }
      std::int64_t j = i + 1;
      while (j < k && ptrs[j] == ptrs[j - 1] + rb_) ++j;
      std::memcpy(out + i * rb_, ptrs[i], static_cast<std::size_t>(j - i) * rb_);
      i = j;
    }
  }

  ObservationOptions opt_;
  DType dtype_ = DType::Float32;
  std::int64_t numel_ = 0;
  std::size_t rb_ = 0;  // bytes of one stored observation (frame)
  std::int64_t cap_ = 1, n_ = 1;
  // compact next observations
  std::vector<std::uint32_t> side_of_;  // pool row of each slot's kept next observation, or kNone
  std::vector<std::uint8_t> pool_;
  std::int64_t pool_rows_ = 0;
  std::vector<std::uint32_t> free_;
  std::shared_ptr<std::uint8_t> pending_;  // next observation of each stream's newest row
  std::shared_ptr<std::uint8_t> zero_frame_;  // zero_terminated_next: what a terminated row's next frame reads as
  // frame stacks
  std::int64_t tail_n_ = 0;  // (k - 1) * N: ids [lo - tail_n_, lo) kept, at id % tail_n_
  std::shared_ptr<std::uint8_t> tail_frames_, tail_done_;
  std::vector<std::uint8_t> scratch_;
  mutable std::vector<const std::uint8_t*> ptrs_;  // scratch, guarded by the buffer's lock
};

}  // namespace fastrl
