// Episode returns over a replay buffer's rows (ring.hpp): when a step ends an episode, every
// stored step of it gets its observed discounted return-to-go. Flags are bytes.
//
// Cost: O(1) amortised per written row. Thread safety: none of its own; ReplayBuffer calls it
// under its lock, and it only reads and writes the arrays it is given.
#pragma once

#include <algorithm>
#include <cstdint>

#include "fastrl/ring.hpp"

namespace fastrl {

// Episode returns after rows [first, ring.total) were written. For each new row j in order: its
// `returns` / `has_return` are reset (when it is stored), and when it ends an episode
// (`done(j)`), every stored step of that episode, from max(episode_starts[s], oldest live id)
// to j, gets its discounted return-to-go (one backward pass) and has_return = 1, and
// episode_starts[s] moves to j + N. Rows of the write that were never stored (a write larger than
// the capacity) still move episode_starts. The return-to-go of a stored step only needs the
// rewards after it, which are newer and therefore stored: every stored step gets its exact value
// even when the episode's first steps were overwritten.
template <class R, class Done>
void fill_episode_returns(const R* rewards, Ring ring, std::int64_t first, double gamma, Done done,
                          std::int64_t* episode_starts, float* returns, std::uint8_t* has_return) {
  const std::int64_t lo = ring.oldest();
  for (std::int64_t j = first; j < ring.total; ++j) {
    if (j >= lo) {
      returns[ring.slot(j)] = 0.0f;
      has_return[ring.slot(j)] = 0;
    }
    if (!done(j)) continue;
    const std::int64_t s = ring.stream(j);
    double g = 0.0;
    for (std::int64_t i = j; i >= std::max(episode_starts[s], lo); i -= ring.num_envs) {
      const std::int64_t slot = ring.slot(i);
      g = static_cast<double>(rewards[slot]) + gamma * g;
      returns[slot] = static_cast<float>(g);
      has_return[slot] = 1;
    }
    episode_starts[s] = j + ring.num_envs;
  }
}

}  // namespace fastrl
