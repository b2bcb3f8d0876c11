"""fastrl.discounted_returns / gae / lambda_returns against the slow models in tests/reference.py."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastrl

GAMMAS = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))


@st.composite
def rollouts(draw, with_values=False):
    """Time-major rollouts: shape [T] or [T, N], random rewards and episode ends."""
    T = draw(st.integers(0, 30))
    shape = (T,) if draw(st.booleans()) else (T, draw(st.integers(1, 4)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    p_end = draw(st.sampled_from([0.0, 0.1, 0.4]))
    rng = np.random.default_rng(seed)
    d = {
        "rewards": rng.normal(size=shape).astype(dtype),
        "terminated": rng.random(shape) < p_end,
        "truncated": rng.random(shape) < p_end,
        "values": rng.normal(size=shape).astype(dtype),
        "next_values": rng.normal(size=shape).astype(dtype),
    }
    return d


def tol(dtype):
    return dict(rtol=1e-4, atol=1e-3) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)


@settings(deadline=None)
@given(rollouts(), GAMMAS, st.booleans())
def test_discounted_returns_matches_reference(d, gamma, with_bootstrap):
    b = d["next_values"] if with_bootstrap else None
    got = fastrl.discounted_returns(d["rewards"], d["terminated"], d["truncated"], gamma, b)
    want = ref.discounted_returns(d["rewards"], d["terminated"], d["truncated"], gamma, b)
    assert got.dtype == d["rewards"].dtype and got.shape == d["rewards"].shape
    np.testing.assert_allclose(got, want, **tol(got.dtype))


@settings(deadline=None)
@given(rollouts(), GAMMAS, GAMMAS)
def test_gae_matches_reference(d, gamma, lam):
    adv, ret = fastrl.gae(d["rewards"], d["values"], d["next_values"], d["terminated"], d["truncated"], gamma, lam)
    want_adv, want_ret = ref.gae(d["rewards"], d["values"], d["next_values"], d["terminated"], d["truncated"],
                                 gamma, lam)
    assert adv.dtype == ret.dtype == d["rewards"].dtype
    np.testing.assert_allclose(adv, want_adv, **tol(adv.dtype))
    np.testing.assert_allclose(ret, want_ret, **tol(adv.dtype))


@settings(deadline=None)
@given(rollouts(), GAMMAS, GAMMAS)
def test_lambda_returns_matches_reference(d, gamma, lam):
    got = fastrl.lambda_returns(d["rewards"], d["next_values"], d["terminated"], d["truncated"], gamma, lam)
    want = ref.lambda_returns(d["rewards"], d["next_values"], d["terminated"], d["truncated"], gamma, lam)
    np.testing.assert_allclose(got, want, **tol(got.dtype))


@settings(deadline=None)
@given(rollouts(), GAMMAS, GAMMAS)
def test_gae_returns_equal_lambda_returns_for_consistent_values(d, gamma, lam):
    """With next_values[t] == values[t + 1] inside episodes, GAE's returns are the lambda-returns."""
    v, nv = d["values"].copy(), d["next_values"].copy()
    ends = d["terminated"] | d["truncated"]
    nv[:-1] = np.where(ends[:-1], nv[:-1], v[1:])
    _, ret = fastrl.gae(d["rewards"], v, nv, d["terminated"], d["truncated"], gamma, lam)
    lr = fastrl.lambda_returns(d["rewards"], nv, d["terminated"], d["truncated"], gamma, lam)
    np.testing.assert_allclose(ret, lr, **tol(ret.dtype))


def test_known_values():
    r = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    te = np.array([0, 1, 0, 0, 0], bool)
    tr = np.array([0, 0, 0, 1, 0], bool)
    b = np.array([0.0, 0.0, 0.0, 10.0, 20.0])
    # episode 1: steps 0-1 terminated; episode 2: steps 2-3 truncated (bootstrap 10); step 4 cut (bootstrap 20)
    np.testing.assert_allclose(fastrl.discounted_returns(r, te, tr, 0.5, b),
                               [1 + 0.5 * 2, 2, 3 + 0.5 * (4 + 0.5 * 10), 4 + 0.5 * 10, 5 + 0.5 * 20])
    np.testing.assert_allclose(fastrl.discounted_returns(r, te, tr, 0.5), [2, 2, 5, 4, 5])
    # terminated wins when both flags are set
    both = np.ones(1, bool)
    assert fastrl.discounted_returns([1.0], both, both, 0.9, [100.0])[0] == 1.0


