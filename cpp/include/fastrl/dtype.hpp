// Element types of replay-buffer fields and the checked conversions between them.
//
// Casting policy (the same for every field): values keep their kind and their value.
//   float fields  <- bool, signed or unsigned integers, floats (rounded to the field's precision)
//   int fields    <- bool, signed or unsigned integers whose values fit the field (range-checked)
//   bool fields   <- bool, or integers equal to 0 or 1
// Floats are never written into integer or bool fields. Every check runs before anything is written.
// Cost: O(n). Thread-safe (pure functions).
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace fastrl {

enum class DType : int { Bool = 0, UInt8, Int32, Int64, Float32, Float64, UInt64 };

inline std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::Bool: case DType::UInt8: return 1;
    case DType::Int32: case DType::Float32: return 4;
    case DType::Int64: case DType::Float64: case DType::UInt64: return 8;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::Bool: return "bool";
    case DType::UInt8: return "uint8";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::UInt64: return "uint64";
  }
  return "?";
}

inline bool is_float(DType t) { return t == DType::Float32 || t == DType::Float64; }

// Whether values of `src` may be written into a field of `dst` at all (before any range check).
inline bool kind_castable(DType src, DType dst) {
  if (is_float(dst)) return true;
  return !is_float(src);
}

namespace detail {

template <class F>
decltype(auto) visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::Bool: return f(bool{});
    case DType::UInt8: return f(std::uint8_t{});
    case DType::Int32: return f(std::int32_t{});
    case DType::Int64: return f(std::int64_t{});
    case DType::Float32: return f(float{});
    case DType::Float64: return f(double{});
    case DType::UInt64: return f(std::uint64_t{});
  }
  throw std::logic_error("fastrl: unknown dtype");
}

// Does integer value v (of type S) fit into D? (D integral or bool)
template <class D, class S>
bool fits(S v) {
  if constexpr (std::is_same_v<D, bool>) {
    return v == S(0) || v == S(1);
  } else if constexpr (std::is_same_v<S, bool>) {
    return true;
  } else if constexpr (std::is_signed_v<S> == std::is_signed_v<D>) {
    if constexpr (sizeof(S) <= sizeof(D)) {
      return true;
    } else {
      return v >= static_cast<S>(std::numeric_limits<D>::min()) &&
             v <= static_cast<S>(std::numeric_limits<D>::max());
    }
  } else if constexpr (std::is_signed_v<S>) {  // signed -> unsigned
    return v >= 0 && static_cast<std::uint64_t>(v) <= std::numeric_limits<D>::max();
  } else {  // unsigned -> signed
    return static_cast<std::uint64_t>(v) <= static_cast<std::uint64_t>(std::numeric_limits<D>::max());
  }
}

}  // namespace detail

// Index of the first element of src that cannot be written into dst, or -1 when all can.
// Kinds must already be castable (kind_castable).
inline std::int64_t first_unrepresentable(const void* src, DType src_t, DType dst_t, std::int64_t n) {
  if (src_t == dst_t || is_float(dst_t)) return -1;
  return detail::visit_dtype(src_t, [&](auto s) -> std::int64_t {
    using S = decltype(s);
    if constexpr (std::is_floating_point_v<S>) {
      return n > 0 ? 0 : -1;
    } else {
      return detail::visit_dtype(dst_t, [&](auto d) -> std::int64_t {
        using D = decltype(d);
        if constexpr (std::is_floating_point_v<D>) {
          return -1;
        } else {
          const S* p = static_cast<const S*>(src);
          for (std::int64_t i = 0; i < n; ++i)
            if (!detail::fits<D>(p[i])) return i;
          return -1;
        }
      });
    }
  });
}

// Converts n elements; the caller has checked kind_castable and first_unrepresentable.
inline void cast_copy(void* dst, DType dst_t, const void* src, DType src_t, std::int64_t n) {
  if (src_t == dst_t) {
    std::memcpy(dst, src, static_cast<std::size_t>(n) * dtype_size(dst_t));
    return;
  }
  detail::visit_dtype(dst_t, [&](auto d) {
    using D = decltype(d);
    detail::visit_dtype(src_t, [&](auto s) {
      using S = decltype(s);
      D* q = static_cast<D*>(dst);
      const S* p = static_cast<const S*>(src);
      if constexpr (std::is_same_v<D, bool>) {
        for (std::int64_t i = 0; i < n; ++i) q[i] = p[i] != S(0);
      } else {
        for (std::int64_t i = 0; i < n; ++i) q[i] = static_cast<D>(p[i]);
      }
    });
  });
}

// Contiguous source rows for one field: `rows * numel` elements of `dtype`.
struct Source {
  const void* data = nullptr;
  DType dtype = DType::Float32;
};

}  // namespace fastrl
