// Bindings-only helpers: turn Python objects into contiguous, native-endian fastrl sources,
// and fastrl storage into numpy arrays that keep their memory alive. No algorithm logic.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <string>
#include <vector>

#include "fastrl/dtype.hpp"

namespace fastrl::bind {

namespace py = pybind11;

// dtype of a numpy type number when it is one of fastrl's, native byte order assumed.
inline bool dtype_from_typenum(int num, DType* out) {
  // NumPy type numbers: BOOL 0, UBYTE 2, INT 5, UINT 6, LONG 7, ULONG 8, LONGLONG 9, ULONGLONG 10,
  // FLOAT 11, DOUBLE 12.
  switch (num) {
    case 0: *out = DType::Bool; return true;
    case 2: *out = DType::UInt8; return true;
    case 5: if (sizeof(int) == 4) { *out = DType::Int32; return true; } return false;
    case 7: if (sizeof(long) == 8) { *out = DType::Int64; return true; }
            if (sizeof(long) == 4) { *out = DType::Int32; return true; } return false;
    case 9: *out = DType::Int64; return true;
    case 8: if (sizeof(unsigned long) == 8) { *out = DType::UInt64; return true; } return false;
    case 10: *out = DType::UInt64; return true;
    case 11: *out = DType::Float32; return true;
    case 12: *out = DType::Float64; return true;
    default: return false;
  }
}

inline py::dtype to_numpy_dtype(DType t) {
  switch (t) {
    case DType::Bool: return py::dtype::of<bool>();
    case DType::UInt8: return py::dtype::of<std::uint8_t>();
    case DType::Int32: return py::dtype::of<std::int32_t>();
    case DType::Int64: return py::dtype::of<std::int64_t>();
    case DType::Float32: return py::dtype::of<float>();
    case DType::Float64: return py::dtype::of<double>();
    case DType::UInt64: return py::dtype::of<std::uint64_t>();
  }
  throw std::logic_error("unknown dtype");
}

inline DType dtype_from_name(const std::string& name) {
  for (DType t : {DType::Bool, DType::UInt8, DType::Int32, DType::Int64, DType::Float32, DType::Float64})
    if (name == dtype_name(t)) return t;
  throw py::type_error("unsupported field dtype '" + name +
                       "' (expected one of bool, uint8, int32, int64, float32, float64)");
}

// One converted input: a pointer to contiguous native-endian data plus what keeps it alive.
struct Input {
  py::object keep;               // the array the data lives in (if any)
  alignas(8) unsigned char scalar[8];  // storage for a Python scalar
  const void* data = nullptr;
  DType dtype = DType::Float32;
  int ndim = 0;
  const Py_intptr_t* shape = nullptr;
};

// NumPy scalars (np.float32(1.0), np.int64(3), np.True_ ...) read without going through arrays.
// Returns false for anything else.
inline bool scalar_kind(PyObject* o, Input& in) {
  struct Types {
    std::vector<PyObject*> floats, ints, uints;
    PyObject* bool_ = nullptr;
  };
  static Types* types = [] {
    auto* t = new Types;  // leaked on purpose: lives as long as the interpreter
    py::module_ np = py::module_::import("numpy");
    for (const char* n : {"float16", "float32", "float64"}) t->floats.push_back(py::object(np.attr(n)).release().ptr());
    for (const char* n : {"int8", "int16", "int32", "int64"}) t->ints.push_back(py::object(np.attr(n)).release().ptr());
    for (const char* n : {"uint8", "uint16", "uint32", "uint64"}) t->uints.push_back(py::object(np.attr(n)).release().ptr());
    t->bool_ = py::object(np.attr("bool_")).release().ptr();
    return t;
  }();
  PyObject* tp = reinterpret_cast<PyObject*>(Py_TYPE(o));
  if (tp == types->bool_) {
    bool v = PyObject_IsTrue(o) == 1;
    std::memcpy(in.scalar, &v, 1);
    in.dtype = DType::Bool;
  } else if (std::find(types->floats.begin(), types->floats.end(), tp) != types->floats.end()) {
    double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred()) throw py::error_already_set();
    std::memcpy(in.scalar, &v, 8);
    in.dtype = DType::Float64;
  } else if (std::find(types->ints.begin(), types->ints.end(), tp) != types->ints.end()) {
    py::object i = py::reinterpret_steal<py::object>(PyNumber_Index(o));
    if (!i) throw py::error_already_set();
    std::int64_t v = PyLong_AsLongLong(i.ptr());
    std::memcpy(in.scalar, &v, 8);
    in.dtype = DType::Int64;
  } else if (std::find(types->uints.begin(), types->uints.end(), tp) != types->uints.end()) {
    py::object i = py::reinterpret_steal<py::object>(PyNumber_Index(o));
    if (!i) throw py::error_already_set();
    std::uint64_t v = PyLong_AsUnsignedLongLong(i.ptr());
    std::memcpy(in.scalar, &v, 8);
    in.dtype = DType::UInt64;
  } else {
    return false;
  }
  in.data = in.scalar;
  return true;
}

