// Return computation over time-major rollouts: discounted returns, GAE and TD(lambda) returns.
//
// Layout. Every array is time-major [T, N] in row-major order (N = 1 for a 1-d [T] rollout):
// element (t, n) is step t of env stream n, at flat position t * N + n. Flags are bytes
// (numpy bool), read as "non-zero means set".
//
// Episode ends. `terminated[t]` ends the episode with no bootstrap (the value after it is 0).
// `truncated[t]` ends the episode too (the recursion restarts before step t), but the value after
// it is the value of the true final observation (`bootstrap[t]` / `next_values[t]`). The last row
// t = T - 1 is cut by the end of the rollout and bootstraps the same way when it is not terminated.
// Terminated wins over truncated when both are set.
//
// Aliasing. Each step reads all its inputs at (t, n) before writing its outputs at (t, n), and
// reads back only its own outputs of row t + 1; so an output may be exactly one of the inputs
// (in place), but outputs must not partially overlap inputs or each other.
//
// Cost: O(T * N) time, O(1) extra memory. Thread-safe (pure functions of their arguments).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace fastrl {

namespace detail {

inline void check_returns_args(std::int64_t T, std::int64_t N, double gamma, double lam) {
  if (T < 0 || N < 1)
    throw std::invalid_argument("returns: expected T >= 0 and N >= 1, got T=" + std::to_string(T) +
                                ", N=" + std::to_string(N));
  if (!(gamma >= 0.0 && gamma <= 1.0))
    throw std::invalid_argument("gamma must be in [0, 1], got " + std::to_string(gamma));
  if (!(lam >= 0.0 && lam <= 1.0))
    throw std::invalid_argument("lam must be in [0, 1], got " + std::to_string(lam));
}

}  // namespace detail

// out[t] = r[t] + gamma * next, where next is 0 after a terminated step, bootstrap[t] after a
// truncated step or at t = T - 1, and out[t + 1] otherwise. bootstrap may be null (all zeros).
template <class F>
void discounted_returns(const F* rewards, const std::uint8_t* terminated, const std::uint8_t* truncated,
                        const F* bootstrap, double gamma_d, std::int64_t T, std::int64_t N, F* out) {
  detail::check_returns_args(T, N, gamma_d, 0.0);
  if (T == 0) return;
  const F gamma = static_cast<F>(gamma_d);
  const F zero = F(0);
  if (N == 1) {  // one serial chain: keep the carry in a register
    F carry = zero;
    for (std::int64_t t = T - 1; t >= 0; --t) {
      const F b = bootstrap ? bootstrap[t] : zero;
      const bool end = t == T - 1 || truncated[t];
      const F next = terminated[t] ? zero : (end ? b : carry);
      carry = rewards[t] + gamma * next;
      out[t] = carry;
    }
    return;
  }
  // Several streams: the inner loop runs over streams, independent lanes (vectorisable).
  {
    const std::int64_t o = (T - 1) * N;
    for (std::int64_t n = 0; n < N; ++n) {
      const F b = bootstrap ? bootstrap[o + n] : zero;
      out[o + n] = rewards[o + n] + gamma * (terminated[o + n] ? zero : b);
    }
  }
  for (std::int64_t t = T - 2; t >= 0; --t) {
    const std::int64_t o = t * N;
    const F* after = out + o + N;
    for (std::int64_t n = 0; n < N; ++n) {
      const F b = bootstrap ? bootstrap[o + n] : zero;
      const F next = terminated[o + n] ? zero : (truncated[o + n] ? b : after[n]);
      out[o + n] = rewards[o + n] + gamma * next;
    }
  }
}

