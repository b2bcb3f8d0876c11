// Bindings-only: the one constructor path of the buffer cores. ReplayBuffer and
// PrioritizedReplayBuffer take the same arguments around their own (alpha, eps for prioritized):
//   (fields, capacity, num_envs, seed, *extra, episode_returns_gamma, store_next_observations,
//    frame_stack, zero_padding, zero_terminated_next, mapped, field_offsets)
// The field limit and every other check are the core's (ReplayBuffer's constructor).
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "convert.hpp"
#include "fastrl/mapped_file.hpp"
#include "fastrl/replay_buffer.hpp"

namespace fastrl::bind {

namespace py = pybind11;

using FieldDecls = std::vector<std::tuple<std::string, std::vector<std::int64_t>, std::string>>;

inline std::vector<FieldSpec> field_specs(const FieldDecls& fields) {
  std::vector<FieldSpec> specs;
  for (const auto& [name, shape, dtype] : fields) specs.push_back({name, shape, dtype_from_name(dtype)});
  return specs;
}

// `mapped` (a MappedFile or None) gives every stored field the region at field_offsets[f] of it.
inline StorageOptions storage_options(bool store_next_observations, std::int64_t frame_stack, bool zero_padding,
                                      bool zero_terminated_next, std::shared_ptr<MappedFile> mapped,
                                      const std::vector<std::uint64_t>& field_offsets) {
  StorageOptions o;
  o.observations.store_next_observations = store_next_observations;
  o.observations.frame_stack = frame_stack;
  o.observations.zero_padding = zero_padding;
  o.observations.zero_terminated_next = zero_terminated_next;
  if (mapped) {
    o.allocate = [mapped, field_offsets](std::size_t f, std::size_t bytes) {
      if (f >= field_offsets.size())
        throw std::invalid_argument("field_offsets: no offset for field " + std::to_string(f));
      return MappedFile::region(mapped, field_offsets[f], bytes);
    };
  }
  return o;
}

// Defines Core's constructor; Extra are the types of its own arguments after seed, named by extra_args.
template <class Core, class... Extra, class... ExtraArgs>
void def_core_init(py::class_<Core>& cls, ExtraArgs... extra_args) {
  cls.def(py::init([](const FieldDecls& fields, std::int64_t capacity, std::int64_t num_envs, std::uint64_t seed,
                      Extra... extra, double episode_returns_gamma, bool store_next_observations,
                      std::int64_t frame_stack, bool zero_padding, bool zero_terminated_next,
                      std::shared_ptr<MappedFile> mapped, const std::vector<std::uint64_t>& field_offsets) {
            return new Core(field_specs(fields), capacity, num_envs, seed, extra..., episode_returns_gamma,
                            storage_options(store_next_observations, frame_stack, zero_padding, zero_terminated_next,
                                            std::move(mapped), field_offsets));
          }),
          py::arg("fields"), py::arg("capacity"), py::arg("num_envs"), py::arg("seed"), extra_args...,
          py::arg("episode_returns_gamma") = -1.0, py::arg("store_next_observations") = true,
          py::arg("frame_stack") = 1, py::arg("zero_padding") = false, py::arg("zero_terminated_next") = false,
          py::arg("mapped") = py::none(),
          py::arg("field_offsets") = std::vector<std::uint64_t>{});
}

}  // namespace fastrl::bind
