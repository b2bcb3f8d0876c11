"""PrioritizedReplayBuffer against the numpy model in tests/reference.py."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import PrioritizedModel, Xoshiro256, tree_root

import fastrl
from fastrl import BetaSchedule, LinearSchedule, PrioritizedReplayBuffer, _core

K = _core.SUM_TREE_FANOUT


def assert_every_row_once(buf, n, beta):
    """Equal sampling mass and B == N rows: stratified sampling draws each row once, weights 1."""
    ids, w = buf.sample_indices(n, beta)
    np.testing.assert_array_equal(np.sort(ids), np.arange(n))
    np.testing.assert_array_equal(w, 1.0)


def with_random_priorities(cap, written, alpha, seed, pr):
    """A full buffer (eps 0) and its model after ``written`` rows, the live ones with priorities ``pr``."""
    buf, model = make(cap, alpha=alpha, eps=0.0, seed=seed), PrioritizedModel(cap, alpha, 0.0, K)
    fill(buf, written)
    model.write(written)
    live = np.arange(written - cap, written)
    buf.update_priorities(live, pr)
    model.update(live.tolist(), pr)
    return buf, model, live, pr


def make(capacity=16, num_envs=1, alpha=0.6, eps=1e-6, seed=0, **kw):
    return PrioritizedReplayBuffer(capacity, observation_shape=(2,), num_envs=num_envs, alpha=alpha, eps=eps,
                                   seed=seed, **kw)


def fill(buf, rows, start=0):
    """Write `rows` rows whose observations encode their id (obs[:, 0] == id)."""
    ids = np.arange(start, start + rows, dtype=np.float32)
    obs = np.stack([ids, -ids], axis=1)
    buf.extend(obs, np.arange(rows) % 3, ids, obs + 1, np.zeros(rows, bool), np.zeros(rows, bool))


def rng_of(buf):
    return Xoshiro256(buf._impl.rng_state())


def check_same(buf, model):
    assert buf.total_added == model.total
    live = np.arange(model.total - model.size, model.total)
    if len(live):
        np.testing.assert_array_equal(buf.priorities(live), model.raw[live % model.capacity])
    np.testing.assert_array_equal(buf._per.masses(), model.masses())
    assert buf.max_priority == model.max_raw


# ---------------------------------------------------------------- exact model comparisons
@pytest.mark.parametrize("num_envs", [1, 3])
def test_sample_stream_matches_model_exactly(num_envs):
    cap = 30
    buf, model = make(cap, num_envs=num_envs, eps=0.01), PrioritizedModel(cap, 0.6, 0.01, K)
    gen = np.random.default_rng(1)
    for step in range(12):  # wraps around several times
        rows = num_envs * int(gen.integers(1, 5))
        fill(buf, rows, buf.total_added)
        model.write(rows)
        r = rng_of(buf)  # the model replays the draw from the generator state the buffer had
        ids, w = buf.sample_indices(7, beta=0.5)
        mids, mw = model.sample(r, 7, 0.5)
        np.testing.assert_array_equal(ids, mids)
        np.testing.assert_array_equal(w, mw)
        pr = np.abs(gen.normal(size=len(ids))) * (step % 4 != 0)
        assert buf.update_priorities(ids, pr) == model.update(ids.tolist(), pr)
        check_same(buf, model)
    for beta in (0.0, 0.4, 1.0):
        r = rng_of(buf)
        ids, w = buf.sample_indices(64, beta)
        mids, mw = model.sample(r, 64, beta)
        np.testing.assert_array_equal(ids, mids)
        np.testing.assert_array_equal(w, mw)  # exact float64
        r = rng_of(buf)
        batch = buf.sample(64, beta)
        mids, mw = model.sample(r, 64, beta)
        np.testing.assert_array_equal(batch.indices.numpy(), mids)
        np.testing.assert_array_equal(batch.weights.numpy(), mw.astype(np.float32))
        assert batch.weights.dtype == torch.float32
        rows = buf.get(mids)
        np.testing.assert_array_equal(batch.observations.numpy(), rows["observations"])
        np.testing.assert_array_equal(batch.observations.numpy()[:, 0], mids)  # the row with that id
        np.testing.assert_array_equal(batch.actions.numpy(), rows["actions"])


@pytest.mark.parametrize("cap", [1, 2, 3, 4, 5, 16, 17, 65])
def test_tree_shapes_match_model(cap):
    """Capacities around powers of the fan-out: padding and partial levels."""
    buf, model = make(cap, eps=0.0), PrioritizedModel(cap, 0.6, 0.0, K)
    fill(buf, cap + 2)
    model.write(cap + 2)
    live = np.arange(2, cap + 2)
    pr = np.random.default_rng(cap).exponential(size=cap) * (np.arange(cap) % 3 != 1)
    pr[0] = 1.0  # at least one positive
    buf.update_priorities(live, pr)
    model.update(live.tolist(), pr)
    check_same(buf, model)
    assert buf._per.total_mass == tree_root(model.masses(), K)
    for b in (1, 3, 50):
        r = rng_of(buf)
        ids, w = buf.sample_indices(b, 0.6)
        mids, mw = model.sample(r, b, 0.6)
        np.testing.assert_array_equal(ids, mids)
        np.testing.assert_array_equal(w, mw)


def test_weights_equal_the_paper_formula():
    cap = 40
    buf, model, live, pr = with_random_priorities(cap, 55, 0.6, 0, np.random.default_rng(2).uniform(0.01, 5.0, 40))
    for beta in (0.0, 0.3, 1.0):
        ids, w = buf.sample_indices(200, beta)
        slots = ids % cap
        np.testing.assert_allclose(w, model.weights_formula(slots, beta), rtol=1e-12, atol=0)
        m = model.masses()
        exact = np.array([math.pow(m[m > 0].min() / m[s], beta) for s in slots])
        np.testing.assert_array_equal(w, exact)
        assert (w <= 1.0).all() and (w > 0).all()
    # the row of smallest priority, when sampled, has weight exactly 1 for any beta
    smallest = live[np.argmin(pr)]
    assert buf.priorities([smallest])[0] == pr.min()


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["write", "update", "alpha", "sample"]), st.integers(0, 2**31)),
                    min_size=1, max_size=25),
       num_envs=st.sampled_from([1, 2]))
def test_random_operation_sequences_match_model(ops, num_envs):
    cap = 12
    buf, model = make(cap, num_envs=num_envs, eps=0.05), PrioritizedModel(cap, 0.6, 0.05, K)
    for op, r in ops:
        gen = np.random.default_rng(r)
        if op == "write":
            rows = num_envs * int(gen.integers(0, 10))
            fill(buf, rows, buf.total_added)
            model.write(rows)
        elif op == "update" and model.total:
            ids = gen.integers(0, model.total, size=int(gen.integers(1, 8)))  # includes stale ids
            pr = gen.exponential(size=len(ids)) * gen.integers(0, 2, size=len(ids))
            assert buf.update_priorities(ids, pr) == model.update(ids.tolist(), pr)
        elif op == "alpha":
            a = float(gen.choice([0.0, 0.5, 1.0, 1.7]))
            buf.alpha = a
            model.alpha = a
        elif op == "sample" and model.total:
            b = int(gen.integers(1, 20))
            beta = float(gen.uniform(0, 1))
            rr = rng_of(buf)
            ids, w = buf.sample_indices(b, beta)
            mids, mw = model.sample(rr, b, beta)
            np.testing.assert_array_equal(ids, mids)
            np.testing.assert_array_equal(w, mw)
        check_same(buf, model)
        m = model.masses()
        assert buf._per.total_mass == tree_root(m, K)


# ---------------------------------------------------------------- statistics
def _chi2_critical(df: int, z: float = 4.265) -> float:
    """Upper quantile of chi-square (Wilson-Hilferty); z = 4.265 is p = 1e-5."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