def test_itertools_accumulate_equivalence():
    """The tutorial's accumulate over a reversed reward list is the one-episode special case."""
    from itertools import accumulate

    rng = np.random.default_rng(0)
    r = rng.normal(size=200)
    want = list(accumulate(r[::-1], lambda x, y: x * 0.99 + y))[::-1]
    te = np.zeros(200, bool)
    te[-1] = True
    np.testing.assert_allclose(fastrl.discounted_returns(r, te, np.zeros(200, bool), 0.99), want, rtol=1e-12)


def test_two_d_streams_are_independent():
    rng = np.random.default_rng(1)
    r = rng.normal(size=(50, 3))
    te, tr = rng.random((50, 3)) < 0.1, rng.random((50, 3)) < 0.1
    full = fastrl.discounted_returns(r, te, tr, 0.9)
    for n in range(3):
        np.testing.assert_allclose(full[:, n], fastrl.discounted_returns(r[:, n], te[:, n], tr[:, n], 0.9))


def test_large_float32_matches_float64_reference():
    rng = np.random.default_rng(2)
    r = rng.normal(size=(3000, 16)).astype(np.float32)
    te, tr = rng.random(r.shape) < 0.01, rng.random(r.shape) < 0.01
    got = fastrl.discounted_returns(r, te, tr, 0.99)
    want = fastrl.discounted_returns(r.astype(np.float64), te, tr, 0.99)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- torch, out=, dtypes


def _ep(T=6, N=None):
    shape = (T,) if N is None else (T, N)
    rng = np.random.default_rng(3)
    return rng.normal(size=shape).astype(np.float32), rng.random(shape) < 0.3, rng.random(shape) < 0.2


def test_torch_in_torch_out():
    r, te, tr = _ep(N=2)
    got = fastrl.discounted_returns(torch.from_numpy(r), torch.from_numpy(te), torch.from_numpy(tr), 0.9)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), fastrl.discounted_returns(r, te, tr, 0.9))
    adv, ret = fastrl.gae(torch.from_numpy(r), r, r, te, tr, 0.9, 0.95)
    assert isinstance(adv, torch.Tensor) and isinstance(ret, torch.Tensor)
    lr = fastrl.lambda_returns(r, torch.from_numpy(r), te, tr, 0.9, 0.95)
    assert isinstance(lr, torch.Tensor)
    # a tensor that requires grad is read without its graph
    v = torch.from_numpy(r).requires_grad_(True)
    adv2, _ = fastrl.gae(r, v, v.detach(), te, tr, 0.9, 0.95)
    assert not adv2.requires_grad
    np.testing.assert_allclose(adv2.numpy(), adv.numpy())


def test_numpy_in_numpy_out():
    r, te, tr = _ep()
    assert type(fastrl.discounted_returns(r, te, tr, 0.9)) is np.ndarray
    assert type(fastrl.lambda_returns(r, r, te, tr, 0.9, 0.9)) is np.ndarray
    assert all(type(x) is np.ndarray for x in fastrl.gae(r, r, r, te, tr, 0.9, 0.9))


def test_out_numpy_and_torch_are_filled_in_place():
    r, te, tr = _ep(N=3)
    want = fastrl.discounted_returns(r, te, tr, 0.9)
    out = np.full_like(r, np.nan)
    assert fastrl.discounted_returns(r, te, tr, 0.9, out=out) is out
    np.testing.assert_array_equal(out, want)
    t = torch.full(r.shape, float("nan"))
    assert fastrl.discounted_returns(r, te, tr, 0.9, out=t) is t
    np.testing.assert_array_equal(t.numpy(), want)
    a, g = np.empty_like(r), torch.empty(r.shape)
    res = fastrl.gae(r, r, r, te, tr, 0.9, 0.8, out=(a, g))
    assert res[0] is a and res[1] is g
    want_a, want_g = fastrl.gae(r, r, r, te, tr, 0.9, 0.8)
    np.testing.assert_array_equal(a, want_a)
    np.testing.assert_array_equal(g.numpy(), want_g)
    o = np.empty_like(r)
    assert fastrl.lambda_returns(r, r, te, tr, 0.9, 0.8, out=o) is o
    np.testing.assert_array_equal(o, fastrl.lambda_returns(r, r, te, tr, 0.9, 0.8))


