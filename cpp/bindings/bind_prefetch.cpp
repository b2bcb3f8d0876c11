// pybind11 bindings of fastrl::Prefetcher: a background sampler into caller-owned slots.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "convert.hpp"
#include "outputs.hpp"
#include "fastrl/prefetcher.hpp"
#include "fastrl/prioritized_buffer.hpp"

namespace py = pybind11;

namespace fastrl::bind {

namespace {

// The checked output pointers of one slot: ids, weights (prioritized only), fields, discounts.
struct Slot {
  std::int64_t* ids = nullptr;
  float* weights = nullptr;
  std::array<void*, kMaxFields> outs{};
  void* discounts = nullptr;
};

Slot checked_slot(const ReplayBuffer& b, bool prioritized, const py::tuple& slot, std::int64_t batch, bool nstep,
                  std::size_t k) {
  const std::string where = "slot " + std::to_string(k) + ": ";
  if (slot.size() != 4) throw py::value_error(where + "expected (indices, weights, fields, discounts)");
  Slot s;
  s.ids = static_cast<std::int64_t*>(checked_out_array(slot[0], DType::Int64, {}, batch, where + "indices out"));
  if (prioritized)
    s.weights = static_cast<float*>(checked_out_array(slot[1], DType::Float32, {}, batch, where + "weights out"));
  const auto outs = slot[2].cast<py::tuple>();
  const auto& specs = b.sample_specs();
  if (outs.size() != specs.size())
    throw py::value_error(where + "expected " + std::to_string(specs.size()) + " field outputs, got " +
                          std::to_string(outs.size()));
  for (std::size_t f = 0; f < specs.size(); ++f) {
    if (outs[f].is_none()) continue;
    const DType t = nstep && f == ReplayBuffer::kRewards ? b.nstep_dtype() : specs[f].dtype;
    s.outs[f] = checked_out_array(outs[f], t, specs[f].shape, batch, where + specs[f].name + " out");
  }
  if (nstep && !slot[3].is_none())
    s.discounts = checked_out_array(slot[3], b.nstep_dtype(), {}, batch, where + "discounts out");
  return s;
}

}  // namespace

void bind_prefetch(py::module_& m) {
  py::class_<Prefetcher>(m, "Prefetcher", "Background sampler into caller-owned slots (use buffer.prefetcher).")
      .def(py::init([](ReplayBuffer& b, PrioritizedReplayBuffer* p, std::int64_t batch_size, std::int64_t n_step,
                       std::optional<double> gamma, const std::vector<py::tuple>& slots) {
             if (batch_size < 1) throw py::value_error("batch_size must be >= 1, got " + std::to_string(batch_size));
             if (slots.empty()) throw py::value_error("slots: expected at least one slot");
             if (p && &p->base() != &b) throw py::value_error("the prioritized core must wrap this buffer");
             std::vector<Slot> checked;
             for (std::size_t k = 0; k < slots.size(); ++k)
               checked.push_back(checked_slot(b, p != nullptr, slots[k], batch_size, gamma.has_value(), k));
             const NStep ns = make_nstep(n_step, gamma.value_or(1.0));
             const bool nstep = gamma.has_value();
             ReplayBuffer* bp = &b;
             return new Prefetcher([bp, p, batch_size, ns, nstep, checked](int k, double beta) {
               const Slot& s = checked.at(static_cast<std::size_t>(k));
               NStep n = ns;
               n.discounts = s.discounts;
               if (p) p->sample(batch_size, beta, s.ids, s.weights, s.outs.data(), nstep ? &n : nullptr);
               else bp->sample(batch_size, true, s.ids, s.outs.data(), false, nstep ? &n : nullptr);
             });
           }),
           py::arg("buffer"), py::arg("prioritized").none(true), py::arg("batch_size"), py::arg("n_step"),
           py::arg("gamma").none(true), py::arg("slots"), py::keep_alive<1, 2>(), py::keep_alive<1, 3>(),
           py::keep_alive<1, 7>())
      .def("request", &Prefetcher::request, py::arg("slot"), py::arg("param"),
           "Start filling `slot` (param: beta when prioritized); a bad slot raises IndexError at wait().")
      .def("wait", &Prefetcher::wait, py::call_guard<py::gil_scoped_release>(),
           "Block until the fill in flight is done; raise what it raised.")
      .def_property_readonly("busy", &Prefetcher::busy)
      .def("close", &Prefetcher::close, py::call_guard<py::gil_scoped_release>(), "Finish the fill in flight, stop.");
}

}  // namespace fastrl::bind