@pytest.mark.parametrize("alpha", [0.6, 1.0])
def test_sampled_frequencies_match_p_alpha(alpha):
    cap = 50
    buf, model, _, pr = with_random_priorities(cap, 70, alpha, 123, np.random.default_rng(3).uniform(0.05, 3.0, 50))
    counts = np.zeros(cap)
    draws = 0
    for _ in range(400):
        ids, _w = buf.sample_indices(100, 0.4)
        np.add.at(counts, ids % cap, 1)
        draws += len(ids)
    expected = model.probabilities() * draws
    np.testing.assert_allclose(expected / draws, (pr ** alpha / (pr ** alpha).sum())[(np.arange(cap) - 20) % cap])
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < _chi2_critical(cap - 1), chi2
    # and not absurdly small either (a sampler that returned expected counts exactly would be wrong)
    assert chi2 > 0


def test_every_stratum_is_covered():
    cap = 64
    buf = make(cap, eps=0.0)
    fill(buf, cap)
    pr = np.random.default_rng(4).uniform(0, 2, size=cap) ** 3
    pr[::7] = 0.0  # zero-mass rows: never sampled
    buf.update_priorities(np.arange(cap), pr)
    m = buf._per.masses()
    cum = np.concatenate([[0.0], np.cumsum(m)])
    total = buf._per.total_mass
    for b in (1, 5, 64, 300):
        slice_ = total / b
        ids, _ = buf.sample_indices(b, 0.4)
        assert (m[ids] > 0).all()
        for i, s in enumerate(ids):  # sample i lies in slice i: its interval meets [i, i + 1) * slice
            assert cum[s] <= (i + 1) * slice_ * (1 + 1e-12) and cum[s + 1] >= i * slice_ * (1 - 1e-12)
    # equal priorities and B == N: every row exactly once
    buf2 = make(32)
    fill(buf2, 32)
    assert_every_row_once(buf2, 32, 0.4)


