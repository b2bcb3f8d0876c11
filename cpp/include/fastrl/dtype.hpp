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
#include <tuple>
#include <type_traits>
#include <utility>

namespace fastrl {

enum class DType : int { Bool = 0, UInt8, Int32, Int64, Float32, Float64, UInt64 };

// The one dtype table: DType k is the k-th C++ type of DTypeTypes, named kDTypeNames[k] (numpy's
// name). Sizes, kinds, names, visit_dtype and the numpy mapping of the bindings derive from it.
// The first kNumFieldDTypes are field dtypes; UInt64 only appears in sources (Python integers
// beyond int64).
using DTypeTypes = std::tuple<bool, std::uint8_t, std::int32_t, std::int64_t, float, double, std::uint64_t>;
inline constexpr const char* kDTypeNames[] = {"bool", "uint8", "int32", "int64", "float32", "float64", "uint64"};
inline constexpr int kNumDTypes = static_cast<int>(std::tuple_size_v<DTypeTypes>);
inline constexpr int kNumFieldDTypes = 6;
static_assert(sizeof(kDTypeNames) / sizeof(kDTypeNames[0]) == kNumDTypes, "one name per dtype");

namespace detail {

template <class F, std::size_t... I>
decltype(auto) visit_dtype_impl(DType t, F&& f, std::index_sequence<I...>) {
  using R = decltype(f(std::tuple_element_t<0, DTypeTypes>{}));
  const auto k = static_cast<std::size_t>(t);
  if constexpr (std::is_void_v<R>) {
    if (!((k == I ? (f(std::tuple_element_t<I, DTypeTypes>{}), true) : false) || ...))
      throw std::logic_error("fastrl: unknown dtype");
  } else {
    R r{};
    if (!((k == I ? (r = f(std::tuple_element_t<I, DTypeTypes>{}), true) : false) || ...))
      throw std::logic_error("fastrl: unknown dtype");
    return r;
  }
}

// f(T{}) for the C++ type T of t; every call must return the same type.
template <class F>
decltype(auto) visit_dtype(DType t, F&& f) {
  return visit_dtype_impl(t, std::forward<F>(f), std::make_index_sequence<kNumDTypes>{});
}

}  // namespace detail

inline std::size_t dtype_size(DType t) {
  return detail::visit_dtype(t, [](auto z) { return sizeof(z); });
}

inline const char* dtype_name(DType t) {
  const int k = static_cast<int>(t);
  return k >= 0 && k < kNumDTypes ? kDTypeNames[k] : "?";
}

// numpy's kind character of a C++ type: 'b' bool, 'u' unsigned, 'i' signed, 'f' float.
template <class T>
constexpr char kind_of() {
  return std::is_same_v<T, bool> ? 'b' : std::is_floating_point_v<T> ? 'f' : std::is_signed_v<T> ? 'i' : 'u';
}

inline char dtype_kind(DType t) {
  return detail::visit_dtype(t, [](auto z) { return kind_of<decltype(z)>(); });
}

// The DType of a kind and item size, if fastrl has one.
inline bool dtype_from_kind(char kind, std::size_t size, DType* out) {
  for (int k = 0; k < kNumDTypes; ++k) {
    const auto t = static_cast<DType>(k);
    if (dtype_kind(t) == kind && dtype_size(t) == size) {
      *out = t;
      return true;
    }
  }
  return false;
}

namespace detail {
template <class C, std::size_t... I>
constexpr int dtype_index(std::index_sequence<I...>) {
  int r = -1;
  ((r < 0 && kind_of<std::tuple_element_t<I, DTypeTypes>>() == kind_of<C>() &&
            sizeof(std::tuple_element_t<I, DTypeTypes>) == sizeof(C)
        ? (r = static_cast<int>(I), 0)
        : 0),
   ...);
  return r;
}
}  // namespace detail

// The DType of any C++ arithmetic type C (e.g. long long, unsigned char), by kind and size;
// false when fastrl has none. A compile-time constant.
template <class C>
bool dtype_of(DType* out) {
  constexpr int k = detail::dtype_index<C>(std::make_index_sequence<kNumDTypes>{});
  if constexpr (k < 0) {
    (void)out;
    return false;
  } else {
    *out = static_cast<DType>(k);
    return true;
  }
}

inline bool is_float(DType t) { return dtype_kind(t) == 'f'; }

// Whether values of `src` may be written into a field of `dst` at all (before any range check).
inline bool kind_castable(DType src, DType dst) {
  if (is_float(dst)) return true;
  return !is_float(src);
}

namespace detail {

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
