// Bindings-only helpers: fastrl dtypes as numpy's, checked caller-owned output arrays, and
// fastrl storage as numpy arrays that keep their memory alive. No algorithm logic.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "fastrl/dtype.hpp"
#include "fastrl/field_spec.hpp"

namespace fastrl::bind {

namespace py = pybind11;

// dtype of a numpy type number when it is one of fastrl's, native byte order assumed. NumPy's
// type numbers name C types; the DType follows from the type's kind and size (dtype.hpp).
inline bool dtype_from_typenum(int num, DType* out) {
  using npy = py::detail::npy_api;
  switch (num) {
    case npy::NPY_BOOL_: return dtype_of<bool>(out);
    case npy::NPY_UBYTE_: return dtype_of<unsigned char>(out);
    case npy::NPY_INT_: return dtype_of<int>(out);
    case npy::NPY_LONG_: return dtype_of<long>(out);
    case npy::NPY_ULONG_: return dtype_of<unsigned long>(out);
    case npy::NPY_LONGLONG_: return dtype_of<long long>(out);
    case npy::NPY_ULONGLONG_: return dtype_of<unsigned long long>(out);
    case npy::NPY_FLOAT_: return dtype_of<float>(out);
    case npy::NPY_DOUBLE_: return dtype_of<double>(out);
    default: return false;
  }
}

inline py::dtype to_numpy_dtype(DType t) {
  return detail::visit_dtype(t, [](auto z) { return py::dtype::of<decltype(z)>(); });
}

// A field dtype by its numpy name (TypeError for any other).
inline DType dtype_from_name(const std::string& name) {
  std::string names;
  for (int k = 0; k < kNumFieldDTypes; ++k) {
    if (name == kDTypeNames[k]) return static_cast<DType>(k);
    names += (k ? ", " : "") + std::string(kDTypeNames[k]);
  }
  throw py::type_error("unsupported field dtype '" + name + "' (expected one of " + names + ")");
}

inline std::string shape_str(const Py_intptr_t* shape, int ndim, std::int64_t lead = -1) {
  std::string s = "(";
  int n = 0;
  if (lead >= 0) { s += std::to_string(lead); ++n; }
  for (int i = 0; i < ndim; ++i) { if (n++) s += ", "; s += std::to_string(shape[i]); }
  if (n == 1) s += ",";
  return s + ")";
}

inline std::string shape_str(const std::vector<std::int64_t>& shape, std::int64_t lead = -1) {
  std::vector<Py_intptr_t> v(shape.begin(), shape.end());
  return shape_str(v.data(), static_cast<int>(v.size()), lead);
}

// Checks a caller-owned output array: exactly `dtype`, shape (lead, *shape), C-contiguous, aligned,
// writable, native byte order. Returns its data pointer. `what` names the argument in errors.
// With row_stride > 0 the rows may instead be row_stride bytes apart (each row C-contiguous): a
// view of every row's first part of a wider array (frame windows, see outputs.hpp).
inline void* checked_out_array(py::handle h, DType dtype, const std::vector<std::int64_t>& shape, std::int64_t lead,
                               const std::string& what, std::int64_t row_stride = 0) {
  if (!py::detail::npy_api::get().PyArray_Check_(h.ptr()))
    throw py::type_error(what + ": expected a numpy array or CPU tensor");
  auto* a = py::detail::array_proxy(h.ptr());
  auto* d = py::detail::array_descriptor_proxy(a->descr);
  DType t;
  const bool native = d->byteorder == '=' || d->byteorder == '|' || d->byteorder == (PY_LITTLE_ENDIAN ? '<' : '>');
  if (!native || !dtype_from_typenum(d->type_num, &t) || t != dtype)
    throw py::type_error(what + ": expected dtype " + dtype_name(dtype) + " exactly (no conversion)");
  bool ok = a->nd == static_cast<int>(shape.size()) + 1 && a->dimensions[0] == lead;
  for (std::size_t k = 0; ok && k < shape.size(); ++k) ok = a->dimensions[k + 1] == shape[k];
  if (!ok)
    throw py::value_error(what + ": expected shape " + shape_str(shape, lead) + ", got " +
                          shape_str(a->dimensions, a->nd));
  constexpr int need = py::detail::npy_api::NPY_ARRAY_ALIGNED_ | py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  bool layout = (a->flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_) != 0;
  if (row_stride > 0) {  // C strides within a row, rows row_stride apart
    std::int64_t step = static_cast<std::int64_t>(dtype_size(dtype));
    layout = lead < 2 || a->strides[0] == row_stride;
    for (int k = a->nd - 1; layout && k >= 1; --k) {
      layout = a->dimensions[k] < 2 || a->strides[k] == step;
      step *= a->dimensions[k];
    }
  }
  if ((a->flags & need) != need || !layout)
    throw py::value_error(what + (row_stride > 0 ? ": must be a frame-window view (rows " + std::to_string(row_stride) +
                                                       " bytes apart), aligned and writable"
                                                 : ": must be C-contiguous, aligned and writable"));
  return a->data;
}

// Shape (n, *s.shape) of n rows of field s (as stored or as sampled).
inline std::vector<py::ssize_t> rows_of(std::int64_t n, const FieldSpec& s) {
  std::vector<py::ssize_t> shape{n};
  shape.insert(shape.end(), s.shape.begin(), s.shape.end());
  return shape;
}

// A field index below num_fields (IndexError otherwise).
inline std::size_t checked_field(std::size_t num_fields, std::size_t field) {
  if (field >= num_fields) throw py::index_error("field index out of range");
  return field;
}

// A read-only (or writable) numpy view over shared storage; the view keeps the storage alive.
inline py::array storage_view(std::shared_ptr<std::uint8_t> mem, DType dtype, std::vector<py::ssize_t> shape,
                              bool writable) {
  auto* holder = new std::shared_ptr<std::uint8_t>(mem);
  py::capsule base(holder, [](void* p) { delete static_cast<std::shared_ptr<std::uint8_t>*>(p); });
  py::array a(to_numpy_dtype(dtype), shape, static_cast<void*>(mem.get()), base);
  if (!writable) py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

}  // namespace fastrl::bind