# ---------------------------------------------------------------- priorities
def test_new_rows_enter_with_the_running_max():
    buf = make(8, eps=0.5)
    fill(buf, 4)
    np.testing.assert_array_equal(buf.priorities(range(4)), 1.0)
    buf.update_priorities([1, 2], [3.0, 0.25])
    assert buf.max_priority == 3.5
    fill(buf, 2, 4)
    np.testing.assert_array_equal(buf.priorities([4, 5]), 3.5)
    buf.update_priorities([1], [0.0])  # the maximum is a running maximum: it does not go down
    fill(buf, 1, 6)
    assert buf.priorities([6])[0] == 3.5 and buf.max_priority == 3.5


def test_stale_updates_are_ignored():
    cap = 10
    buf = make(cap)
    fill(buf, cap)
    ids, _ = buf.sample_indices(5, 0.4)
    fill(buf, 7, cap)  # overwrites ids 0..6
    fresh = buf.priorities(np.arange(7, 17)).copy()
    before = buf._per.masses()
    stale = ids[ids < 7]
    assert buf.update_priorities(stale, np.full(len(stale), 9.0)) == 0
    np.testing.assert_array_equal(buf._per.masses(), before)
    np.testing.assert_array_equal(buf.priorities(np.arange(7, 17)), fresh)
    assert buf.max_priority == 1.0  # a stale update does not raise the running max either
    mixed = np.array([3, 12, 5, 16])
    assert buf.update_priorities(mixed, [7.0, 2.0, 7.0, 4.0]) == 2
    np.testing.assert_allclose(buf.priorities([12, 16]), [2.0 + 1e-6, 4.0 + 1e-6])
    np.testing.assert_array_equal(buf.priorities([10, 11]), fresh[3:5])


def test_duplicate_ids_last_wins():
    buf = make(8)
    fill(buf, 8)
    buf.update_priorities([2, 2, 2], [1.0, 5.0, 0.5])
    assert buf.priorities([2])[0] == 0.5 + 1e-6 and buf.max_priority == 5.0 + 1e-6


