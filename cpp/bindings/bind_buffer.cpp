// pybind11 bindings of fastrl::ReplayBuffer: argument translation only.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "convert.hpp"
#include "storage_options.hpp"
#include "outputs.hpp"
#include "fastrl/replay_buffer.hpp"

namespace py = pybind11;
using fastrl::DType;
using fastrl::ReplayBuffer;

namespace fastrl::bind {

namespace {


void check_count(const ReplayBuffer& b, const py::tuple& values, std::size_t n = 0) {
  if (n == 0) n = b.num_fields();
  if (values.size() != n)
    throw py::value_error("expected " + std::to_string(n) + " field values, got " + std::to_string(values.size()));
}

// Converts and shape-checks every value of one add (rows == -1) or extend (rows read from data).
std::int64_t collect(const ReplayBuffer& b, const py::tuple& values, bool batched, std::vector<Input>& ins,
                     std::vector<Source>& src) {
  check_count(b, values, b.num_written_fields());
  const auto& specs = b.specs();
  ins.resize(b.num_written_fields());
  src.resize(b.num_written_fields());
  std::int64_t rows = batched ? -1 : 1;
  for (std::size_t f = 0; f < b.num_written_fields(); ++f) {
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

void* check_out(const ReplayBuffer& b, std::size_t f, py::handle h, std::int64_t batch, bool nstep = false) {
  FieldSpec s = b.sample_specs()[f];
  if (nstep && f == ReplayBuffer::kRewards) s.dtype = b.nstep_dtype();
  return checked_out_array(h, s.dtype, s.shape, batch, s.name + " out");
}

// The int64 ids output of sample_into: writable, contiguous, shape (batch,).
std::int64_t* ids_out_ptr(py::handle ids_out, std::int64_t batch_size) {
  auto& api = py::detail::npy_api::get();
  if (!api.PyArray_Check_(ids_out.ptr())) throw py::type_error("indices out: expected an int64 array");
  auto* a = py::detail::array_proxy(ids_out.ptr());
  auto* d = py::detail::array_descriptor_proxy(a->descr);
  DType t;
  constexpr int need = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | py::detail::npy_api::NPY_ARRAY_ALIGNED_ |
                       py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  if (!dtype_from_typenum(d->type_num, &t) || t != DType::Int64 || a->nd != 1 || a->dimensions[0] != batch_size ||
      (a->flags & need) != need || d->byteorder == '>')
    throw py::value_error("indices out: expected a writable contiguous int64 array of shape (" +
                          std::to_string(batch_size) + ",)");
  return reinterpret_cast<std::int64_t*>(a->data);
}


}  // namespace

void bind_buffer(py::module_& m) {
  py::class_<ReplayBuffer>(m, "ReplayBuffer", "Circular replay buffer core (use fastrl.ReplayBuffer).")
      .def(py::init([](const std::vector<std::tuple<std::string, std::vector<std::int64_t>, std::string>>& fields,
                       std::int64_t capacity, std::int64_t num_envs, std::uint64_t seed, double episode_returns_gamma,
                       bool store_next_observations, std::int64_t frame_stack, bool zero_padding,
                       std::shared_ptr<MappedFile> mapped, const std::vector<std::uint64_t>& field_offsets) {
             if (fields.size() + 2 > kMaxFields) throw py::value_error("at most 62 fields are supported");
             std::vector<FieldSpec> specs;
             for (const auto& [name, shape, dtype] : fields) specs.push_back({name, shape, dtype_from_name(dtype)});
             return new ReplayBuffer(std::move(specs), capacity, num_envs, seed, episode_returns_gamma,
                                     make_storage_options(store_next_observations, frame_stack, zero_padding,
                                                          std::move(mapped), field_offsets));
           }),
           py::arg("fields"), py::arg("capacity"), py::arg("num_envs"), py::arg("seed"),
           py::arg("episode_returns_gamma") = -1.0, py::arg("store_next_observations") = true,
           py::arg("frame_stack") = 1, py::arg("zero_padding") = false, py::arg("mapped") = py::none(),
           py::arg("field_offsets") = std::vector<std::uint64_t>{})
      .def_property_readonly("capacity", &ReplayBuffer::capacity)
      .def_property_readonly("num_envs", &ReplayBuffer::num_envs)
      .def_property_readonly("size", &ReplayBuffer::size)
      .def_property_readonly("total", &ReplayBuffer::total)
      .def(
          "add",
          [](ReplayBuffer& b, const py::tuple& values) {
            // Reused per thread to keep add() allocation-free; the guard drops the Python
            // references on every exit path (a thread_local must not own them at thread exit).
            thread_local std::vector<Input> ins;
            thread_local std::vector<Source> src;
            struct Release {
              std::vector<Input>& v;
              ~Release() { for (auto& in : v) in.keep = py::object(); }
            } release{ins};
            if (b.num_envs() != 1)
              throw py::value_error("add() stores one step of one env; with num_envs=" +
                                    std::to_string(b.num_envs()) + " use extend() with [num_envs, ...] arrays");
            collect(b, values, false, ins, src);
            b.write(src.data(), 1);
          },
          py::arg("values"), "Append one row: one value per field, in field order.")
      .def(
          "extend",
          [](ReplayBuffer& b, const py::tuple& values) {
            std::vector<Input> ins;
            std::vector<Source> src;
            const std::int64_t rows = collect(b, values, true, ins, src);
            py::gil_scoped_release nogil;
            b.write(src.data(), rows);
          },
          py::arg("values"), "Append N rows: one [N, ...] array per field, in field order.")
      .def(
          "sample",
          [](ReplayBuffer& b, std::int64_t batch_size, bool replace) {
            if (batch_size < 0) throw py::value_error("batch_size must be >= 0, got " + std::to_string(batch_size));
            const auto& specs = b.sample_specs();
            // one pooled block for the ids and every field, 64-byte aligned pieces
            std::array<std::size_t, kMaxFields + 1> offset{};
            std::size_t total = static_cast<std::size_t>(batch_size) * 8;
            for (std::size_t f = 0; f < specs.size(); ++f) {
              total = (total + 63) / 64 * 64;
              offset[f] = total;
              total += static_cast<std::size_t>(batch_size) * specs[f].row_bytes();
            }
            py::capsule block = BlockPool::get().take(total);
            auto* base = static_cast<std::uint8_t*>(BlockPool::data(block));
            py::tuple result(specs.size() + 1);
            std::array<void*, kMaxFields> outs{};
            std::vector<py::ssize_t> shape;
            for (std::size_t f = 0; f < specs.size(); ++f) {
              shape.assign(1, batch_size);
              shape.insert(shape.end(), specs[f].shape.begin(), specs[f].shape.end());
              outs[f] = base + offset[f];
              result[f + 1] = py::array(to_numpy_dtype(specs[f].dtype), shape, outs[f], block);
            }
            auto* ip = reinterpret_cast<std::int64_t*>(base);
            result[0] = py::array(py::dtype::of<std::int64_t>(), {batch_size}, ip, block);
            {
              py::gil_scoped_release nogil;
              b.sample(batch_size, replace, ip, outs.data());
            }
            return result;
          },
          py::arg("batch_size"), py::arg("replace"),
          "Sample a batch: (ids, field arrays...) in freshly allocated arrays.")
      .def(
          "sample_into",
          [](ReplayBuffer& b, std::int64_t batch_size, bool replace, py::handle ids_out, const py::tuple& outs) {
            if (batch_size < 0) throw py::value_error("batch_size must be >= 0, got " + std::to_string(batch_size));
            check_count(b, outs);
            std::int64_t* ip = ids_out_ptr(ids_out, batch_size);
            std::array<void*, kMaxFields> ptrs{};
            for (std::size_t f = 0; f < b.num_fields(); ++f) {
              if (outs[f].is_none()) continue;
              ptrs[f] = check_out(b, f, outs[f], batch_size);
            }
            py::gil_scoped_release nogil;
            b.sample(batch_size, replace, ip, ptrs.data());
          },
          py::arg("batch_size"), py::arg("replace"), py::arg("indices_out"), py::arg("outs"),
          "Sample into caller-owned arrays of the exact dtype and shape (None skips a field).")
      .def(
          "gather",
          [](const ReplayBuffer& b, std::size_t field, py::array_t<std::int64_t, py::array::c_style | py::array::forcecast> ids) {
            if (field >= b.num_fields()) throw py::index_error("field index out of range");
            const auto& s = b.sample_specs()[field];
            std::vector<py::ssize_t> shape{ids.size()};
            shape.insert(shape.end(), s.shape.begin(), s.shape.end());
            py::array out(to_numpy_dtype(s.dtype), shape);
            void* op = out.mutable_data();
            const std::int64_t* ip = ids.data();
            const std::int64_t n = ids.size();
            {
              py::gil_scoped_release nogil;
              b.gather(field, ip, n, op);
            }
            return out;
          },
          py::arg("field"), py::arg("ids"), "Rows of one field at the given ids (which must be stored).")
      .def(
          "field_view",
          [](const ReplayBuffer& b, std::size_t field, bool writable) {
            if (field >= b.num_fields()) throw py::index_error("field index out of range");
            if (!b.is_stored(field))
              throw py::value_error(b.specs()[field].name + " has no storage (read from the next rows)");
            const auto& s = b.specs()[field];
            std::vector<py::ssize_t> shape{b.capacity()};
            shape.insert(shape.end(), s.shape.begin(), s.shape.end());
            return storage_view(b.storage(field), s.dtype, shape, writable);
          },
          py::arg("field"), py::arg("writable") = false,
          "The whole storage of one field, indexed by slot (id % capacity); keeps the memory alive.")
      .def("rng_state",
           [](const ReplayBuffer& b) {
             auto s = b.rng_state();
             return py::make_tuple(s[0], s[1], s[2], s[3]);
           })
      .def(
          "set_state",
          [](ReplayBuffer& b, std::int64_t total, const std::array<std::uint64_t, 4>& rng) { b.set_state(total, rng); },
          py::arg("total"), py::arg("rng"))
      .def("seed", &ReplayBuffer::seed, py::arg("seed"))
      .def("clear", &ReplayBuffer::clear)
      // ---- n-step sampling and episode returns
      .def_property_readonly("num_written_fields", &ReplayBuffer::num_written_fields)
      .def_property_readonly("episode_returns_gamma", &ReplayBuffer::episode_returns_gamma)
      .def("episode_starts", &ReplayBuffer::episode_starts)
      .def(
          "set_full_state",
          [](ReplayBuffer& b, std::int64_t total, const std::array<std::uint64_t, 4>& rng,
             const std::vector<std::int64_t>& episode_starts) { b.set_state(total, rng, episode_starts); },
          py::arg("total"), py::arg("rng"), py::arg("episode_starts"))
      .def(
          "sample_ex",
          [](ReplayBuffer& b, std::int64_t batch_size, bool replace, bool require_return, std::int64_t n_step,
             std::optional<double> gamma) {
            if (batch_size < 0) throw py::value_error("batch_size must be >= 0, got " + std::to_string(batch_size));
            std::array<void*, kMaxFields> outs{};
            std::int64_t* ip = nullptr;
            NStep ns = make_nstep(n_step, gamma.value_or(1.0));
            py::tuple arrays = pooled_outputs(b, batch_size, true, gamma.has_value(), gamma.has_value(), outs.data(),
                                              &ip, &ns.discounts);
            {
              py::gil_scoped_release nogil;
              b.sample(batch_size, replace, ip, outs.data(), require_return, gamma ? &ns : nullptr);
            }
            if (gamma) return arrays;
            py::tuple result(arrays.size() + 1);  // discounts: None
            for (std::size_t i = 0; i < arrays.size(); ++i) result[i] = arrays[i];
            result[arrays.size()] = py::none();
            return result;
          },
          py::arg("batch_size"), py::arg("replace"), py::arg("require_return"), py::arg("n_step"),
          py::arg("gamma").none(true),
          "Sample with options: (ids, field arrays..., discounts or None); n-step when gamma is given.")
      .def(
          "sample_into_ex",
          [](ReplayBuffer& b, std::int64_t batch_size, bool replace, bool require_return, std::int64_t n_step,
             std::optional<double> gamma, py::handle ids_out, const py::tuple& outs, py::handle discounts_out) {
            if (batch_size < 0) throw py::value_error("batch_size must be >= 0, got " + std::to_string(batch_size));
            check_count(b, outs);
            std::int64_t* ip = ids_out_ptr(ids_out, batch_size);
            std::array<void*, kMaxFields> ptrs{};
            for (std::size_t f = 0; f < b.num_fields(); ++f) {
              if (outs[f].is_none()) continue;
              ptrs[f] = check_out(b, f, outs[f], batch_size, gamma.has_value());
            }
            NStep ns = make_nstep(n_step, gamma.value_or(1.0));
            if (gamma && !discounts_out.is_none())
              ns.discounts = checked_out_array(discounts_out, b.nstep_dtype(), {}, batch_size, "discounts out");
            py::gil_scoped_release nogil;
            b.sample(batch_size, replace, ip, ptrs.data(), require_return, gamma ? &ns : nullptr);
          },
          py::arg("batch_size"), py::arg("replace"), py::arg("require_return"), py::arg("n_step"),
          py::arg("gamma").none(true), py::arg("indices_out"), py::arg("outs"), py::arg("discounts_out").none(true),
          "sample_ex into caller-owned arrays of the exact dtype and shape (None skips a field).")
      .def(
          "gather_nstep",
          [](const ReplayBuffer& b, py::array_t<std::int64_t, py::array::c_style | py::array::forcecast> ids,
             std::int64_t n_step, double gamma) {
            const std::int64_t n = ids.size();
            std::array<void*, kMaxFields> outs{};
            NStep ns = make_nstep(n_step, gamma);
            py::tuple result = pooled_outputs(b, n, false, true, true, outs.data(), nullptr, &ns.discounts);
            const std::int64_t* ip = ids.data();
            {
              py::gil_scoped_release nogil;
              b.gather_nstep(ip, n, ns, outs.data());
            }
            return result;
          },
          py::arg("ids"), py::arg("n_step"), py::arg("gamma"),
          "n-step targets of the given stored ids: (field arrays..., discounts).")
      // ---- observations stored once, frame stacks, memory
      .def("is_stored", &ReplayBuffer::is_stored, py::arg("field"))
      .def_property_readonly("frame_stack", [](const ReplayBuffer& b) { return b.observation_store().frame_stack(); })
      .def("storage_bytes", &ReplayBuffer::storage_bytes, py::arg("field"))
      .def_property_readonly("side_bytes", &ReplayBuffer::side_bytes)
      .def_property_readonly("side_rows", &ReplayBuffer::side_rows)
      .def_property_readonly("observation_fixed_bytes", &ReplayBuffer::observation_fixed_bytes)
      .def(
          "observation_state_views",
          [](const ReplayBuffer& b, bool writable) {
            // pending next observations [N, *F], tail frames [T, *F], tail done flags [T]
            const auto& st = b.observation_store();
            const auto& s = b.specs()[ReplayBuffer::kObs];
            py::dict d;
            auto rows = [&](std::int64_t n) {
              std::vector<py::ssize_t> shape{n};
              shape.insert(shape.end(), s.shape.begin(), s.shape.end());
              return shape;
            };
            if (st.pending()) d["pending_next_observations"] = storage_view(st.pending(), s.dtype, rows(b.num_envs()), writable);
            if (st.tail_rows() > 0) {
              d["tail_frames"] = storage_view(st.tail_frames(), s.dtype, rows(st.tail_rows()), writable);
              d["tail_done"] = storage_view(st.tail_done(), DType::Bool, {st.tail_rows()}, writable);
            }
            return d;
          },
          py::arg("writable") = false,
          "Views of the observation store's fixed state by name (empty in the plain layout).")
      .def(
          "side_entries",
          [](const ReplayBuffer& b) {
            std::vector<std::int64_t> slots;
            std::vector<std::uint8_t> rows;
            {
              py::gil_scoped_release nogil;
              b.side_entries(slots, rows);
            }
            const auto& s = b.specs()[ReplayBuffer::kObs];
            std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(slots.size())};
            shape.insert(shape.end(), s.shape.begin(), s.shape.end());
            py::array r(to_numpy_dtype(s.dtype), shape);
            if (!rows.empty()) std::memcpy(r.mutable_data(), rows.data(), rows.size());
            return py::make_tuple(py::array_t<std::int64_t>(static_cast<py::ssize_t>(slots.size()), slots.data()), r);
          },
          "Kept next observations: (int64 slots [m], rows [m, *frame_shape]), a copy.")
      .def(
          "set_side_entries",
          [](ReplayBuffer& b, const py::array_t<std::int64_t, py::array::c_style>& slots, const py::array& rows) {
            const auto& s = b.specs()[ReplayBuffer::kObs];
            checked_out_array(rows, s.dtype, s.shape, slots.size(), "side rows");
            if (slots.ndim() != 1) throw py::value_error("side slots: expected a 1-d int64 array");
            const std::int64_t* sp = slots.data();
            const auto* rp = static_cast<const std::uint8_t*>(rows.data());
            const std::int64_t m = slots.size();
            py::gil_scoped_release nogil;
            b.set_side_entries(sp, rp, m);
          },
          py::arg("slots"), py::arg("rows"), "Replace the kept next observations (after set_state).");
}

}  // namespace fastrl::bind
