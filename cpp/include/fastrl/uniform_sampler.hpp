// Uniform sampling of a replay buffer's live ids (ring.hpp), with or without replacement.
//
// draw_uniform picks B values from [0, n): independent draws with replacement; without, a
// uniform subset (Floyd's algorithm) in a uniform order (Fisher-Yates). sample_uniform maps them
// onto the live ids [oldest, total). The generator calls and their order are part of the
// contract: a seed gives the same batches in every version.
//
// Costs: O(B) expected with replacement, O(B) expected time and memory without.
// Thread safety: none of its own; the caller serialises access to the generator (ReplayBuffer
// calls it under its lock).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <utility>

#include "fastrl/ring.hpp"
#include "fastrl/rng.hpp"

namespace fastrl {

inline void check_batch_size(std::int64_t batch_size) {
  if (batch_size < 0) throw std::invalid_argument("batch_size must be >= 0, got " + std::to_string(batch_size));
}

// B uniform values from [0, n) into out.
inline void draw_uniform(Rng& rng, std::int64_t n, std::int64_t batch_size, bool replace, std::int64_t* out) {
  if (replace) {
    for (std::int64_t i = 0; i < batch_size; ++i)
      out[i] = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(n)));
    return;
  }
  std::unordered_set<std::int64_t> chosen;
  chosen.reserve(static_cast<std::size_t>(batch_size) * 2);
  std::int64_t k = 0;
  for (std::int64_t j = n - batch_size; j < n; ++j) {
    const std::int64_t t = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(j + 1)));
    const std::int64_t pick = chosen.insert(t).second ? t : (chosen.insert(j), j);
    out[k++] = pick;
  }
  for (std::int64_t i = batch_size - 1; i > 0; --i)
    std::swap(out[i], out[static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(i + 1)))]);
}

// Checks that `n` values can give a batch of B (the error names what `what` counts), changing nothing.
inline void check_population(std::int64_t n, std::int64_t batch_size, bool replace, const char* what) {
  if (!replace && batch_size > n)
    throw std::invalid_argument("batch_size " + std::to_string(batch_size) + " is larger than the number of " + what +
                                " (" + std::to_string(n) + ") and replace=False");
}

// B live ids drawn uniformly (distinct without replacement). Throws, drawing nothing, when the
// buffer is empty or B > size() without replacement.
inline void sample_uniform(Rng& rng, Ring ring, std::int64_t batch_size, bool replace, std::int64_t* ids) {
  const std::int64_t n = ring.size();
  check_batch_size(batch_size);
  if (n == 0) throw std::invalid_argument("cannot sample from an empty buffer");
  check_population(n, batch_size, replace, "stored transitions");
  draw_uniform(rng, n, batch_size, replace, ids);
  const std::int64_t lo = ring.oldest();
  for (std::int64_t i = 0; i < batch_size; ++i) ids[i] += lo;
}

}  // namespace fastrl