@pytest.mark.parametrize("kind", ["np64", "np32", "np16", "int", "t32", "t16", "bf16", "t64-2d", "list"])
def test_update_accepts_numpy_and_torch(kind):
    buf = make(8)
    fill(buf, 8)
    idx = torch.tensor([1, 3, 5])
    vals = [0.5, 2.0, 0.25]
    pr = {"np64": np.array(vals), "np32": np.array(vals, np.float32), "np16": np.array(vals, np.float16),
          "int": np.array([0, 2, 1]), "t32": torch.tensor(vals), "t16": torch.tensor(vals, dtype=torch.float16),
          "bf16": torch.tensor(vals, dtype=torch.bfloat16), "t64-2d": torch.tensor(vals, dtype=torch.float64)[:, None],
          "list": vals}[kind]
    assert buf.update_priorities(idx if kind != "list" else [1, 3, 5], pr) == 3
    want = np.array([0, 2, 1]) if kind == "int" else np.array(vals)
    np.testing.assert_allclose(buf.priorities([1, 3, 5]), want + 1e-6)


def test_update_with_requires_grad_tensor():
    buf = make(8)
    fill(buf, 8)
    td = torch.tensor([0.5, -2.0], requires_grad=True) * 1.0
    buf.update_priorities(torch.tensor([0, 1]), td.abs())
    np.testing.assert_allclose(buf.priorities([0, 1]), [0.5 + 1e-6, 2.0 + 1e-6])


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), -float("inf")])
def test_bad_priorities_raise_and_change_nothing(bad):
    buf = make(8)
    fill(buf, 8)
    buf.update_priorities([0], [2.0])
    masses, raw, state = buf._per.masses(), buf.priorities(range(8)), buf._impl.rng_state()
    with pytest.raises(ValueError, match="finite and >= 0"):
        buf.update_priorities([1, 2, 3], [1.0, bad, 1.0])
    np.testing.assert_array_equal(buf._per.masses(), masses)
    np.testing.assert_array_equal(buf.priorities(range(8)), raw)
    assert buf._impl.rng_state() == state and buf.max_priority == 2.0 + 1e-6


def test_bad_update_arguments():
    buf = make(8)
    fill(buf, 4)
    before = buf._per.masses()
    with pytest.raises(IndexError, match="never written"):
        buf.update_priorities([1, 4], [1.0, 1.0])
    with pytest.raises(IndexError):
        buf.update_priorities([-1], [1.0])
    with pytest.raises(ValueError, match="same number"):
        buf.update_priorities([1, 2], [1.0])
    with pytest.raises(TypeError, match="integers"):
        buf.update_priorities(np.array([1.0]), [1.0])
    with pytest.raises(TypeError, match="real"):
        buf.update_priorities([1], np.array([1 + 1j]))
    with pytest.raises(TypeError, match="real"):
        buf.update_priorities([1], np.array([True]))
    np.testing.assert_array_equal(buf._per.masses(), before)
    buf.alpha = 2.0
    before = buf._per.masses()
    with pytest.raises(ValueError, match="too large"):
        buf.update_priorities([1], [1e200])  # (1e200)**2 overflows float64
    np.testing.assert_array_equal(buf._per.masses(), before)
    buf.alpha = 1.0
    buf.update_priorities([1], [1e200])
    with pytest.raises(ValueError, match="overflow"):
        buf.alpha = 2.0
    assert buf.alpha == 1.0
    with pytest.raises(IndexError, match="not stored"):
        buf.priorities([4])


