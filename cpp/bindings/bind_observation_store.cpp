// pybind11 bindings of a ReplayBuffer's storage: field views, the observation store (observations
// stored once, frame stacks) and its save / load state, memory. Argument translation only.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <vector>

#include "convert.hpp"
#include "fastrl/replay_buffer.hpp"

namespace py = pybind11;

namespace fastrl::bind {

void bind_observation_store(py::class_<ReplayBuffer>& cls) {
  constexpr std::size_t kObs = ReplayBuffer::kObs;
  cls.def("field_view", [](const ReplayBuffer& b, std::size_t field, bool writable) {
        const auto& s = b.specs()[checked_field(b.num_fields(), field)];
        if (!b.is_stored(field)) throw py::value_error(s.name + " has no storage (read from the next rows)");
        return storage_view(b.storage(field), s.dtype, rows_of(b.capacity(), s), writable);
      }, py::arg("field"), py::arg("writable") = false,
      "The whole storage of one field, indexed by slot (id % capacity); keeps the memory alive.")
      .def("is_stored", &ReplayBuffer::is_stored, py::arg("field"))
      .def_property_readonly("frame_stack", [](const ReplayBuffer& b) { return b.observation_store().frame_stack(); })
      .def("storage_bytes", &ReplayBuffer::storage_bytes, py::arg("field"))
      .def_property_readonly("side_bytes", &ReplayBuffer::side_bytes)
      .def_property_readonly("side_rows", &ReplayBuffer::side_rows)
      .def_property_readonly("observation_fixed_bytes", &ReplayBuffer::observation_fixed_bytes)
      .def("observation_state_views", [](const ReplayBuffer& b, bool writable) {
        const auto& st = b.observation_store();
        const auto& s = b.specs()[kObs];
        py::dict d;
        if (st.pending())
          d["pending_next_observations"] = storage_view(st.pending(), s.dtype, rows_of(b.num_envs(), s), writable);
        if (st.tail_rows() > 0) {
          d["tail_frames"] = storage_view(st.tail_frames(), s.dtype, rows_of(st.tail_rows(), s), writable);
          d["tail_done"] = storage_view(st.tail_done(), DType::Bool, {st.tail_rows()}, writable);
        }
        return d;
      }, py::arg("writable") = false,
      "Views of the observation store's fixed state by name (empty in the plain layout).")
      .def("side_entries", [](const ReplayBuffer& b) {
        std::vector<std::int64_t> slots;
        std::vector<std::uint8_t> rows;
        {
          py::gil_scoped_release nogil;
          b.side_entries(slots, rows);
        }
        const auto& s = b.specs()[kObs];
        py::array r(to_numpy_dtype(s.dtype), rows_of(static_cast<std::int64_t>(slots.size()), s));
        if (!rows.empty()) std::memcpy(r.mutable_data(), rows.data(), rows.size());
        return py::make_tuple(py::array_t<std::int64_t>(static_cast<py::ssize_t>(slots.size()), slots.data()), r);
      }, "Kept next observations: (int64 slots [m], rows [m, *frame_shape]), a copy.")
      .def("set_side_entries", [](ReplayBuffer& b, const py::array_t<std::int64_t, py::array::c_style>& slots,
                                  const py::array& rows) {
        const auto& s = b.specs()[kObs];
        checked_out_array(rows, s.dtype, s.shape, slots.size(), "side rows");
        if (slots.ndim() != 1) throw py::value_error("side slots: expected a 1-d int64 array");
        const auto* rp = static_cast<const std::uint8_t*>(rows.data());
        py::gil_scoped_release nogil;
        b.set_side_entries(slots.data(), rp, slots.size());
      }, py::arg("slots"), py::arg("rows"), "Replace the kept next observations (after set_state).");
}

}  // namespace fastrl::bind
