// pybind11 bindings of fastrl::MappedFile (memory-mapped field storage): translation only.
#include <pybind11/pybind11.h>

#include <memory>
#include <string>

#include "fastrl/mapped_file.hpp"

namespace py = pybind11;

namespace fastrl::bind {

void bind_storage(py::module_& m) {
  py::class_<MappedFile, std::shared_ptr<MappedFile>>(m, "MappedFile",
                                                      "A file region mapped into memory (field storage).")
      .def(py::init<const std::string&, std::uint64_t, std::uint64_t, bool>(), py::arg("path"), py::arg("offset"),
           py::arg("length"), py::arg("create"))
      .def_property_readonly("length", &MappedFile::length)
      .def("flush", &MappedFile::flush, py::call_guard<py::gil_scoped_release>(),
           "Write the dirty pages to the file and wait for it.");
}

}  // namespace fastrl::bind
