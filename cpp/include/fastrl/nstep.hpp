// n-step targets over a replay buffer's rows (ring.hpp): for each start id i, the discounted sum
// of the rewards of ids i, i + N, ..., i + (k-1) N of the same stream (k <= n), stopping after a
// terminated or truncated step and before the first id >= total (not written yet; newer ids of a
// live id are always live, so nothing overwritten is read). The buffer takes next_observations,
// terminated and truncated from the last summed step; `discounts` is gamma^k.
//
// Costs: O(B * n) for B start ids; the random first slots are prefetched a few samples ahead.
// Thread safety: none of its own; ReplayBuffer calls it under its lock (NStepTargets is its
// scratch, guarded by that lock).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastrl/dtype.hpp"
#include "fastrl/ring.hpp"

namespace fastrl {

// Options of n-step sampling.
struct NStep {
  std::int64_t n = 1;
  double gamma = 1.0;
  void* discounts = nullptr;  // B values of ReplayBuffer::nstep_dtype(): gamma^k, or null

  // std::invalid_argument unless n >= 1 and gamma in [0, 1].
  void check() const {
    if (n < 1) throw std::invalid_argument("n_step must be >= 1, got " + std::to_string(n));
    if (!(gamma >= 0.0 && gamma <= 1.0))
      throw std::invalid_argument("gamma must be in [0, 1], got " + std::to_string(gamma));
  }
};

// The n-step sums of one batch: per sample the slot and id of the last summed step, the sum and
// gamma^k. Reused across batches (its vectors only grow).
struct NStepTargets {
  std::vector<std::int64_t> last_slots, last_ids;
  std::vector<double> sums, discounts;

  // Sums for B live start ids (with their slots). Flags are bytes.
  template <class R>
  void compute(const R* rewards, const std::uint8_t* terminated, const std::uint8_t* truncated, const Ring& ring,
               const std::int64_t* ids, const std::int64_t* slots, std::int64_t b, const NStep& ns) {
    const std::size_t nb = static_cast<std::size_t>(b);
    last_slots.resize(nb);
    sums.resize(nb);
    discounts.resize(nb);
    // Locals, not members: the stores below may not alias them, so they stay in registers.
    const Ring r = ring;
    const std::int64_t n = ns.n;
    const double gamma = ns.gamma;
    std::int64_t* last_out = last_slots.data();
    double *sum_out = sums.data(), *disc_out = discounts.data();
    constexpr std::int64_t kAhead = 8;
    for (std::int64_t i = 0; i < b; ++i) {
      if (i + kAhead < b) {
        std::int64_t p = slots[i + kAhead];
        for (std::int64_t k = 0; k < std::min<std::int64_t>(n, 4); ++k) {
          __builtin_prefetch(rewards + p);
          __builtin_prefetch(terminated + p);
          __builtin_prefetch(truncated + p);
          p = r.next_slot(p);
        }
      }
      std::int64_t id = ids[i], slot = slots[i], last = slot;
      double sum = 0.0, disc = 1.0;
      for (std::int64_t k = 0; k < n; ++k) {
        sum += disc * static_cast<double>(rewards[slot]);
        disc *= gamma;
        last = slot;
        id += r.num_envs;
        if ((terminated[slot] | truncated[slot]) || id >= r.total) break;
        slot = r.next_slot(slot);
      }
      last_out[i] = last;
      sum_out[i] = sum;
      disc_out[i] = disc;
    }
  }

  // The ids of the last summed steps (into last_ids), for reads that need ids, not only slots.
  void compute_last_ids(const Ring& ring) {
    last_ids.resize(last_slots.size());
    ring.ids_of_slots(last_slots.data(), static_cast<std::int64_t>(last_slots.size()), last_ids.data());
  }

  // The sums and discounts as `t` (float32 or float64) into the non-null outputs.
  void write(DType t, void* sums_out, void* discounts_out) const {
    put(t, sums_out, sums);
    put(t, discounts_out, discounts);
  }

 private:
  static void put(DType t, void* out, const std::vector<double>& v) {
    if (!out) return;
    if (t == DType::Float64) std::memcpy(out, v.data(), v.size() * sizeof(double));
    else std::copy(v.begin(), v.end(), static_cast<float*>(out));
  }
};

}  // namespace fastrl