// Converts `obj` for field `name`. Python bool / int / float and exact-dtype C-contiguous
// native numpy arrays are taken without copying; anything else numpy can read (lists, other
// widths, byte-swapped or strided arrays, CPU torch tensors) goes through numpy once.
inline void to_input(py::handle obj, const std::string& name, Input& in) {
  PyObject* o = obj.ptr();
  in.ndim = 0;
  in.shape = nullptr;
  if (PyBool_Check(o)) {
    bool v = (o == Py_True);
    std::memcpy(in.scalar, &v, 1);
    in.data = in.scalar;
    in.dtype = DType::Bool;
    return;
  }
  if (PyFloat_CheckExact(o)) {
    double v = PyFloat_AS_DOUBLE(o);
    std::memcpy(in.scalar, &v, 8);
    in.data = in.scalar;
    in.dtype = DType::Float64;
    return;
  }
  if (PyLong_CheckExact(o)) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow == 0) {
      std::int64_t w = v;
      std::memcpy(in.scalar, &w, 8);
      in.data = in.scalar;
      in.dtype = DType::Int64;
      return;
    }
    if (overflow > 0) {
      unsigned long long u = PyLong_AsUnsignedLongLong(o);
      if (!PyErr_Occurred()) {
        std::uint64_t w = u;
        std::memcpy(in.scalar, &w, 8);
        in.data = in.scalar;
        in.dtype = DType::UInt64;
        return;
      }
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
  const char kind = arr.dtype().kind();
  const char* wide = nullptr;
  switch (kind) {
    case 'b': wide = "bool"; in.dtype = DType::Bool; break;
    case 'i': wide = "int64"; in.dtype = DType::Int64; break;
    case 'u': wide = "uint64"; in.dtype = DType::UInt64; break;
    case 'f': wide = "float64"; in.dtype = DType::Float64; break;
    default:
      throw py::type_error(name + ": expected bool, integer or float values, got dtype " +
                           std::string(py::str(arr.dtype())));
  }
  if (kind == 'f' && arr.dtype().itemsize() == 4) { wide = "float32"; in.dtype = DType::Float32; }
  py::array c = np.attr("asarray")(arr, py::arg("dtype") = wide, py::arg("order") = "C");
  in.keep = c;
  auto* a = py::detail::array_proxy(c.ptr());
  in.data = a->data;
  in.ndim = a->nd;
  in.shape = a->dimensions;
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

// Output memory for sampled batches. Fresh large allocations cost page faults on every call
// (glibc hands blocks over 128 KiB out as new mmaps), so blocks are recycled: a batch's arrays
// share one block, owned by a capsule that gives the block back when the last array dies.
// Thread-safe; at most kMaxCached bytes are kept.
class BlockPool {
 public:
  static BlockPool& get() {
    static BlockPool* pool = new BlockPool;  // leaked on purpose: capsules may outlive the module
    return *pool;
  }

  // A capsule owning a block of at least n bytes (64-byte aligned); its pointer is the block.
  py::capsule take(std::size_t n) {
    n = std::max<std::size_t>(64, (n + 63) / 64 * 64);
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> g(mu_);
      auto& v = free_[n];
      if (!v.empty()) {
        p = v.back();
        v.pop_back();
        cached_ -= n;
      }
    }
    if (!p) p = std::aligned_alloc(64, n);
    if (!p) throw std::bad_alloc();
    auto* block = new Block{p, n};
    try {
      return py::capsule(block, [](void* b) {
        auto* blk = static_cast<Block*>(b);
        BlockPool::get().give(blk->ptr, blk->size);
        delete blk;
      });
    } catch (...) {
      std::free(p);
      delete block;
      throw;
    }
  }

  static void* data(const py::capsule& c) { return static_cast<Block*>(c.get_pointer())->ptr; }

 private:
  struct Block {
    void* ptr;
    std::size_t size;
  };
  static constexpr std::size_t kMaxCached = std::size_t(512) << 20;
  static constexpr std::size_t kMaxPerSize = 8;

  void give(void* p, std::size_t n) {
    {
      std::lock_guard<std::mutex> g(mu_);
      auto& v = free_[n];
      if (cached_ + n <= kMaxCached && v.size() < kMaxPerSize) {
        v.push_back(p);
        cached_ += n;
        return;
      }
    }
    std::free(p);
  }

  std::mutex mu_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  std::size_t cached_ = 0;
};

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
