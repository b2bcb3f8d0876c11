// Uniform sampling among the live ids whose episode has ended (require_return): per stream s,
// the live ids below episode_starts[s] (the first id of its running episode), which are exactly
// the steps with an episode return (episode_returns.hpp). The B uniform values of draw_uniform
// over their count are mapped to ids through per-stream prefix counts.
//
// Costs: O(N + B log N) for N streams. Thread safety: none of its own (its prefix vector is
// scratch); ReplayBuffer calls it under its lock.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "fastrl/ring.hpp"
#include "fastrl/rng.hpp"
#include "fastrl/uniform_sampler.hpp"

namespace fastrl {

class ReturnSampler {
 public:
  // B ids into ids; throws, drawing nothing, when no live step has a return yet or B is larger
  // than their number without replacement.
  void sample(Rng& rng, Ring ring, const std::int64_t* episode_starts, std::int64_t batch_size, bool replace,
              std::int64_t* ids) {
    check_batch_size(batch_size);
    const std::int64_t lo = ring.oldest(), N = ring.num_envs;
    prefix_.assign(static_cast<std::size_t>(N) + 1, 0);
    for (std::int64_t s = 0; s < N; ++s)  // count of ids lo + s + k N below episode_starts[s]
      prefix_[s + 1] = prefix_[s] + std::max<std::int64_t>(0, (episode_starts[s] - lo - s) / N);
    const std::int64_t n = prefix_.back();
    if (n == 0) throw std::invalid_argument("no stored transition has an episode return yet (require_return=True)");
    check_population(n, batch_size, replace, "stored transitions with a return");
    draw_uniform(rng, n, batch_size, replace, ids);
    for (std::int64_t i = 0; i < batch_size; ++i) {
      const std::int64_t s = std::upper_bound(prefix_.begin(), prefix_.end(), ids[i]) - prefix_.begin() - 1;
      ids[i] = lo + s + (ids[i] - prefix_[s]) * N;
    }
  }

 private:
  std::vector<std::int64_t> prefix_;
};

}  // namespace fastrl
