"""Fuzzing the Python boundary of the replay buffer: random shapes, dtypes, layouts and values.

Every call either works (and then matches what the value means) or raises ValueError / TypeError /
IndexError; it never crashes, and a rejected call leaves the buffer exactly as it was.
Longer runs: HYPOTHESIS_PROFILE=long pytest tests/test_fuzz_buffer.py
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp
from reference import snapshot

import fastrl

ALLOWED = (ValueError, TypeError, IndexError)

dtypes = st.sampled_from([np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64, np.uint16, np.uint32,
                          np.uint64, np.float16, np.float32, np.float64, np.complex64, ">f4", ">i8", "<U3", "O"])


@st.composite
def weird_values(draw):
    kind = draw(st.sampled_from(["array", "scalar", "list", "tensor", "none", "str", "strided", "readonly", "zero"]))
    if kind == "scalar":
        return draw(st.one_of(st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                              st.sampled_from([np.float32(1.5), np.int64(-3), np.uint8(7), np.bool_(True), np.float64("nan")])))
    if kind == "none":
        return None
    if kind == "str":
        return "abc"
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    dt = draw(dtypes)
    if np.dtype(dt).kind in "UO":
        arr = np.zeros(shape, dtype=dt)
    else:
        arr = draw(hnp.arrays(dt, shape))
    if kind == "list":
        return arr.tolist() if np.dtype(dt).kind not in "UOc" else [1, "x"]
    if kind == "tensor":
        try:
            return torch.from_numpy(np.ascontiguousarray(arr))
        except (TypeError, ValueError):
            return arr
    if kind == "strided" and arr.ndim:
        return np.repeat(arr, 2, axis=0)[::2]
    if kind == "readonly":
        arr.flags.writeable = False
    if kind == "zero":
        return np.zeros((0, *shape), dtype=dt) if np.dtype(dt).kind not in "UO" else arr
    return arr


def same(buf, snap):
    st_, arrays = snapshot(buf)
    if st_ != snap[0]:
        return False
    return all(np.array_equal(arrays[k], v, equal_nan=True) for k, v in snap[1].items())


def make(num_envs=1):
    buf = fastrl.ReplayBuffer(8 * num_envs, observation_shape=(2,), action_shape=(), num_envs=num_envs, seed=1,
                              extra_fields={"m": ((3,), np.uint8)})
    for _ in range(5):
        z = np.zeros((num_envs, 2), np.float32)
        buf.extend(z, np.zeros(num_envs, np.int64), np.zeros(num_envs), z, np.zeros(num_envs, bool),
                   np.zeros(num_envs, bool), m=np.zeros((num_envs, 3), np.uint8))
    return buf


@given(values=st.lists(weird_values(), min_size=7, max_size=7), use_extend=st.booleans())
def test_add_and_extend_never_crash_and_reject_cleanly(values, use_extend):
    buf = make(1 if not use_extend else 2)
    snap = snapshot(buf)
    fn = buf.extend if use_extend else buf.add
    try:
        fn(*values[:6], m=values[6])
    except ALLOWED:
        assert same(buf, snap)
        return
    assert buf.total_added == snap[0]["total"] + (2 if use_extend else 1)  # a row per env was written


@given(batch=st.one_of(st.integers(-5, 300), st.sampled_from([-2**63, 2**40, 2**62, 2**63 - 1]), st.floats(),
                       st.none(), st.booleans()),
       replace=st.booleans())
def test_sample_arguments(batch, replace):
    buf = make()
    snap = snapshot(buf)
    try:
        b = buf.sample(batch, replace=replace)
    except ALLOWED:
        assert same(buf, snap)
        return
    assert len(b.indices) == batch


@given(ids=st.one_of(weird_values(), st.lists(st.integers(-2**63, 2**63 - 1), max_size=5)))
def test_get_arbitrary_indices(ids):
    buf = make()
    snap = snapshot(buf)
    try:
        out = buf.get(ids)
    except ALLOWED:
        assert same(buf, snap)
        return
    assert set(out) == {f.name for f in buf.fields}


@given(out=st.lists(weird_values(), min_size=7, max_size=7), batch=st.integers(-3, 6))
def test_sample_into_arbitrary_outputs(out, batch):
    buf = make()
    snap = snapshot(buf)
    try:
        buf.sample_into(fastrl.Batch(*out, {}), batch)
    except ALLOWED:
        assert same(buf, snap)
        return
    pytest.fail("sample_into accepted outputs that cannot all be valid")


@given(kwargs=st.fixed_dictionaries({}, optional={
    "capacity": st.one_of(st.integers(-5, 2**70), st.floats(), st.none()),
    "observation_shape": st.one_of(st.lists(st.integers(-2, 4), max_size=3), st.integers(-1, 3), st.text(max_size=2)),
    "observation_dtype": dtypes, "action_dtype": dtypes,
    "num_envs": st.integers(-2, 4), "seed": st.one_of(st.integers(-1, 2**65), st.text(max_size=1))}))
def test_constructor_arguments(kwargs):
    kwargs.setdefault("capacity", 16)
    if isinstance(kwargs["capacity"], int) and kwargs["capacity"] > 10**7:
        kwargs["capacity"] = 2**62  # far beyond memory: must fail cleanly at construction
    try:
        buf = fastrl.ReplayBuffer(**kwargs)
    except ALLOWED + (MemoryError,):
        return
    assert buf.capacity >= 1
