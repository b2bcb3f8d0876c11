// The fastrl._core extension module: each concept binds itself in its own bind_<concept>.cpp.
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace fastrl::bind {
void bind_buffer(py::module_& m);
void bind_prioritized(py::module_& m);
void bind_prefetch(py::module_& m);
void bind_returns(py::module_& m);
void bind_storage(py::module_& m);
}  // namespace fastrl::bind

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastrl's compiled core (private: use the fastrl package).";
  fastrl::bind::bind_storage(m);
  fastrl::bind::bind_buffer(m);
  fastrl::bind::bind_prioritized(m);
  fastrl::bind::bind_prefetch(m);
  fastrl::bind::bind_returns(m);
}
