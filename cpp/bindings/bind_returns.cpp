// pybind11 bindings of fastrl/returns.hpp: argument translation only.
//
// Every array must already have its exact dtype (float32 or float64 values, bool flags) and be
// C-contiguous: nothing is converted here (fastrl/returns.py does the conversions and allocates
// the outputs). The GIL is released while the kernels run.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>

#include "fastrl/returns.hpp"

namespace py = pybind11;

namespace fastrl::bind {

namespace {

template <class F>
using Arr = py::array_t<F, py::array::c_style>;
using Flags = py::array_t<bool, py::array::c_style>;

struct Dims {
  std::int64_t T = 0, N = 1;
};

// [T] or [T, N] from the rewards; every other array must have exactly that shape.
Dims dims_of(const py::array& rewards) {
  if (rewards.ndim() != 1 && rewards.ndim() != 2)
    throw py::value_error("rewards: expected shape [T] or [T, N], got " + std::to_string(rewards.ndim()) +
                          " dimensions");
  Dims d;
  d.T = rewards.shape(0);
  d.N = rewards.ndim() == 2 ? rewards.shape(1) : 1;
  if (d.N < 1) throw py::value_error("rewards: expected N >= 1 streams, got 0");
  return d;
}

void check_like(const char* name, const py::array& a, const py::array& rewards, bool writable = false) {
  bool ok = a.ndim() == rewards.ndim();
  for (py::ssize_t k = 0; ok && k < a.ndim(); ++k) ok = a.shape(k) == rewards.shape(k);
  if (!ok) throw py::value_error(std::string(name) + ": expected the shape of rewards");
  if (writable && !a.writeable()) throw py::value_error(std::string(name) + ": must be writable");
}

const std::uint8_t* flags(const Flags& f) { return reinterpret_cast<const std::uint8_t*>(f.data()); }

template <class F>
void bind_for(py::module_& m) {
  m.def(
      "discounted_returns",
      [](const Arr<F>& rewards, const Flags& terminated, const Flags& truncated, double gamma,
         const std::optional<Arr<F>>& bootstrap, Arr<F>& out) {
        const Dims d = dims_of(rewards);
        check_like("terminated", terminated, rewards);
        check_like("truncated", truncated, rewards);
        if (bootstrap) check_like("bootstrap", *bootstrap, rewards);
        check_like("out", out, rewards, true);
        const F* r = rewards.data();
        const F* b = bootstrap ? bootstrap->data() : nullptr;
        const std::uint8_t *te = flags(terminated), *tr = flags(truncated);
        F* o = out.mutable_data();
        py::gil_scoped_release nogil;
        discounted_returns<F>(r, te, tr, b, gamma, d.T, d.N, o);
      },
      py::arg("rewards").noconvert(), py::arg("terminated").noconvert(), py::arg("truncated").noconvert(),
      py::arg("gamma"), py::arg("bootstrap").noconvert().none(true), py::arg("out").noconvert(),
      "Discounted returns-to-go of time-major [T] / [T, N] rewards into out.");
  m.def(
      "gae",
      [](const Arr<F>& rewards, const Arr<F>& values, const Arr<F>& next_values, const Flags& terminated,
         const Flags& truncated, double gamma, double lam, Arr<F>& adv_out, Arr<F>& ret_out) {
        const Dims d = dims_of(rewards);
        check_like("values", values, rewards);
        check_like("next_values", next_values, rewards);
        check_like("terminated", terminated, rewards);
        check_like("truncated", truncated, rewards);
        check_like("advantages out", adv_out, rewards, true);
        check_like("returns out", ret_out, rewards, true);
        const F *r = rewards.data(), *v = values.data(), *nv = next_values.data();
        const std::uint8_t *te = flags(terminated), *tr = flags(truncated);
        F *a = adv_out.mutable_data(), *g = ret_out.mutable_data();
        py::gil_scoped_release nogil;
        gae<F>(r, v, nv, te, tr, gamma, lam, d.T, d.N, a, g);
      },
      py::arg("rewards").noconvert(), py::arg("values").noconvert(), py::arg("next_values").noconvert(),
      py::arg("terminated").noconvert(), py::arg("truncated").noconvert(), py::arg("gamma"), py::arg("lam"),
      py::arg("advantages_out").noconvert(), py::arg("returns_out").noconvert(),
      "Generalised advantage estimates and their returns into the two outputs.");
  m.def(
      "lambda_returns",
      [](const Arr<F>& rewards, const Arr<F>& next_values, const Flags& terminated, const Flags& truncated,
         double gamma, double lam, Arr<F>& out) {
        const Dims d = dims_of(rewards);
        check_like("next_values", next_values, rewards);
        check_like("terminated", terminated, rewards);
        check_like("truncated", truncated, rewards);
        check_like("out", out, rewards, true);
        const F *r = rewards.data(), *nv = next_values.data();
        const std::uint8_t *te = flags(terminated), *tr = flags(truncated);
        F* o = out.mutable_data();
        py::gil_scoped_release nogil;
        lambda_returns<F>(r, nv, te, tr, gamma, lam, d.T, d.N, o);
      },
      py::arg("rewards").noconvert(), py::arg("next_values").noconvert(), py::arg("terminated").noconvert(),
      py::arg("truncated").noconvert(), py::arg("gamma"), py::arg("lam"), py::arg("out").noconvert(),
      "TD(lambda) returns of time-major rewards into out.");
}

}  // namespace

void bind_returns(py::module_& m) {
  bind_for<float>(m);
  bind_for<double>(m);
}

}  // namespace fastrl::bind