def test_bad_constructor_and_sample_arguments():
    for kw, err in [({"alpha": -1.0}, ValueError), ({"alpha": float("nan")}, ValueError), ({"eps": -1e-3}, ValueError),
                    ({"alpha": "0.5"}, TypeError), ({"eps": None}, TypeError)]:
        with pytest.raises(err):
            make(**kw)
    buf = make(8)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(4)
    fill(buf, 4)
    with pytest.raises(ValueError, match="beta"):
        buf.sample(4, beta=-0.1)
    with pytest.raises(ValueError, match="beta"):
        buf.sample(4, beta=float("inf"))
    with pytest.raises(ValueError, match="replacement"):
        buf.sample(4, replace=False)
    with pytest.raises(ValueError, match="batch_size"):
        buf.sample(0)
    with pytest.raises(ValueError, match="alpha"):
        buf.alpha = -0.5
    assert buf.alpha == 0.6


def test_zero_priorities_are_never_sampled_and_all_zero_raises():
    buf = make(8, eps=0.0)
    fill(buf, 8)
    buf.update_priorities(range(8), [0, 1, 0, 0, 2, 0, 0, 0])
    ids, w = buf.sample_indices(500, 1.0)
    assert set(ids.tolist()) == {1, 4}
    np.testing.assert_array_equal(np.unique(w), sorted({1.0, math.pow(1.0 / 2.0 ** 0.6, 1.0)}))
    buf.update_priorities([1, 4], [0, 0])
    with pytest.raises(ValueError, match="zero"):
        buf.sample(4)
    buf.alpha = 0.0  # 0 ** 0 == 1: alpha 0 is uniform over stored rows
    assert_every_row_once(buf, 8, 0.7)


def test_alpha_changes_without_rebuild():
    buf = make(16, eps=0.0)
    fill(buf, 20)
    pr = np.linspace(0.1, 3.0, 16)
    buf.update_priorities(np.arange(4, 20), pr)
    for a in (0.0, 0.3, 1.0, 2.0, 0.6):
        buf.alpha = a
        assert buf.alpha == a
        m = buf._per.masses()
        raw = buf.priorities(np.arange(4, 20))
        np.testing.assert_array_equal(raw, pr)
        np.testing.assert_array_equal(m[np.arange(4, 20) % 16], [math.pow(r, a) for r in pr])
        assert buf._per.total_mass == tree_root(m, K)
        assert buf._per.min_mass == m[m > 0].min()


