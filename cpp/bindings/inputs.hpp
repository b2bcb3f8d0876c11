// Bindings-only: Python values of one add / extend as contiguous, native-endian fastrl sources.
// Python bool / int / float and exact-dtype C-contiguous native numpy arrays are read in place;
// anything else numpy can read goes through numpy once. No algorithm logic.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "convert.hpp"
#include "fastrl/replay_buffer.hpp"

namespace fastrl::bind {

namespace py = pybind11;

// One converted input: a pointer to contiguous native-endian data plus what keeps it alive.
struct Input {
  py::object keep;               // the array the data lives in (if any)
  alignas(8) unsigned char scalar[8];  // storage for a Python scalar
  const void* data = nullptr;
  DType dtype = DType::Float32;
  int ndim = 0;
  const Py_intptr_t* shape = nullptr;
};

// A scalar value of C++ type T as the input.
template <class T>
void put_scalar(Input& in, T v) {
  static_assert(sizeof(T) <= sizeof(in.scalar), "scalar too wide");
  std::memcpy(in.scalar, &v, sizeof(T));
  dtype_of<T>(&in.dtype);
  in.data = in.scalar;
}

// NumPy scalars (np.float32(1.0), np.int64(3), np.True_ ...) read without going through arrays.
// Returns false for anything else.
inline bool scalar_kind(PyObject* o, Input& in) {
  static auto* kinds = [] {  // leaked on purpose: lives as long as the interpreter
    auto* t = new std::vector<std::pair<PyObject*, char>>;
    py::module_ np = py::module_::import("numpy");
    for (const char* n : {"bool_", "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
                          "uint32", "uint64"}) {
      py::object type = np.attr(n);
      const char kind = py::dtype::from_args(type).kind();
      t->emplace_back(type.release().ptr(), kind);
    }
    return t;
  }();
  PyObject* tp = reinterpret_cast<PyObject*>(Py_TYPE(o));
  auto it = std::find_if(kinds->begin(), kinds->end(), [&](const auto& k) { return k.first == tp; });
  if (it == kinds->end()) return false;
  if (it->second == 'b') {
    put_scalar(in, PyObject_IsTrue(o) == 1);
  } else if (it->second == 'f') {
    const double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred()) throw py::error_already_set();
    put_scalar(in, v);
  } else {
    py::object i = py::reinterpret_steal<py::object>(PyNumber_Index(o));
    if (!i) throw py::error_already_set();
    if (it->second == 'i') put_scalar(in, static_cast<std::int64_t>(PyLong_AsLongLong(i.ptr())));
    else put_scalar(in, static_cast<std::uint64_t>(PyLong_AsUnsignedLongLong(i.ptr())));
  }
  return true;
}

// Converts `obj` for field `name`. Python bool / int / float and exact-dtype C-contiguous
// native numpy arrays are taken without copying; anything else numpy can read (lists, other
// widths, byte-swapped or strided arrays, CPU torch tensors) goes through numpy once.
inline void to_input(py::handle obj, const std::string& name, Input& in) {
  PyObject* o = obj.ptr();
  in.ndim = 0;
  in.shape = nullptr;
  if (PyBool_Check(o)) return put_scalar(in, o == Py_True);
  if (PyFloat_CheckExact(o)) return put_scalar(in, PyFloat_AS_DOUBLE(o));
  if (PyLong_CheckExact(o)) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow == 0) return put_scalar(in, static_cast<std::int64_t>(v));
    if (overflow > 0) {
      const unsigned long long u = PyLong_AsUnsignedLongLong(o);
      if (!PyErr_Occurred()) return put_scalar(in, static_cast<std::uint64_t>(u));
      PyErr_Clear();
    }
    throw py::value_error(name + ": integer " + std::string(py::str(obj)) + " is out of range");
  }
  if (scalar_kind(o, in)) return;
  auto& api = py::detail::npy_api::get();
  if (api.PyArray_Check_(o)) {
    auto* a = py::detail::array_proxy(o);
    auto* d = py::detail::array_descriptor_proxy(a->descr);
    constexpr int c_contig = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_;
    constexpr int aligned = py::detail::npy_api::NPY_ARRAY_ALIGNED_;
    const bool native = d->byteorder == '=' || d->byteorder == '|' ||
                        (d->byteorder == (PY_LITTLE_ENDIAN ? '<' : '>'));
    if ((a->flags & c_contig) && (a->flags & aligned) && native && dtype_from_typenum(d->type_num, &in.dtype)) {
      in.keep = py::reinterpret_borrow<py::object>(obj);
      in.data = a->data;
      in.ndim = a->nd;
      in.shape = a->dimensions;
      return;
    }
  }
  // Slow path: let numpy read it, then widen within its kind to a native contiguous array.
  py::module_ np = py::module_::import("numpy");
  py::array arr;
  try {
    arr = np.attr("asarray")(obj);
  } catch (py::error_already_set& e) {
    throw py::type_error(name + ": expected an array-like of numbers, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))) + " (" + e.what() + ")");
  }
  // widest of its kind (float32 stays float32)
  const char kind = arr.dtype().kind();
  const std::size_t size = kind == 'b' ? 1 : kind == 'f' && arr.dtype().itemsize() == 4 ? 4 : 8;
  if (!dtype_from_kind(kind, size, &in.dtype))
    throw py::type_error(name + ": expected bool, integer or float values, got dtype " +
                         std::string(py::str(arr.dtype())));
  const char* wide = dtype_name(in.dtype);
  py::array c = np.attr("asarray")(arr, py::arg("dtype") = wide, py::arg("order") = "C");
  in.keep = c;
  auto* a = py::detail::array_proxy(c.ptr());
  in.data = a->data;
  in.ndim = a->nd;
  in.shape = a->dimensions;
}

// Converts and shape-checks every value of one add (rows == -1) or extend (rows read from data).
inline std::int64_t collect(const ReplayBuffer& b, const py::tuple& values, bool batched, std::vector<Input>& ins,
                            std::vector<Source>& src) {
  const std::size_t n = b.num_written_fields();
  if (values.size() != n)
    throw py::value_error("expected " + std::to_string(n) + " field values, got " + std::to_string(values.size()));
  const auto& specs = b.specs();
  ins.resize(n);
  src.resize(n);
  std::int64_t rows = batched ? -1 : 1;
  for (std::size_t f = 0; f < n; ++f) {
    const auto& s = specs[f];
    Input& in = ins[f];
    to_input(values[f], s.name, in);
    if (!kind_castable(in.dtype, s.dtype))
      throw py::type_error(s.name + ": cannot store " + dtype_name(in.dtype) + " values in a " +
                           dtype_name(s.dtype) + " field without losing information");
    const int lead = batched ? 1 : 0;
    bool ok = in.ndim == static_cast<int>(s.shape.size()) + lead;
    for (std::size_t d = 0; ok && d < s.shape.size(); ++d) ok = in.shape[d + lead] == s.shape[d];
    if (batched && ok) {
      if (rows < 0) rows = in.shape[0];
      else if (in.shape[0] != rows)
        throw py::value_error(s.name + ": expected " + std::to_string(rows) +
                              " rows like the fields before it, got " + std::to_string(in.shape[0]));
    }
    if (!ok)
      throw py::value_error(s.name + ": expected shape " +
                            (batched ? shape_str(s.shape, 0).replace(1, 1, "N") : shape_str(s.shape)) +
                            ", got " + shape_str(in.shape, in.ndim));
    src[f] = Source{in.data, in.dtype};
  }
  return rows;
}

}  // namespace fastrl::bind
