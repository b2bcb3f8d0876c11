// pybind11 bindings of fastrl::PrioritizedReplayBuffer: argument translation only.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "convert.hpp"
#include "storage_options.hpp"
#include "outputs.hpp"
#include "fastrl/prioritized_buffer.hpp"

namespace py = pybind11;
using fastrl::PrioritizedReplayBuffer;
using fastrl::ReplayBuffer;

namespace fastrl::bind {

namespace {

using Ids = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;
using Values = py::array_t<double, py::array::c_style | py::array::forcecast>;

void check_batch_size(std::int64_t b) {
  if (b < 0) throw py::value_error("batch_size must be >= 0, got " + std::to_string(b));
}

}  // namespace

void bind_prioritized(py::module_& m) {
  m.attr("SUM_TREE_FANOUT") = fastrl::SumTree::kFanout;
  py::class_<PrioritizedReplayBuffer>(m, "PrioritizedReplayBuffer",
                                      "Prioritized replay core (use fastrl.PrioritizedReplayBuffer).")
      .def(py::init([](const std::vector<std::tuple<std::string, std::vector<std::int64_t>, std::string>>& fields,
                       std::int64_t capacity, std::int64_t num_envs, std::uint64_t seed, double alpha, double eps,
                       double episode_returns_gamma, bool store_next_observations, std::int64_t frame_stack,
                       bool zero_padding, std::shared_ptr<MappedFile> mapped,
                       const std::vector<std::uint64_t>& field_offsets) {
             if (fields.size() > kMaxFields) throw py::value_error("at most 64 fields are supported");
             std::vector<FieldSpec> specs;
             for (const auto& [name, shape, dtype] : fields) specs.push_back({name, shape, dtype_from_name(dtype)});
             return new PrioritizedReplayBuffer(std::move(specs), capacity, num_envs, seed, alpha, eps,
                                                episode_returns_gamma,
                                                make_storage_options(store_next_observations, frame_stack,
                                                                     zero_padding, std::move(mapped), field_offsets));
           }),
           py::arg("fields"), py::arg("capacity"), py::arg("num_envs"), py::arg("seed"), py::arg("alpha"),
           py::arg("eps"), py::arg("episode_returns_gamma") = -1.0, py::arg("store_next_observations") = true,
           py::arg("frame_stack") = 1, py::arg("zero_padding") = false, py::arg("mapped") = py::none(),
           py::arg("field_offsets") = std::vector<std::uint64_t>{})
      .def_property_readonly(
          "base", [](PrioritizedReplayBuffer& p) -> ReplayBuffer& { return p.base(); },
          py::return_value_policy::reference_internal, "The underlying ReplayBuffer core (writes go through it).")
      .def_property_readonly("eps", &PrioritizedReplayBuffer::eps)
      .def_property_readonly("alpha", &PrioritizedReplayBuffer::alpha)
      .def("set_alpha", &PrioritizedReplayBuffer::set_alpha, py::arg("alpha"),
           py::call_guard<py::gil_scoped_release>(), "Change alpha; leaves recomputed from raw priorities (O(N)).")
      .def_property_readonly("max_priority", &PrioritizedReplayBuffer::max_priority)
      .def("set_max_priority", &PrioritizedReplayBuffer::set_max_priority, py::arg("max_priority"))
      .def_property_readonly("total_mass", &PrioritizedReplayBuffer::total_mass)
      .def_property_readonly("min_mass", &PrioritizedReplayBuffer::min_mass)
      .def(
          "sample",
          [](PrioritizedReplayBuffer& p, std::int64_t batch_size, double beta, std::int64_t n_step,
             std::optional<double> gamma) {
            check_batch_size(batch_size);
            const ReplayBuffer& b = p.base();
            std::array<void*, kMaxFields> outs{};
            std::int64_t* ip = nullptr;
            NStep ns = make_nstep(n_step, gamma.value_or(1.0));
            py::tuple arrays = pooled_outputs(b, batch_size, true, gamma.has_value(), gamma.has_value(), outs.data(),
                                              &ip, &ns.discounts);
            py::array_t<float> weights(batch_size);
            float* wp = weights.mutable_data();
            {
              py::gil_scoped_release nogil;
              p.sample(batch_size, beta, ip, wp, outs.data(), gamma ? &ns : nullptr);
            }
            // (ids, weights, fields..., discounts or None)
            const std::size_t nf = b.specs().size();
            py::tuple result(nf + 3);
            result[0] = arrays[0];
            result[1] = std::move(weights);
            for (std::size_t f = 0; f < nf; ++f) result[f + 2] = arrays[f + 1];
            result[nf + 2] = gamma ? py::object(arrays[nf + 1]) : py::none();
            return result;
          },
          py::arg("batch_size"), py::arg("beta"), py::arg("n_step") = 1, py::arg("gamma").none(true) = py::none(),
          "Prioritized batch: (ids, float32 weights, field arrays..., discounts or None); n-step when gamma is given.")
      .def(
          "sample_ids",
          [](PrioritizedReplayBuffer& p, std::int64_t batch_size, double beta) {
            check_batch_size(batch_size);
            py::array_t<std::int64_t> ids(batch_size);
            py::array_t<double> weights(batch_size);
            std::int64_t* ip = ids.mutable_data();
            double* wp = weights.mutable_data();
            {
              py::gil_scoped_release nogil;
              p.sample(batch_size, beta, ip, wp, nullptr);
            }
            return py::make_tuple(ids, weights);
          },
          py::arg("batch_size"), py::arg("beta"), "Prioritized ids and float64 weights only (gather nothing).")
      .def(
          "sample_into",
          [](PrioritizedReplayBuffer& p, std::int64_t batch_size, double beta, py::handle ids_out,
             py::handle weights_out, const py::tuple& outs, std::int64_t n_step, std::optional<double> gamma,
             py::handle discounts_out) {
            check_batch_size(batch_size);
            const auto& specs = p.base().sample_specs();
            if (outs.size() != specs.size())
              throw py::value_error("expected " + std::to_string(specs.size()) + " field outputs, got " +
                                    std::to_string(outs.size()));
            auto* ip = static_cast<std::int64_t*>(checked_out_array(ids_out, DType::Int64, {}, batch_size, "indices out"));
            auto* wp = static_cast<float*>(checked_out_array(weights_out, DType::Float32, {}, batch_size, "weights out"));
            std::array<void*, kMaxFields> ptrs{};
            for (std::size_t f = 0; f < specs.size(); ++f) {
              if (outs[f].is_none()) continue;
              DType t = gamma && f == ReplayBuffer::kRewards ? p.base().nstep_dtype() : specs[f].dtype;
              ptrs[f] = checked_out_array(outs[f], t, specs[f].shape, batch_size, specs[f].name + " out");
            }
            NStep ns = make_nstep(n_step, gamma.value_or(1.0));
            if (gamma && !discounts_out.is_none())
              ns.discounts = checked_out_array(discounts_out, p.base().nstep_dtype(), {}, batch_size, "discounts out");
            py::gil_scoped_release nogil;
            p.sample(batch_size, beta, ip, wp, ptrs.data(), gamma ? &ns : nullptr);
          },
          py::arg("batch_size"), py::arg("beta"), py::arg("indices_out"), py::arg("weights_out"), py::arg("outs"),
          py::arg("n_step") = 1, py::arg("gamma").none(true) = py::none(), py::arg("discounts_out").none(true) = py::none(),
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
