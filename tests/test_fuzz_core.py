"""Fuzzing the return functions and the prioritized buffer at the Python boundary: random shapes,
dtypes, layouts, NaN / inf, huge and negative sizes and indices. Each call works or raises
ValueError / TypeError / IndexError; never a crash; a rejected call leaves the buffer unchanged.
Longer runs: HYPOTHESIS_PROFILE=long pytest tests/test_fuzz_core.py tests/test_fuzz_buffer.py"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, strategies as st

import fastrl
from test_fuzz_buffer import ALLOWED, same, snapshot, weird_values

reals = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3), st.none(), st.just("x"),
                  st.booleans())


@given(args=st.lists(weird_values(), min_size=5, max_size=5), gamma=reals, lam=reals, use_out=st.booleans())
def test_return_functions(args, gamma, lam, use_out):
    r, v, nv, term, trunc = args
    for call in (lambda out: fastrl.discounted_returns(r, term, trunc, gamma, bootstrap=nv, out=out),
                 lambda out: fastrl.gae(r, v, nv, term, trunc, gamma, lam, out=None if out is None else (out, out.copy())),
                 lambda out: fastrl.lambda_returns(r, nv, term, trunc, gamma, lam, out=out)):
        out = None
        if use_out and isinstance(r, np.ndarray):
            out = np.zeros(r.shape, np.float64)
        try:
            res = call(out)
        except ALLOWED:
            continue
        first = res[0] if isinstance(res, tuple) else res
        assert isinstance(first, (np.ndarray, torch.Tensor))


def per_buffer():
    buf = fastrl.PrioritizedReplayBuffer(16, observation_shape=(2,), seed=1, alpha=0.6)
    for i in range(20):
        buf.add(np.full(2, i, np.float32), i % 3, 1.0, np.full(2, i + 1, np.float32), i % 5 == 4, False)
    return buf


def per_snapshot(buf):
    return snapshot(buf), buf.state_dict()["arrays"]["priorities"].copy()


def per_same(buf, snap):
    return same(buf, snap[0]) and np.array_equal(buf.state_dict()["arrays"]["priorities"], snap[1])


@given(ids=st.one_of(weird_values(), st.lists(st.integers(-2**63, 2**63 - 1), max_size=6)),
       prios=st.one_of(weird_values(), st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=6)))
def test_update_priorities(ids, prios):
    buf = per_buffer()
    snap = per_snapshot(buf)
    try:
        buf.update_priorities(ids, prios)
    except ALLOWED:
        assert per_same(buf, snap)


@given(batch=st.one_of(st.integers(-3, 300), st.sampled_from([2**40, 2**63 - 1]), st.floats(), st.none()),
       beta=reals, n_step=st.one_of(st.integers(-2, 5), st.floats()), gamma=reals)
def test_prioritized_sample_arguments(batch, beta, n_step, gamma):
    buf = per_buffer()
    snap = per_snapshot(buf)
    try:
        b = buf.sample(batch, beta=beta, n_step=n_step, gamma=gamma)
    except ALLOWED:
        assert per_same(buf, snap)
        return
    assert len(b.indices) == batch and torch.all(b.weights > 0) and torch.all(b.weights <= 1)
