// pybind11 bindings of fastrl::Prefetcher: a background sampler into caller-owned slots.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "convert.hpp"
#include "outputs.hpp"
#include "fastrl/prefetcher.hpp"
#include "fastrl/prioritized_buffer.hpp"

namespace py = pybind11;

namespace fastrl::bind {

void bind_prefetch(py::module_& m) {
  py::class_<Prefetcher>(m, "Prefetcher", "Background sampler into caller-owned slots (use buffer.prefetcher).")
      .def(py::init([](ReplayBuffer& b, PrioritizedReplayBuffer* p, std::int64_t batch_size, std::int64_t n_step,
                       std::optional<double> gamma, const std::vector<py::tuple>& slots) {
             if (batch_size < 1) throw py::value_error("batch_size must be >= 1, got " + std::to_string(batch_size));
             if (slots.empty()) throw py::value_error("slots: expected at least one slot");
             if (p && &p->base() != &b) throw py::value_error("the prioritized core must wrap this buffer");
             std::vector<BatchOut> checked;
             for (std::size_t k = 0; k < slots.size(); ++k) {
               const std::string where = "slot " + std::to_string(k) + ": ";
               if (slots[k].size() != 4)
                 throw py::value_error(where + "expected (indices, weights, fields, discounts)");
               checked.emplace_back(n_step, gamma);
               caller_outputs(b, batch_size, slots[k][0], p != nullptr, slots[k][1], slots[k][2].cast<py::tuple>(),
                              slots[k][3], where, checked.back());
             }
             ReplayBuffer* bp = &b;
             return new Prefetcher([bp, p, batch_size, checked](int k, double beta) {
               const BatchOut& s = checked.at(static_cast<std::size_t>(k));
               if (p) p->sample(batch_size, beta, s.ids, s.weights, s.fields.data(), s.nstep_options());
               else bp->sample(batch_size, true, s.ids, s.fields.data(), false, s.nstep_options());
             });
           }),
           py::arg("buffer"), py::arg("prioritized").none(true), py::arg("batch_size"), py::arg("n_step"),
           py::arg("gamma").none(true), py::arg("slots"), py::keep_alive<1, 2>(), py::keep_alive<1, 3>(),
           py::keep_alive<1, 7>())
      .def("request", &Prefetcher::request, py::arg("slot"), py::arg("param"),
           "Start filling `slot` (param: beta when prioritized); a bad slot raises IndexError at wait().")
      .def("wait", &Prefetcher::wait, py::call_guard<py::gil_scoped_release>(),
           "Block until the fill in flight is done; raise what it raised.")
      .def("close", &Prefetcher::close, py::call_guard<py::gil_scoped_release>(), "Finish the fill in flight, stop.");
}

}  // namespace fastrl::bind
