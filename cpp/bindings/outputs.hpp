// Bindings-only: freshly sampled batches as numpy arrays in one pooled block (see BlockPool).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cstdint>
#include <vector>

#include "convert.hpp"
#include "fastrl/replay_buffer.hpp"

namespace fastrl::bind {

namespace py = pybind11;

constexpr std::size_t kMaxFields = 64;

// Output arrays in one pooled block (like sample): int64 ids when `with_ids`, then every field
// (rewards in nstep_dtype() for n-step), then the discounts when `with_discounts`. Returns the
// arrays in that order with the data pointers of the fields in outs, of ids and discounts in
// *ids / *discounts.
inline py::tuple pooled_outputs(const ReplayBuffer& b, std::int64_t batch, bool with_ids, bool nstep, bool with_discounts,
                         void** outs, std::int64_t** ids, void** discounts) {
  const auto& specs = b.sample_specs();
  const std::size_t nb = static_cast<std::size_t>(batch);
  const std::size_t ns = dtype_size(b.nstep_dtype());
  auto type_of = [&](std::size_t f) { return nstep && f == ReplayBuffer::kRewards ? b.nstep_dtype() : specs[f].dtype; };
  std::array<std::size_t, kMaxFields + 2> offset{};
  std::size_t total = with_ids ? nb * 8 : 0;
  for (std::size_t f = 0; f < specs.size(); ++f) {
    total = (total + 63) / 64 * 64;
    offset[f] = total;
    total += nb * static_cast<std::size_t>(specs[f].numel()) * dtype_size(type_of(f));
  }
  total = (total + 63) / 64 * 64;
  const std::size_t disc_at = total;
  if (with_discounts) total += nb * ns;
  py::capsule block = BlockPool::get().take(total);
  auto* base = static_cast<std::uint8_t*>(BlockPool::data(block));
  py::tuple result(specs.size() + (with_ids ? 1 : 0) + (with_discounts ? 1 : 0));
  std::size_t k = 0;
  if (with_ids) {
    *ids = reinterpret_cast<std::int64_t*>(base);
    result[k++] = py::array(py::dtype::of<std::int64_t>(), {batch}, *ids, block);
  }
  std::vector<py::ssize_t> shape;
  for (std::size_t f = 0; f < specs.size(); ++f) {
    shape.assign(1, batch);
    shape.insert(shape.end(), specs[f].shape.begin(), specs[f].shape.end());
    outs[f] = base + offset[f];
    result[k++] = py::array(to_numpy_dtype(type_of(f)), shape, outs[f], block);
  }
  if (with_discounts) {
    *discounts = base + disc_at;
    result[k++] = py::array(to_numpy_dtype(b.nstep_dtype()), {batch}, *discounts, block);
  }
  return result;
}

inline NStep make_nstep(std::int64_t n_step, double gamma) {
  NStep ns;
  ns.n = n_step;
  ns.gamma = gamma;
  return ns;
}

}  // namespace fastrl::bind
