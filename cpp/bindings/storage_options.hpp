// Bindings-only helper: a StorageOptions from the keyword arguments the buffer constructors take.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fastrl/mapped_file.hpp"
#include "fastrl/replay_buffer.hpp"

namespace fastrl::bind {

namespace py = pybind11;

// `mapped` (a MappedFile or None) gives every stored field the region at field_offsets[f] of it.
inline StorageOptions make_storage_options(bool store_next_observations, std::int64_t frame_stack, bool zero_padding,
                                           std::shared_ptr<MappedFile> mapped,
                                           const std::vector<std::uint64_t>& field_offsets) {
  StorageOptions o;
  o.observations.store_next_observations = store_next_observations;
  o.observations.frame_stack = frame_stack;
  o.observations.zero_padding = zero_padding;
  if (mapped) {
    o.allocate = [mapped, field_offsets](std::size_t f, std::size_t bytes) {
      if (f >= field_offsets.size())
        throw std::invalid_argument("field_offsets: no offset for field " + std::to_string(f));
      return MappedFile::region(mapped, field_offsets[f], bytes);
    };
  }
  return o;
}

}  // namespace fastrl::bind
