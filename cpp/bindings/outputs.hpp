// Bindings-only: where a sample writes. One helper for every sampling entry point: fresh numpy
// arrays in one pooled block, or checked caller-owned arrays (sample_into, prefetch slots).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "convert.hpp"
#include "fastrl/replay_buffer.hpp"

namespace fastrl::bind {

namespace py = pybind11;

// Output memory for sampled batches. Fresh large allocations cost page faults on every call
// (glibc hands blocks over 128 KiB out as new mmaps), so blocks are recycled: a batch's arrays
// share one block, owned by a capsule that gives the block back when the last array dies.
// Thread-safe; at most kMaxCached bytes are kept.
class BlockPool {
 public:
  static BlockPool& get() {
    static BlockPool* pool = new BlockPool;  // leaked on purpose: capsules may outlive the module
    return *pool;
  }

  // A capsule owning a block of at least n bytes (64-byte aligned); its pointer is the block.
  py::capsule take(std::size_t n) {
    n = std::max<std::size_t>(64, (n + 63) / 64 * 64);
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> g(mu_);
      auto& v = free_[n];
      if (!v.empty()) {
        p = v.back();
        v.pop_back();
        cached_ -= n;
      }
    }
    if (!p) p = std::aligned_alloc(64, n);
    if (!p) throw std::bad_alloc();
    auto* block = new Block{p, n};
    try {
      return py::capsule(block, [](void* b) {
        auto* blk = static_cast<Block*>(b);
        BlockPool::get().give(blk->ptr, blk->size);
        delete blk;
      });
    } catch (...) {
      std::free(p);
      delete block;
      throw;
    }
  }

  static void* data(const py::capsule& c) { return static_cast<Block*>(c.get_pointer())->ptr; }

 private:
  struct Block {
    void* ptr;
    std::size_t size;
  };
  static constexpr std::size_t kMaxCached = std::size_t(512) << 20;
  static constexpr std::size_t kMaxPerSize = 8;

  void give(void* p, std::size_t n) {
    {
      std::lock_guard<std::mutex> g(mu_);
      auto& v = free_[n];
      if (cached_ + n <= kMaxCached && v.size() < kMaxPerSize) {
        v.push_back(p);
        cached_ += n;
        return;
      }
    }
    std::free(p);
  }

  std::mutex mu_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  std::size_t cached_ = 0;
};


// The output pointers of one sample and its n-step options (n-step when gamma is given).
struct BatchOut {
  std::int64_t* ids = nullptr;
  float* weights = nullptr;  // prioritized only
  std::array<void*, ReplayBuffer::kMaxFields> fields{};  // null: the field is skipped
  bool nstep = false;
  NStep ns;  // ns.discounts: the discounts output or null

  BatchOut(std::int64_t n_step, std::optional<double> gamma) : nstep(gamma.has_value()) {
    ns.n = n_step;
    ns.gamma = gamma.value_or(1.0);
  }
  const NStep* nstep_options() const { return nstep ? &ns : nullptr; }
  // dtype of field f as sampled: n-step rewards have nstep_dtype().
  DType dtype(const ReplayBuffer& b, std::size_t f) const {
    return nstep && f == ReplayBuffer::kRewards ? b.nstep_dtype() : b.sample_specs()[f].dtype;
  }
};

// What a fresh batch holds besides the fields, in this order: ids, weights, fields, then
// discounts (the array, or None when not n-step).
struct Parts {
  bool ids = true;
  bool weights = false;
  bool discounts = false;
};

