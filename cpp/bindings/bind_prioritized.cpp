// pybind11 bindings of fastrl::PrioritizedReplayBuffer: argument translation only.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "convert.hpp"
#include "core_args.hpp"
#include "fastrl/prioritized_buffer.hpp"
#include "outputs.hpp"

namespace py = pybind11;
using fastrl::PrioritizedReplayBuffer;
using fastrl::ReplayBuffer;

namespace fastrl::bind {

namespace {

using Ids = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;
using Values = py::array_t<double, py::array::c_style | py::array::forcecast>;

// Every prioritized sampling entry point ends here: the draw and the gather, without the GIL.
template <class W>
void sample(PrioritizedReplayBuffer& p, std::int64_t batch_size, double beta, W* weights, BatchOut& out) {
  py::gil_scoped_release nogil;
  p.sample(batch_size, beta, out.ids, weights, out.fields.data(), out.nstep_options());
}

}  // namespace

void bind_prioritized(py::module_& m) {
  m.attr("SUM_TREE_FANOUT") = fastrl::SumTree::kFanout;
  py::class_<PrioritizedReplayBuffer> cls(m, "PrioritizedReplayBuffer",
                                          "Prioritized replay core (use fastrl.PrioritizedReplayBuffer).");
  def_core_init<PrioritizedReplayBuffer, double, double>(cls, py::arg("alpha"), py::arg("eps"));
  cls.def_property_readonly("base", [](PrioritizedReplayBuffer& p) -> ReplayBuffer& { return p.base(); },
                            py::return_value_policy::reference_internal,
                            "The underlying ReplayBuffer core (writes go through it).")
      .def_property_readonly("eps", &PrioritizedReplayBuffer::eps)
      .def_property_readonly("alpha", &PrioritizedReplayBuffer::alpha)
      .def("set_alpha", &PrioritizedReplayBuffer::set_alpha, py::arg("alpha"),
           py::call_guard<py::gil_scoped_release>(), "Change alpha; leaves recomputed from raw priorities (O(N)).")
      .def_property_readonly("max_priority", &PrioritizedReplayBuffer::max_priority)
      .def("set_max_priority", &PrioritizedReplayBuffer::set_max_priority, py::arg("max_priority"))
      .def_property_readonly("total_mass", &PrioritizedReplayBuffer::total_mass)
      .def_property_readonly("min_mass", &PrioritizedReplayBuffer::min_mass)
      .def("sample", [](PrioritizedReplayBuffer& p, std::int64_t batch_size, double beta, std::int64_t n_step,
                        std::optional<double> gamma) {
        BatchOut out(n_step, gamma);
        py::tuple result = fresh_outputs(p.base(), batch_size, Parts{true, true, true}, out);
        sample(p, batch_size, beta, out.weights, out);
        return result;
      }, py::arg("batch_size"), py::arg("beta"), py::arg("n_step") = 1, py::arg("gamma").none(true) = py::none(),
         "Prioritized batch: (ids, float32 weights, field arrays..., discounts or None); n-step when gamma is given.")
      .def("sample_ids", [](PrioritizedReplayBuffer& p, std::int64_t batch_size, double beta) {
        check_batch_size(batch_size);
        py::array_t<std::int64_t> ids(batch_size);
        py::array_t<double> weights(batch_size);
        BatchOut out(1, std::nullopt);  // no field outputs: gathers nothing
        out.ids = ids.mutable_data();
        sample(p, batch_size, beta, weights.mutable_data(), out);
        return py::make_tuple(ids, weights);
      }, py::arg("batch_size"), py::arg("beta"), "Prioritized ids and float64 weights only (gather nothing).")
      .def("sample_into", [](PrioritizedReplayBuffer& p, std::int64_t batch_size, double beta, py::handle ids_out,
                             py::handle weights_out, const py::tuple& outs, std::int64_t n_step,
                             std::optional<double> gamma, py::handle discounts_out) {
        BatchOut out(n_step, gamma);
        caller_outputs(p.base(), batch_size, ids_out, true, weights_out, outs, discounts_out, "", out);
        sample(p, batch_size, beta, out.weights, out);
      }, py::arg("batch_size"), py::arg("beta"), py::arg("indices_out"), py::arg("weights_out"), py::arg("outs"),
         py::arg("n_step") = 1, py::arg("gamma").none(true) = py::none(),
         py::arg("discounts_out").none(true) = py::none(),
         "Prioritized sample into caller-owned arrays of the exact dtype and shape (None skips a field).")
      .def(
          "update_priorities",
          [](PrioritizedReplayBuffer& p, const py::array& ids_in, const py::array& pr_in) {
            // Any shapes with the same number of elements; integer ids; real priorities. float32
            // and float64 priorities are read in place, other real dtypes converted to float64.
            const char ik = ids_in.dtype().kind(), pk = pr_in.dtype().kind();
            if (ik != 'i' && ik != 'u')
              throw py::type_error("indices must be integers, got dtype " + std::string(py::str(ids_in.dtype())));
            if (pk != 'f' && pk != 'i' && pk != 'u')
              throw py::type_error("priorities must be real numbers, got dtype " + std::string(py::str(pr_in.dtype())));
            if (ids_in.size() != pr_in.size())
              throw py::value_error("indices and priorities must have the same number of elements, got " +
                                    std::to_string(ids_in.size()) + " and " + std::to_string(pr_in.size()));
            const Ids ids = Ids::ensure(ids_in);
            if (!ids) throw py::error_already_set();
            const std::int64_t* ip = ids.data();
            const std::int64_t n = ids.size();
            constexpr int exact = py::array::c_style;
            if (pk == 'f' && pr_in.itemsize() == 4 && py::isinstance<py::array_t<float, exact>>(pr_in)) {
              const float* pp = static_cast<const float*>(pr_in.data());
              py::gil_scoped_release nogil;
              return p.update_priorities(ip, pp, n);
            }
            const Values pr = Values::ensure(pr_in);
            if (!pr) throw py::error_already_set();
            const double* pp = pr.data();
            py::gil_scoped_release nogil;
            return p.update_priorities(ip, pp, n);
          },
          py::arg("ids"), py::arg("priorities"),
          "Set raw priorities p + eps of the rows `ids`; stale ids are skipped. Returns the number applied.")
      .def(
          "priorities",
          [](const PrioritizedReplayBuffer& p, const Ids& ids) {
            py::array_t<double> out(ids.size());
            double* op = out.mutable_data();
            const std::int64_t* ip = ids.data();
            const std::int64_t n = ids.size();
            {
              py::gil_scoped_release nogil;
              p.priorities(ip, n, op);
            }
            return out;
          },
          py::arg("ids"), "Raw priorities (p + eps) of stored ids.")
      .def(
          "masses",
          [](const PrioritizedReplayBuffer& p) {
            py::array_t<double> out(p.capacity());
            double* op = out.mutable_data();
            {
              py::gil_scoped_release nogil;
              p.masses(op);
            }
            return out;
          },
          "Sampling masses (p + eps)^alpha by slot, a copy (0 for empty slots).")
      .def(
          "priorities_view",
          [](const PrioritizedReplayBuffer& p, bool writable) {
            auto raw = p.raw_priorities();
            std::shared_ptr<std::uint8_t> bytes(raw, reinterpret_cast<std::uint8_t*>(raw.get()));
            return storage_view(bytes, DType::Float64, {p.capacity()}, writable);
          },
          py::arg("writable") = false,
          "Raw priorities by slot (a view that keeps its memory alive; trees are rebuilt on set_state).");
}

}  // namespace fastrl::bind