# ---------------------------------------------------------------- trees stay exact
def _random_updates(n_updates, cap=1000, seed=5, sort=False):
    buf = make(cap, alpha=0.7, eps=1e-3, seed=seed)
    fill(buf, cap)
    gen = np.random.default_rng(seed)
    for _ in range(n_updates // 1000):
        ids = gen.integers(0, cap, size=1000)
        if sort:  # sorted with repeats, as stratified sampling returns them: shared ancestors merge
            ids = np.sort(ids)
        pr = gen.lognormal(0, 3, size=1000) * (gen.random(1000) > 0.1)
        buf.update_priorities(ids, pr)
    m = buf._per.masses()
    raw = buf.priorities(np.arange(cap))
    np.testing.assert_array_equal(m, [math.pow(r, 0.7) for r in raw])
    assert buf._per.total_mass == tree_root(m, K)  # bit for bit: no drift
    assert math.isclose(buf._per.total_mass, math.fsum(m), rel_tol=1e-13)
    assert buf._per.min_mass == m.min()


@pytest.mark.parametrize("sort", [False, True])
def test_trees_exact_after_many_updates(sort):
    _random_updates(100_000, sort=sort)


def test_trees_exact_after_sampled_updates():
    """The sampler's own (sorted) ids fed back, the training loop's pattern, at a capacity deep
    enough for several tree levels."""
    cap = 5000
    buf = make(cap, alpha=0.6, eps=1e-6, seed=2)
    fill(buf, cap + 123)  # wrapped: the sorted slots start mid-buffer
    gen = np.random.default_rng(2)
    for _ in range(200):
        ids, _ = buf.sample_indices(256, 0.4)
        buf.update_priorities(ids, gen.exponential(size=256))
    m = buf._per.masses()
    assert buf._per.total_mass == tree_root(m, K)
    assert buf._per.min_mass == m[m > 0].min()


@pytest.mark.slow
def test_trees_exact_after_millions_of_updates():
    _random_updates(5_000_000, cap=100_000)


# ---------------------------------------------------------------- persistence
def _after_some_use(buf):
    fill(buf, 25)
    ids, _ = buf.sample_indices(10, 0.4)
    buf.update_priorities(ids, np.linspace(0.0, 4.0, 10))
    buf.alpha = 0.8
    fill(buf, 5, 25)


def test_save_load_resumes_the_same_sample_stream(tmp_path):
    buf = make(20, seed=9, extra_fields={"ret": ((), np.float32)})
    buf.extend(np.zeros((25, 2)), np.zeros(25, np.int64), np.arange(25), np.zeros((25, 2)), np.zeros(25, bool),
               np.zeros(25, bool), ret=np.arange(25) * 2)
    ids, _ = buf.sample_indices(10, 0.4)
    buf.update_priorities(ids, np.linspace(0.0, 4.0, 10))
    buf.alpha = 0.8
    buf.save(tmp_path / "b.fastrl")
    other = PrioritizedReplayBuffer.load(tmp_path / "b.fastrl")
    assert other.alpha == 0.8 and other.eps == buf.eps and other.max_priority == buf.max_priority
    np.testing.assert_array_equal(other._per.masses(), buf._per.masses())
    for _ in range(3):
        a, b = buf.sample(16, beta=0.5), other.sample(16, beta=0.5)
        for x, y in zip(a[:7], b[:7]):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
        torch.testing.assert_close(a.weights, b.weights, rtol=0, atol=0)
        torch.testing.assert_close(a.extras["ret"], b.extras["ret"], rtol=0, atol=0)
        buf.update_priorities(a.indices, a.rewards)
        other.update_priorities(b.indices, b.rewards)


def test_state_dict_round_trip_into_a_buffer_with_other_alpha():
    buf = make(20, seed=9)
    _after_some_use(buf)
    sd = buf.state_dict()
    assert sd["arrays"]["priorities"].dtype == np.float64 and sd["state"]["alpha"] == 0.8
    other = make(20, seed=1, alpha=0.1)
    other.load_state_dict(sd)
    assert other.alpha == 0.8 and other.max_priority == buf.max_priority
    for _ in range(3):
        np.testing.assert_array_equal(buf.sample_indices(8, 0.3)[0], other.sample_indices(8, 0.3)[0])
    fill(buf, 3, 30)
    fill(other, 3, 30)
    np.testing.assert_array_equal(buf._per.masses(), other._per.masses())


def test_damaged_state_is_rejected_and_changes_nothing():
    buf = make(20, seed=9)
    _after_some_use(buf)
    other = make(20, seed=1)
    fill(other, 3)
    before = other._per.masses()
    for damage in ("neg", "nan", "alpha", "max"):
        sd = buf.state_dict()
        if damage == "neg":
            sd["arrays"]["priorities"][3] = -1.0
        elif damage == "nan":
            sd["arrays"]["priorities"][3] = np.nan
        elif damage == "alpha":
            sd["state"]["alpha"] = -1.0
        else:
            del sd["state"]["max_priority"]
        with pytest.raises(ValueError, match="damaged"):
            other.load_state_dict(sd)
        np.testing.assert_array_equal(other._per.masses(), before)
        assert other.total_added == 3
    sd = buf.state_dict()
    sd["class"] = "ReplayBuffer"
    with pytest.raises(ValueError):
        other.load_state_dict(sd)


def test_empty_state_round_trip():
    buf = make(8, seed=4)
    other = make(8, seed=5)
    _after_some_use(other)
    other.load_state_dict(buf.state_dict())  # back to empty: trees and running max reset
    assert len(other) == 0 and other.max_priority == 1.0 and other._per.total_mass == 0.0
    fill(other, 3)
    fill(buf, 3)
    np.testing.assert_array_equal(buf.sample_indices(5)[0], other.sample_indices(5)[0])


def test_plain_replay_buffer_still_round_trips(tmp_path):
    buf = fastrl.ReplayBuffer(8, observation_shape=(2,), seed=3)
    fill(buf, 10)
    buf.save(tmp_path / "p.fastrl")
    other = fastrl.ReplayBuffer.load(tmp_path / "p.fastrl")
    torch.testing.assert_close(buf.sample(5).observations, other.sample(5).observations, rtol=0, atol=0)
    assert buf.sample(5).weights is None
    with pytest.raises(ValueError):
        PrioritizedReplayBuffer.load(tmp_path / "p.fastrl")


# ---------------------------------------------------------------- batches, sample_into, threads
def test_sample_into_matches_sample():
    a, b = make(16, seed=2), make(16, seed=2)
    for buf in (a, b):
        _after_some_use(buf)
    out = b.empty_batch(8)
    assert out.weights.dtype == torch.float32 and out.weights.shape == (8,)
    for _ in range(3):
        x = a.sample(8, beta=0.6)
        y = b.sample_into(out, beta=0.6)
        assert y is out
        for p, q in zip((*x[:7], x.weights), (*out[:7], out.weights)):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    # an ad-hoc batch (not from empty_batch) goes through the checked path
    z = out._replace(weights=torch.zeros(8))
    a.sample_into(z, beta=0.6)
    x = b.sample(8, beta=0.6)
    torch.testing.assert_close(z.indices, x.indices, rtol=0, atol=0)
    torch.testing.assert_close(z.weights, x.weights, rtol=0, atol=0)
    with pytest.raises(TypeError, match="weights out"):
        a.sample_into(out._replace(weights=torch.zeros(8, dtype=torch.float64)))
    with pytest.raises(ValueError, match="weights"):
        a.sample_into(out._replace(weights=None))


def test_batch_layout_keeps_positions_and_extras():
    assert fastrl.Batch._fields[7:] == ("extras", "weights", "discounts") and fastrl.Batch._fields[6] == "indices"
    buf = make(8, extra_fields={"ret": ((2,), np.float64)})
    buf.add(np.ones(2), 1, 0.5, np.ones(2), False, True, ret=np.array([1.0, 2.0]))
    b = buf.sample(3, device="cpu")
    assert b.extras["ret"].shape == (3, 2) and b.truncated.all() and b.weights.shape == (3,)


def test_one_writer_one_sampler_threads():
    buf = make(500, eps=1e-3, seed=11)
    fill(buf, 10)
    stop = threading.Event()
    errors = []

    def writer():
        try:
            for k in range(300):
                fill(buf, 4, 10 + 4 * k)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        finally:
            stop.set()

    t = threading.Thread(target=writer)
    t.start()
    while not stop.is_set():
        b = buf.sample(32, beta=0.5)
        np.testing.assert_array_equal(b.observations[:, 0].numpy(), b.indices.numpy())  # row matches its id
        buf.update_priorities(b.indices, b.rewards.abs())
    t.join()
    assert not errors
    m = buf._per.masses()
    assert buf._per.total_mass == tree_root(m, K)


# ---------------------------------------------------------------- schedules
def test_linear_and_beta_schedules():
    s = LinearSchedule(1.0, 0.1, 10)
    assert s(0) == 1.0 and s(10) == pytest.approx(0.1) and s(1000) == pytest.approx(0.1)
    assert s(5) == pytest.approx(0.55)
    b = BetaSchedule(0.4, horizon=100)
    assert b(0) == 0.4 and b(50) == pytest.approx(0.7) and b(100) == 1.0 and b(10**9) == 1.0
    with pytest.raises(ValueError):
        BetaSchedule(-0.1, 10)
    with pytest.raises(ValueError):
        LinearSchedule(0, 1, 0)
    with pytest.raises(TypeError):
        LinearSchedule(0, 1, 2.5)
    with pytest.raises(ValueError):
        s(-1)


def test_nstep_prioritized_matches_uniform_gather_of_the_same_ids():
    """PER n-step: the ids come from the prioritized draw; the targets equal ReplayBuffer.gather_nstep."""
    buf = fastrl.PrioritizedReplayBuffer(32, observation_shape=(2,), num_envs=2, alpha=0.7, seed=3)
    rng = np.random.default_rng(0)
    for t in range(40):  # wraps; episodes end by termination and truncation
        o = rng.normal(size=(2, 2)).astype(np.float32)
        buf.extend(o, rng.integers(0, 3, 2), rng.normal(size=2), o + 1, rng.random(2) < 0.15, rng.random(2) < 0.1)
    b = buf.sample(64, beta=0.5, n_step=3, gamma=0.9)
    assert b.discounts is not None and b.weights is not None
    ref = buf.gather_nstep(b.indices.numpy(), 3, 0.9)
    names = ["observations", "actions", "rewards", "next_observations", "terminated", "truncated"]
    for name in names:
        np.testing.assert_array_equal(getattr(b, name).numpy(), ref[name])
    np.testing.assert_array_equal(b.discounts.numpy(), ref["discounts"])
    assert (b.discounts.numpy() > 0.9**3 + 1e-6).any()  # some windows ended early at episode ends
    out = buf.empty_batch(16, discounts=True)
    buf.sample_into(out, beta=0.5, n_step=3, gamma=0.9)
    ref = buf.gather_nstep(out.indices.numpy(), 3, 0.9)
    np.testing.assert_array_equal(out.rewards.numpy(), ref["rewards"])
    np.testing.assert_array_equal(out.discounts.numpy(), ref["discounts"])
    with pytest.raises(ValueError, match="discounts"):
        buf.sample_into(buf.empty_batch(4), beta=0.5, n_step=3, gamma=0.9)
    with pytest.raises(ValueError, match="n_step"):
        buf.sample(4, n_step=0, gamma=0.9)


def test_nstep_draw_equals_plain_draw():
    a = fastrl.PrioritizedReplayBuffer(16, observation_shape=(1,), seed=5)
    b = fastrl.PrioritizedReplayBuffer(16, observation_shape=(1,), seed=5)
    for buf in (a, b):
        for i in range(20):
            buf.add(np.array([i], np.float32), 0, 1.0, np.array([i + 1], np.float32), i % 6 == 5, False)
        buf.update_priorities(np.arange(4, 20), np.arange(16) / 3.0)
    x, y = a.sample(32, beta=0.4), b.sample(32, beta=0.4, n_step=2, gamma=0.5)
    assert torch.equal(x.indices, y.indices) and torch.equal(x.weights, y.weights)


def test_episode_returns_with_prioritized_sampling(tmp_path):
    buf = fastrl.PrioritizedReplayBuffer(16, observation_shape=(1,), seed=2, episode_returns_gamma=0.5)
    for i in range(6):  # one episode of 4 steps (rewards 1), then 2 steps of an unfinished one
        buf.add(np.array([i], np.float32), 0, 1.0, np.array([i + 1], np.float32), i == 3, False)
    b = buf.sample(64, beta=0.4)
    has, ret = b.extras["has_return"].numpy(), b.extras["returns"].numpy()
    ids = b.indices.numpy()
    np.testing.assert_array_equal(has, ids <= 3)
    expected = {0: 1 + 0.5 + 0.25 + 0.125, 1: 1 + 0.5 + 0.25, 2: 1.5, 3: 1.0}
    for i, h, r in zip(ids, has, ret):
        if h:
            assert r == pytest.approx(expected[int(i)])
    p = tmp_path / "per.frb"
    buf.save(p)
    again = fastrl.PrioritizedReplayBuffer.load(p)
    np.testing.assert_array_equal(again.get(range(6))["returns"], buf.get(range(6))["returns"])