// Fresh arrays for `batch` rows in one pooled block (64-byte aligned pieces); points `out` at them.
// Stacked observations (1-step): observations and next_observations are two views of one
// [batch, k + 1, ...] array of frame windows (see ReplayBuffer::is_window).
inline py::tuple fresh_outputs(const ReplayBuffer& b, std::int64_t batch, Parts parts, BatchOut& out) {
  check_batch_size(batch);
  const auto& specs = b.sample_specs();
  constexpr std::size_t kObs = ReplayBuffer::kObs, kNext = ReplayBuffer::kNextObs;
  const auto k = static_cast<std::size_t>(b.observation_store().frame_stack());
  const bool window = !out.nstep && k > 1 && specs.size() > kNext;
  const std::size_t frame = b.observation_store().frame_bytes();
  const std::size_t nb = static_cast<std::size_t>(batch);
  std::size_t total = 0;
  auto piece = [&](std::size_t bytes) {
    total = (total + 63) / 64 * 64;
    const std::size_t at = total;
    total += bytes;
    return at;
  };
  const std::size_t ids_at = parts.ids ? piece(nb * 8) : 0, w_at = parts.weights ? piece(nb * 4) : 0;
  std::array<std::size_t, ReplayBuffer::kMaxFields> at{};
  for (std::size_t f = 0; f < specs.size(); ++f) {
    if (window && f == kObs) at[f] = piece(nb * (k + 1) * frame);
    else if (window && f == kNext) at[f] = at[kObs] + frame;
    else at[f] = piece(nb * static_cast<std::size_t>(specs[f].numel()) * dtype_size(out.dtype(b, f)));
  }
  const bool with_discounts = parts.discounts && out.nstep;
  const std::size_t d_at = with_discounts ? piece(nb * dtype_size(b.nstep_dtype())) : 0;
  py::capsule block = BlockPool::get().take(total);
  auto* base = static_cast<std::uint8_t*>(BlockPool::data(block));
  auto array = [&](DType t, std::vector<py::ssize_t> shape, void* p) {
    return py::array(to_numpy_dtype(t), shape, p, block);
  };
  py::tuple result(parts.ids + parts.weights + specs.size() + parts.discounts);
  std::size_t i = 0;
  if (parts.ids) result[i++] = array(DType::Int64, {batch}, out.ids = reinterpret_cast<std::int64_t*>(base + ids_at));
  if (parts.weights) result[i++] = array(DType::Float32, {batch}, out.weights = reinterpret_cast<float*>(base + w_at));
  for (std::size_t f = 0; f < specs.size(); ++f) {
    std::vector<py::ssize_t> shape{batch};
    shape.insert(shape.end(), specs[f].shape.begin(), specs[f].shape.end());
    out.fields[f] = base + at[f];
    if (window && (f == kObs || f == kNext)) {  // C strides, but rows k + 1 frames apart
      std::vector<py::ssize_t> strides(shape.size());
      py::ssize_t step = static_cast<py::ssize_t>(dtype_size(out.dtype(b, f)));
      for (std::size_t d = shape.size(); d-- > 0;) {
        strides[d] = step;
        step *= shape[d];
      }
      strides[0] = static_cast<py::ssize_t>((k + 1) * frame);
      result[i++] = py::array(to_numpy_dtype(out.dtype(b, f)), shape, strides, out.fields[f], block);
    } else {
      result[i++] = array(out.dtype(b, f), shape, out.fields[f]);
    }
  }
  if (with_discounts) result[i++] = array(b.nstep_dtype(), {batch}, out.ns.discounts = base + d_at);
  else if (parts.discounts) result[i++] = py::none();
  return result;
}

// Whether outs' observations and next_observations arrays ask for frame windows
// (ReplayBuffer::is_window on their data pointers): the two views of one window array, or two
// overlapping arrays (refused by the layout checks).
inline bool window_pair(const ReplayBuffer& b, const py::tuple& outs) {
  constexpr std::size_t kObs = ReplayBuffer::kObs, kNext = ReplayBuffer::kNextObs;
  std::array<void*, ReplayBuffer::kMaxFields> data{};
  auto& api = py::detail::npy_api::get();
  for (std::size_t f : {kObs, kNext})
    if (f < outs.size() && api.PyArray_Check_(outs[f].ptr())) data[f] = py::detail::array_proxy(outs[f].ptr())->data;
  return b.is_window(data.data());
}

// Checks caller-owned arrays (exact dtype and shape, see checked_out_array) and points `out` at
// them: ids, weights (when `with_weights`), one per field (None skips it), discounts (n-step;
// None skips it). `where` prefixes the errors. Changes nothing on error.
inline void caller_outputs(const ReplayBuffer& b, std::int64_t batch, py::handle ids, bool with_weights,
                           py::handle weights, const py::tuple& outs, py::handle discounts, const std::string& where,
                           BatchOut& out) {
  check_batch_size(batch);
  const auto& specs = b.sample_specs();
  if (outs.size() != specs.size())
    throw py::value_error(where + "expected " + std::to_string(specs.size()) + " field outputs, got " +
                          std::to_string(outs.size()));
  out.ids = static_cast<std::int64_t*>(checked_out_array(ids, DType::Int64, {}, batch, where + "indices out"));
  if (with_weights)
    out.weights = static_cast<float*>(checked_out_array(weights, DType::Float32, {}, batch, where + "weights out"));
  // observations and next_observations one frame apart: the two views of one window array
  // (ReplayBuffer.empty_batch makes them), rows k + 1 frames apart; 1-step only
  const bool pair = window_pair(b, outs);
  const auto& obs = b.observation_store();
  const auto row_stride = static_cast<std::int64_t>((obs.frame_stack() + 1) * obs.frame_bytes());
  for (std::size_t f = 0; f < specs.size(); ++f) {
    if (outs[f].is_none()) continue;
    const std::string what = where + specs[f].name + " out";
    if (!(pair && (f == ReplayBuffer::kObs || f == ReplayBuffer::kNextObs))) {
      out.fields[f] = checked_out_array(outs[f], out.dtype(b, f), specs[f].shape, batch, what);
      continue;
    }
    try {
      out.fields[f] = checked_out_array(outs[f], out.dtype(b, f), specs[f].shape, batch, what, row_stride);
    } catch (const py::value_error& e) {  // one frame apart but not window views: overlapping arrays
      throw py::value_error(where + "observations out and next_observations out overlap: use separate arrays, or "
                                    "the views w[:, :k], w[:, 1:] of one [B, k + 1, ...] window array (" +
                            std::string(e.what()) + ")");
    }
  }
  if (pair && out.nstep)
    throw py::value_error(where + "observations out and next_observations out are views of one frame-window array, "
                                  "which holds 1-step batches only: use separate arrays for n-step sampling "
                                  "(empty_batch(..., discounts=True))");
  if (out.nstep && !discounts.is_none())
    out.ns.discounts = checked_out_array(discounts, b.nstep_dtype(), {}, batch, where + "discounts out");
}

}  // namespace fastrl::bind
