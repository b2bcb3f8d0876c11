// Ids and slots of a replay buffer's circular, time-major storage: the one place their
// arithmetic lives (every other header asks a Ring).
//
// Row `id` is the id-th row ever written. With N env streams it belongs to stream id % N and
// lives in slot id % capacity; capacity is a multiple of N, so the next step of the same stream
// is id + N, in slot (slot + N) % capacity. The live (stored) ids are [oldest(), total): the last
// min(total, capacity) rows written. Newer ids of a live id are live too.
//
// Costs: every method O(1) except check_live and ids_of_slots, O(n); ids_of_slots and the step
// methods avoid a division per element. Thread safety: a Ring is a value (a snapshot of
// `total`), passed by value so hot loops keep it in registers; the buffer hands out fresh ones
// under its lock.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace fastrl {

struct Ring {
  std::int64_t num_envs = 1;
  std::int64_t capacity = 1;
  std::int64_t total = 0;  // ids ever written

  std::int64_t size() const { return std::min(total, capacity); }
  // The first live id.
  std::int64_t oldest() const { return total - size(); }
  bool is_live(std::int64_t id) const { return id >= oldest() && id < total; }
  std::int64_t slot(std::int64_t id) const { return id % capacity; }
  std::int64_t stream(std::int64_t id) const { return id % num_envs; }
  // Slot of the next / previous step of the same stream.
  std::int64_t next_slot(std::int64_t slot) const {
    slot += num_envs;
    return slot >= capacity ? slot - capacity : slot;
  }
  std::int64_t prev_slot(std::int64_t slot) const {
    slot -= num_envs;
    return slot < 0 ? slot + capacity : slot;
  }
  // Slot after `slot` in storage order (the slot of id + 1).
  std::int64_t after(std::int64_t slot) const { return slot + 1 == capacity ? 0 : slot + 1; }

  // The live ids of n slots (each holding a live row), without a division per slot.
  void ids_of_slots(const std::int64_t* slots, std::int64_t n, std::int64_t* ids) const {
    const std::int64_t lo = oldest(), lo_slot = lo % capacity;
    for (std::int64_t i = 0; i < n; ++i)
      ids[i] = lo + (slots[i] >= lo_slot ? slots[i] - lo_slot : slots[i] - lo_slot + capacity);
  }
  // Slots of live ids without a division per id: live_slots()(id) == slot(id) for id >= lo.
  struct LiveSlots {
    std::int64_t lo, lo_slot, capacity;
    std::int64_t operator()(std::int64_t id) const {
      const std::int64_t s = lo_slot + (id - lo);
      return s >= capacity ? s - capacity : s;
    }
  };
  LiveSlots live_slots() const { return LiveSlots{oldest(), oldest() % capacity, capacity}; }

  // Throws std::out_of_range unless every id is live.
  void check_live(const std::int64_t* ids, std::int64_t n) const {
    const std::int64_t lo = oldest();
    for (std::int64_t i = 0; i < n; ++i)
      if (ids[i] < lo || ids[i] >= total)
        throw std::out_of_range("index " + std::to_string(ids[i]) + " is not stored (live ids are [" +
                                std::to_string(lo) + ", " + std::to_string(total) + "))");
  }

  // Calls f(slot, offset, count) for the contiguous runs of slots (at most two) holding the last
  // min(rows, capacity) of the ids [first, first + rows); offset counts rows from `first`.
  template <class F>
  void for_each_run(std::int64_t first, std::int64_t rows, F&& f) const {
    const std::int64_t skip = rows > capacity ? rows - capacity : 0;
    std::int64_t slot = (first + skip) % capacity, offset = skip;
    while (offset < rows) {
      const std::int64_t n = std::min(rows - offset, capacity - slot);
      f(slot, offset, n);
      offset += n;
      slot = 0;
    }
  }
};

}  // namespace fastrl
