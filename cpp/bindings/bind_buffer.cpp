// pybind11 bindings of fastrl::ReplayBuffer: argument translation only.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "convert.hpp"
#include "core_args.hpp"
#include "fastrl/replay_buffer.hpp"
#include "inputs.hpp"
#include "outputs.hpp"

namespace py = pybind11;

namespace fastrl::bind {

namespace {

using Ids = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;
using Rng4 = std::array<std::uint64_t, 4>;
constexpr auto kNoGil = py::call_guard<py::gil_scoped_release>();

// Every sampling entry point ends here: the draw and the gather, without the GIL.
void sample(ReplayBuffer& b, std::int64_t batch_size, bool replace, bool require_return, BatchOut& out) {
  py::gil_scoped_release nogil;
  b.sample(batch_size, replace, out.ids, out.fields.data(), require_return, out.nstep_options());
}

}  // namespace

void bind_observation_store(py::class_<ReplayBuffer>& cls);

void bind_buffer(py::module_& m) {
  py::class_<ReplayBuffer> cls(m, "ReplayBuffer", "Circular replay buffer core (use fastrl.ReplayBuffer).");
  def_core_init<ReplayBuffer>(cls);
  cls.def_property_readonly("capacity", &ReplayBuffer::capacity)
      .def_property_readonly("num_envs", &ReplayBuffer::num_envs)
      .def_property_readonly("size", &ReplayBuffer::size)
      .def_property_readonly("total", &ReplayBuffer::total)
      .def("add", [](ReplayBuffer& b, const py::tuple& values) {
        // Reused per thread to keep add() allocation-free; the guard drops the Python
        // references on every exit path (a thread_local must not own them at thread exit).
        thread_local std::vector<Input> ins;
        thread_local std::vector<Source> src;
        struct Release {
          std::vector<Input>& v;
          ~Release() { for (auto& in : v) in.keep = py::object(); }
        } release{ins};
        if (b.num_envs() != 1)
          throw py::value_error("add() stores one step of one env; with num_envs=" + std::to_string(b.num_envs()) +
                                " use extend() with [num_envs, ...] arrays");
        collect(b, values, false, ins, src);
        b.write(src.data(), 1);
      }, py::arg("values"), "Append one row: one value per field, in field order.")
      .def("extend", [](ReplayBuffer& b, const py::tuple& values) {
        std::vector<Input> ins;
        std::vector<Source> src;
        const std::int64_t rows = collect(b, values, true, ins, src);
        py::gil_scoped_release nogil;
        b.write(src.data(), rows);
      }, py::arg("values"), "Append N rows: one [N, ...] array per field, in field order.")
      .def("sample", [](ReplayBuffer& b, std::int64_t batch_size, bool replace) {
        BatchOut out(1, std::nullopt);
        py::tuple result = fresh_outputs(b, batch_size, Parts{}, out);
        sample(b, batch_size, replace, false, out);
        return result;
      }, py::arg("batch_size"), py::arg("replace"),
         "Sample a batch: (ids, field arrays...) in freshly allocated arrays.")
      .def("sample_into", [](ReplayBuffer& b, std::int64_t batch_size, bool replace, py::handle ids_out,
                             const py::tuple& outs) {
        BatchOut out(1, std::nullopt);
        caller_outputs(b, batch_size, ids_out, false, py::none(), outs, py::none(), "", out);
        sample(b, batch_size, replace, false, out);
      }, py::arg("batch_size"), py::arg("replace"), py::arg("indices_out"), py::arg("outs"),
         "Sample into caller-owned arrays of the exact dtype and shape (None skips a field).")
      .def("sample_ex", [](ReplayBuffer& b, std::int64_t batch_size, bool replace, bool require_return,
                           std::int64_t n_step, std::optional<double> gamma) {
        BatchOut out(n_step, gamma);
        py::tuple result = fresh_outputs(b, batch_size, Parts{true, false, true}, out);
        sample(b, batch_size, replace, require_return, out);
        return result;
      }, py::arg("batch_size"), py::arg("replace"), py::arg("require_return"), py::arg("n_step"),
         py::arg("gamma").none(true),
         "Sample with options: (ids, field arrays..., discounts or None); n-step when gamma is given.")
      .def("sample_into_ex", [](ReplayBuffer& b, std::int64_t batch_size, bool replace, bool require_return,
                                std::int64_t n_step, std::optional<double> gamma, py::handle ids_out,
                                const py::tuple& outs, py::handle discounts_out) {
        BatchOut out(n_step, gamma);
        caller_outputs(b, batch_size, ids_out, false, py::none(), outs, discounts_out, "", out);
        sample(b, batch_size, replace, require_return, out);
      }, py::arg("batch_size"), py::arg("replace"), py::arg("require_return"), py::arg("n_step"),
         py::arg("gamma").none(true), py::arg("indices_out"), py::arg("outs"), py::arg("discounts_out").none(true),
         "sample_ex into caller-owned arrays of the exact dtype and shape (None skips a field).")
      .def("gather_nstep", [](const ReplayBuffer& b, const Ids& ids, std::int64_t n_step, double gamma) {
        BatchOut out(n_step, gamma);
        py::tuple result = fresh_outputs(b, ids.size(), Parts{false, false, true}, out);
        {
          py::gil_scoped_release nogil;
          b.gather_nstep(ids.data(), ids.size(), out.ns, out.fields.data());
        }
        return result;
      }, py::arg("ids"), py::arg("n_step"), py::arg("gamma"),
         "n-step targets of the given stored ids: (field arrays..., discounts).")
      .def("gather", [](const ReplayBuffer& b, std::size_t field, const Ids& ids) {
        const auto& s = b.sample_specs()[checked_field(b.num_fields(), field)];
        py::array out(to_numpy_dtype(s.dtype), rows_of(ids.size(), s));
        void* op = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          b.gather(field, ids.data(), ids.size(), op);
        }
        return out;
      }, py::arg("field"), py::arg("ids"), "Rows of one field at the given ids (which must be stored).")
      .def("rng_state", [](const ReplayBuffer& b) {
        const auto s = b.rng_state();
        return py::make_tuple(s[0], s[1], s[2], s[3]);
      })
      .def("set_state", [](ReplayBuffer& b, std::int64_t total, const Rng4& rng) { b.set_state(total, rng); },
           py::arg("total"), py::arg("rng"), kNoGil)
      .def("clear", &ReplayBuffer::clear, kNoGil)
      // ---- n-step sampling and episode returns
      .def_property_readonly("num_written_fields", &ReplayBuffer::num_written_fields)
      .def_property_readonly("episode_returns_gamma", &ReplayBuffer::episode_returns_gamma)
      .def("episode_starts", &ReplayBuffer::episode_starts)
      .def("set_full_state", &ReplayBuffer::set_state, py::arg("total"), py::arg("rng"), py::arg("episode_starts"),
           kNoGil);
  bind_observation_store(cls);
}

}  // namespace fastrl::bind