def test_out_may_be_an_input_in_place():
    r, te, tr = _ep(N=2)
    want = fastrl.discounted_returns(r, te, tr, 0.9)
    r2 = r.copy()
    fastrl.discounted_returns(r2, te, tr, 0.9, out=r2)
    np.testing.assert_array_equal(r2, want)
    v = np.random.default_rng(4).normal(size=r.shape).astype(np.float32)
    want_a, want_g = fastrl.gae(r, v, v, te, tr, 0.9, 0.8)
    r3, v3 = r.copy(), v.copy()
    fastrl.gae(r3, v3, v, te, tr, 0.9, 0.8, out=(r3, v3))
    np.testing.assert_allclose(r3, want_a)
    np.testing.assert_allclose(v3, want_g)


@pytest.mark.parametrize("bad, exc, match", [
    (np.empty(6, np.float64), TypeError, "dtype float32"),
    (np.empty(5, np.float32), ValueError, "shape"),
    (np.empty(12, np.float32)[::2], ValueError, "C-contiguous"),
    ([0.0] * 6, TypeError, "numpy array"),
])
def test_bad_out_raises_and_changes_nothing(bad, exc, match):
    r, te, tr = _ep()
    with pytest.raises(exc, match=match):
        fastrl.discounted_returns(r, te, tr, 0.9, out=bad)


def test_read_only_and_overlapping_out():
    r, te, tr = _ep()
    ro = np.zeros_like(r)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        fastrl.discounted_returns(r, te, tr, 0.9, out=ro)
    big = np.zeros(7, np.float32)
    big[:6] = r
    with pytest.raises(ValueError, match="overlap"):
        fastrl.discounted_returns(big[:6], te, tr, 0.9, out=big[1:])
    a = np.zeros_like(r)
    with pytest.raises(ValueError, match="overlap"):
        fastrl.gae(r, r, r, te, tr, 0.9, 0.9, out=(a, a))
    with pytest.raises(TypeError, match="pair"):
        fastrl.gae(r, r, r, te, tr, 0.9, 0.9, out=a)
    g = torch.zeros(6, requires_grad=True)
    with pytest.raises(TypeError, match="grad"):
        fastrl.discounted_returns(r, te, tr, 0.9, out=g)


def test_errors_leave_out_untouched():
    r, te, tr = _ep()
    out = np.full_like(r, 7.0)
    with pytest.raises(ValueError):
        fastrl.discounted_returns(r, te, tr, 1.5, out=out)
    with pytest.raises(ValueError):
        fastrl.discounted_returns(r, te[:3], tr, 0.5, out=out)
    assert (out == 7.0).all()


def test_dtype_rules():
    r, te, tr = _ep()
    r64 = r.astype(np.float64)
    assert fastrl.discounted_returns(r, te, tr, 0.9).dtype == np.float32
    assert fastrl.discounted_returns(r64, te, tr, 0.9).dtype == np.float64
    # float32 rewards with float64 values: never narrowed
    assert fastrl.gae(r, r64, r, te, tr, 0.9, 0.9)[0].dtype == np.float64
    assert fastrl.discounted_returns(r, te, tr, 0.9, bootstrap=r64).dtype == np.float64
    # integer rewards and lists
    assert fastrl.discounted_returns(np.arange(6), te, tr, 0.9).dtype == np.float64
    assert fastrl.discounted_returns(np.arange(6), te, tr, 0.9, bootstrap=r).dtype == np.float32
    np.testing.assert_allclose(fastrl.discounted_returns([1, 1], [0, 1], [0, 0], 0.5), [1.5, 1.0])
    # integer 0/1 flags are accepted
    np.testing.assert_array_equal(fastrl.discounted_returns(r, te.astype(np.int64), tr.astype(np.uint8), 0.9),
                                  fastrl.discounted_returns(r, te, tr, 0.9))
    # float16 is computed in float32
    assert fastrl.discounted_returns(r.astype(np.float16), te, tr, 0.9).dtype == np.float32


