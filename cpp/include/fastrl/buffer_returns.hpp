// Returns over a replay buffer's circular, time-major storage: n-step sums and episode
// returns-to-go. ReplayBuffer calls these under its lock; they only read and write the arrays
// they are given.
//
// Layout (see replay_buffer.hpp): row id i belongs to stream i % N and lives in slot
// i % capacity, capacity a multiple of N; the next step of the same stream is id i + N, in slot
// (slot + N) % capacity. Live ids are [total - min(total, capacity), total). Flags are bytes.
//
// Thread safety: none of their own; the caller serialises access to the arrays.
#pragma once

#include <algorithm>
#include <cstdint>

namespace fastrl {

struct StreamLayout {
  std::int64_t num_envs = 1;
  std::int64_t capacity = 1;
  std::int64_t total = 0;  // ids ever written
};

// n-step sums for B live start ids (with their slots): the discounted sum of the rewards of up to
// n steps of the id's stream, stopping after a terminated or truncated step and before the first
// id >= total (not written; later ids of a live id are live, so nothing overwritten is read).
// Writes the slot of the last summed step, the sum and gamma^k (k steps summed).
// Cost O(B * n); the random first slots are prefetched a few samples ahead.
template <class R>
void nstep_sums(const R* rewards, const std::uint8_t* terminated, const std::uint8_t* truncated, StreamLayout L,
                const std::int64_t* ids, const std::int64_t* slots, std::int64_t b, std::int64_t n, double gamma,
                std::int64_t* last_slots, double* sums, double* discounts) {
  const std::int64_t N = L.num_envs, cap = L.capacity, total = L.total;
  constexpr std::int64_t kAhead = 8;
  for (std::int64_t i = 0; i < b; ++i) {
    if (i + kAhead < b) {
      std::int64_t p = slots[i + kAhead];
      for (std::int64_t k = 0; k < std::min<std::int64_t>(n, 4); ++k) {
        __builtin_prefetch(rewards + p);
        __builtin_prefetch(terminated + p);
        __builtin_prefetch(truncated + p);
        p += N;
        if (p >= cap) p -= cap;
      }
    }
    std::int64_t id = ids[i], slot = slots[i], last = slot;
    double sum = 0.0, disc = 1.0;
    for (std::int64_t k = 0; k < n; ++k) {
      sum += disc * static_cast<double>(rewards[slot]);
      disc *= gamma;
      last = slot;
      id += N;
      if ((terminated[slot] | truncated[slot]) || id >= total) break;
      slot += N;
      if (slot >= cap) slot -= cap;
    }
    last_slots[i] = last;
    sums[i] = sum;
    discounts[i] = disc;
  }
}

// Episode returns after rows [first, L.total) were written. For each new row j in order: its
// `returns` / `has_return` are reset (when it is stored), and when it ends an episode
// (`done(j)`), every stored step of that episode, from max(episode_starts[s], oldest live id)
// to j, gets its discounted return-to-go (one backward pass) and has_return = 1, and
// episode_starts[s] moves to j + N. Rows of the write that were never stored (a write larger than
// the capacity) still move episode_starts. The return-to-go of a stored step only needs the
// rewards after it, which are newer and therefore stored: every stored step gets its exact value
// even when the episode's first steps were overwritten. Cost O(rows) amortised.
template <class R, class Done>
void fill_episode_returns(const R* rewards, StreamLayout L, std::int64_t first, double gamma, Done done,
                          std::int64_t* episode_starts, float* returns, std::uint8_t* has_return) {
  const std::int64_t N = L.num_envs, cap = L.capacity;
  const std::int64_t lo = L.total - std::min(L.total, cap);
  for (std::int64_t j = first; j < L.total; ++j) {
    if (j >= lo) {
      returns[j % cap] = 0.0f;
      has_return[j % cap] = 0;
    }
    if (!done(j)) continue;
    const std::int64_t s = j % N;
    double g = 0.0;
    for (std::int64_t i = j; i >= std::max(episode_starts[s], lo); i -= N) {
      const std::int64_t slot = i % cap;
      g = static_cast<double>(rewards[slot]) + gamma * g;
      returns[slot] = static_cast<float>(g);
      has_return[slot] = 1;
    }
    episode_starts[s] = j + N;
  }
}

}  // namespace fastrl
