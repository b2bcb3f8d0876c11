// A replay-buffer field: its name, per-row shape and dtype.
// Costs: O(rank). Thread-safe (a value).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fastrl/dtype.hpp"

namespace fastrl {

struct FieldSpec {
  std::string name;
  std::vector<std::int64_t> shape;  // per-row shape
  DType dtype = DType::Float32;

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  std::size_t row_bytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype); }
};

}  // namespace fastrl