@pytest.mark.parametrize("call, exc, match", [
    (lambda r, te, tr: fastrl.discounted_returns(r, te.astype(float), tr, 0.9), TypeError, "terminated"),
    (lambda r, te, tr: fastrl.discounted_returns(r, te * 2, tr, 0.9), ValueError, "0 or 1"),
    (lambda r, te, tr: fastrl.discounted_returns(r, te, tr[:5], 0.9), ValueError, "truncated"),
    (lambda r, te, tr: fastrl.discounted_returns(r, te, tr, 0.9, bootstrap=r[:2]), ValueError, "bootstrap"),
    (lambda r, te, tr: fastrl.discounted_returns(r.reshape(1, 2, 3), te, tr, 0.9), ValueError, r"\[T\] or \[T, N\]"),
    (lambda r, te, tr: fastrl.discounted_returns(np.float32(1.0), te, tr, 0.9), ValueError, "rewards"),
    (lambda r, te, tr: fastrl.discounted_returns(r.astype(complex), te, tr, 0.9), TypeError, "rewards"),
    (lambda r, te, tr: fastrl.discounted_returns(["a"] * 6, te, tr, 0.9), TypeError, "rewards"),
    (lambda r, te, tr: fastrl.discounted_returns(r, te, tr, -0.1), ValueError, "gamma"),
    (lambda r, te, tr: fastrl.discounted_returns(r, te, tr, float("nan")), ValueError, "gamma"),
    (lambda r, te, tr: fastrl.discounted_returns(r, te, tr, "0.9"), TypeError, "gamma"),
    (lambda r, te, tr: fastrl.discounted_returns(r, te, tr, True), TypeError, "gamma"),
    (lambda r, te, tr: fastrl.gae(r, r, r[:4], te, tr, 0.9, 0.9), ValueError, "next_values"),
    (lambda r, te, tr: fastrl.gae(r, r, r, te, tr, 0.9, 1.1), ValueError, "lam"),
    (lambda r, te, tr: fastrl.lambda_returns(r, r, te, tr, 0.9, -1), ValueError, "lam"),
    (lambda r, te, tr: fastrl.lambda_returns(r, r.reshape(2, 3), te, tr, 0.9, 0.5), ValueError, "next_values"),
    (lambda r, te, tr: fastrl.discounted_returns(np.zeros((3, 0)), np.zeros((3, 0), bool),
                                                 np.zeros((3, 0), bool), 0.9), ValueError, "N >= 1"),
])
def test_bad_input_raises(call, exc, match):
    r, te, tr = _ep()
    with pytest.raises(exc, match=match):
        call(r, te, tr)


def test_empty_rollout():
    for shape in [(0,), (0, 4)]:
        z, f = np.zeros(shape, np.float32), np.zeros(shape, bool)
        assert fastrl.discounted_returns(z, f, f, 0.9).shape == shape
        a, g = fastrl.gae(z, z, z, f, f, 0.9, 0.9)
        assert a.shape == g.shape == shape
        assert fastrl.lambda_returns(z, z, f, f, 0.9, 0.9).shape == shape


def test_non_contiguous_inputs_are_read_correctly():
    rng = np.random.default_rng(5)
    r = rng.normal(size=(40, 6))
    te, tr = rng.random((40, 6)) < 0.2, rng.random((40, 6)) < 0.2
    got = fastrl.discounted_returns(r[::2, ::3], te[::2, ::3], tr[::2, ::3], 0.8)
    want = ref.discounted_returns(r[::2, ::3], te[::2, ::3], tr[::2, ::3], 0.8)
    np.testing.assert_allclose(got, want)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensor_is_rejected():
    r = torch.zeros(4, device="cuda")
    f = torch.zeros(4, dtype=torch.bool)
    with pytest.raises(TypeError, match="CPU"):
        fastrl.discounted_returns(r, f, f, 0.9)


def test_core_rejects_converted_outputs():
    """The binding itself never writes into a converted copy: wrong-dtype out is a TypeError."""
    r = np.zeros(3, np.float32)
    f = np.zeros(3, bool)
    with pytest.raises(TypeError):
        fastrl._core.discounted_returns(r, f, f, 0.9, None, np.zeros(3, np.float64))
    with pytest.raises(TypeError):
        fastrl._core.discounted_returns(r, f.astype(np.uint8), f, 0.9, None, np.zeros(3, np.float32))