// Generalised advantage estimation (Schulman et al. 2016):
//   delta[t] = r[t] + gamma * (terminated[t] ? 0 : next_values[t]) - values[t]
//   adv[t]   = delta[t] + gamma * lam * (terminated[t] or truncated[t] or t = T-1 ? 0 : adv[t + 1])
//   ret[t]   = adv[t] + values[t]
// next_values[t] is the value of the observation after step t (the true final observation after
// a truncated step).
template <class F>
void gae(const F* rewards, const F* values, const F* next_values, const std::uint8_t* terminated,
         const std::uint8_t* truncated, double gamma_d, double lam_d, std::int64_t T, std::int64_t N, F* adv,
         F* ret) {
  detail::check_returns_args(T, N, gamma_d, lam_d);
  if (T == 0) return;
  const F gamma = static_cast<F>(gamma_d), gl = static_cast<F>(gamma_d * lam_d), zero = F(0);
  if (N == 1) {
    F carry = zero;
    for (std::int64_t t = T - 1; t >= 0; --t) {
      const F v = values[t];
      const bool term = terminated[t];
      const bool end = term || truncated[t] || t == T - 1;
      const F delta = rewards[t] + gamma * (term ? zero : next_values[t]) - v;
      carry = delta + gl * (end ? zero : carry);
      adv[t] = carry;
      ret[t] = carry + v;
    }
    return;
  }
  {
    const std::int64_t o = (T - 1) * N;
    for (std::int64_t n = 0; n < N; ++n) {
      const F v = values[o + n];
      const F a = rewards[o + n] + gamma * (terminated[o + n] ? zero : next_values[o + n]) - v;
      adv[o + n] = a;
      ret[o + n] = a + v;
    }
  }
  for (std::int64_t t = T - 2; t >= 0; --t) {
    const std::int64_t o = t * N;
    const F* after = adv + o + N;
    for (std::int64_t n = 0; n < N; ++n) {
      const F v = values[o + n];
      const bool term = terminated[o + n];
      const F delta = rewards[o + n] + gamma * (term ? zero : next_values[o + n]) - v;
      const F a = delta + gl * ((term || truncated[o + n]) ? zero : after[n]);
      adv[o + n] = a;
      ret[o + n] = a + v;
    }
  }
}

// TD(lambda) returns (the recursive form of the lambda-return):
//   G[t] = r[t] + gamma * (terminated[t] ? 0 :
//                          truncated[t] or t = T-1 ? next_values[t]
//                                                  : (1 - lam) * next_values[t] + lam * G[t + 1])
// With values[t + 1] == next_values[t] inside episodes this equals gae's returns.
template <class F>
void lambda_returns(const F* rewards, const F* next_values, const std::uint8_t* terminated,
                    const std::uint8_t* truncated, double gamma_d, double lam_d, std::int64_t T, std::int64_t N,
                    F* out) {
  detail::check_returns_args(T, N, gamma_d, lam_d);
  if (T == 0) return;
  const F gamma = static_cast<F>(gamma_d), lam = static_cast<F>(lam_d), zero = F(0);
  const F one_m_lam = F(1) - lam;
  if (N == 1) {
    F carry = zero;
    for (std::int64_t t = T - 1; t >= 0; --t) {
      const F nv = next_values[t];
      const bool end = truncated[t] || t == T - 1;
      const F next = terminated[t] ? zero : (end ? nv : one_m_lam * nv + lam * carry);
      carry = rewards[t] + gamma * next;
      out[t] = carry;
    }
    return;
  }
  {
    const std::int64_t o = (T - 1) * N;
    for (std::int64_t n = 0; n < N; ++n)
      out[o + n] = rewards[o + n] + gamma * (terminated[o + n] ? zero : next_values[o + n]);
  }
  for (std::int64_t t = T - 2; t >= 0; --t) {
    const std::int64_t o = t * N;
    const F* after = out + o + N;
    for (std::int64_t n = 0; n < N; ++n) {
      const F nv = next_values[o + n];
      const F next = terminated[o + n] ? zero : (truncated[o + n] ? nv : one_m_lam * nv + lam * after[n]);
      out[o + n] = rewards[o + n] + gamma * next;
    }
  }
}

}  // namespace fastrl
