"""n-step sampling and episode returns of fastrl.ReplayBuffer against tests/reference.py's ReturnsModel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, note, settings
from hypothesis import strategies as st
from reference import ReturnsModel

import fastrl

GAMMAS = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))


def make(capacity, num_envs, gamma=None, seed=0, **kw):
    buf = fastrl.ReplayBuffer(capacity, num_envs=num_envs, seed=seed, episode_returns_gamma=gamma, **kw)
    return buf, ReturnsModel(capacity, num_envs, gamma)


def write(buf, model, rewards, terminated, truncated):
    """Append rows; observations encode the id (obs = id, next_obs = id + 0.5, action = id)."""
    k = len(rewards)
    ids = np.arange(buf.total_added, buf.total_added + k)
    buf.extend(ids.astype(np.float32), ids, np.asarray(rewards, np.float32), ids.astype(np.float32) + 0.5,
               np.asarray(terminated, bool), np.asarray(truncated, bool))
    model.extend(np.asarray(rewards, np.float32), terminated, truncated)


@st.composite
def histories(draw):
    """A buffer shape and a sequence of writes: episodes that wrap, outlive the capacity, several
    streams, terminated and truncated ends, and writes larger than the capacity."""
    num_envs = draw(st.integers(1, 3))
    capacity = num_envs * draw(st.integers(1, 6))
    p_end = draw(st.sampled_from([0.0, 0.05, 0.2, 0.5]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    writes = []
    for _ in range(draw(st.integers(1, 8))):
        steps = draw(st.integers(0, 2 * capacity // num_envs + 2))
        k = steps * num_envs
        writes.append((rng.integers(-3, 4, size=k).astype(np.float32) / 2,  # exact in float32
                       rng.random(k) < p_end, rng.random(k) < p_end / 2))
    return capacity, num_envs, writes


def check_episode_returns(buf, model):
    ids = np.array(model.live_ids(), np.int64)
    if len(ids) == 0:
        return
    got = buf.get(ids)
    for i, r, h in zip(ids, got["returns"], got["has_return"]):
        want_r, want_h = model.episode_return(int(i))
        assert bool(h) == want_h, f"has_return of id {i}"
        np.testing.assert_allclose(r, want_r, rtol=1e-5, atol=1e-5, err_msg=f"returns of id {i}")


def check_nstep(buf, model, n, gamma):
    ids = np.array(model.live_ids(), np.int64)
    if len(ids) == 0:
        return
    got = buf.gather_nstep(ids, n, gamma)
    for pos, i in enumerate(ids):
        total, last, k = model.nstep(int(i), n, gamma)
        np.testing.assert_allclose(got["rewards"][pos], total, rtol=1e-5, atol=1e-5, err_msg=f"id {i}")
        np.testing.assert_allclose(got["discounts"][pos], gamma**k, rtol=1e-6, atol=1e-7)
        assert got["next_observations"][pos] == last + 0.5  # the last summed step, same stream
        assert got["observations"][pos] == i and got["actions"][pos] == i  # the start step
        assert got["terminated"][pos] == model.terminated[last]
        assert got["truncated"][pos] == model.truncated[last]
        assert last % buf.num_envs == i % buf.num_envs and last < model.total


@settings(deadline=None)
@given(histories(), GAMMAS)
def test_episode_returns_match_model(history, gamma):
    capacity, num_envs, writes = history
    buf, model = make(capacity, num_envs, gamma)
    for rewards, te, tr in writes:
        write(buf, model, rewards, te, tr)
        note(f"total={model.total}")
        check_episode_returns(buf, model)


@settings(deadline=None)
@given(histories(), GAMMAS, st.integers(1, 5))
def test_nstep_matches_model(history, gamma, n):
    capacity, num_envs, writes = history
    buf, model = make(capacity, num_envs)
    for rewards, te, tr in writes:
        write(buf, model, rewards, te, tr)
        check_nstep(buf, model, n, gamma)


@settings(deadline=None)
@given(histories(), GAMMAS, st.integers(1, 4), st.booleans())
def test_sampled_batches_match_model(history, gamma, n, require_return):
    """sample / sample_into with n_step, gamma and require_return give the model's values for the
    ids they drew, and require_return only draws ids whose episode has ended."""
    capacity, num_envs, writes = history
    buf, model = make(capacity, num_envs, gamma=0.9)
    for rewards, te, tr in writes:
        write(buf, model, rewards, te, tr)
    live = model.live_ids()
    with_return = [i for i in live if model.episode_return(i)[1]]
    if not live or (require_return and not with_return):
        with pytest.raises(ValueError):
            buf.sample(8, n_step=n, gamma=gamma, require_return=require_return)
        return
    out = buf.empty_batch(16, discounts=True)
    for b in (buf.sample(16, n_step=n, gamma=gamma, require_return=require_return),
              buf.sample_into(out, n_step=n, gamma=gamma, require_return=require_return)):
        assert b.discounts is not None and b.rewards.dtype == torch.float32
        for pos, i in enumerate(b.indices.tolist()):
            assert i in (with_return if require_return else live)
            total, last, k = model.nstep(i, n, gamma)
            assert b.observations[pos] == i
            np.testing.assert_allclose(b.rewards[pos], total, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(b.discounts[pos], gamma**k, rtol=1e-6, atol=1e-7)
            assert b.next_observations[pos] == last + 0.5
            assert bool(b.terminated[pos]) == model.terminated[last]
            assert bool(b.truncated[pos]) == model.truncated[last]
            r, h = model.episode_return(i)
            assert bool(b.extras["has_return"][pos]) == h
            np.testing.assert_allclose(b.extras["returns"][pos], r, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- targeted cases


def test_nstep_stops_at_terminated_truncated_and_write_cursor():
    buf, model = make(16, 1)
    #          ids:   0  1  2  3  4  5  6
    write(buf, model, [1, 2, 4, 8, 16, 32, 64], [0, 1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0])
    got = buf.gather_nstep([0, 1, 2, 3, 5, 6], 3, 0.5)
    np.testing.assert_allclose(got["rewards"], [1 + 1, 2, 4 + 4 + 4, 8 + 8, 32 + 32, 64])
    np.testing.assert_allclose(got["discounts"], [0.25, 0.5, 0.125, 0.25, 0.25, 0.5])
    np.testing.assert_array_equal(got["terminated"], [True, True, False, False, False, False])
    np.testing.assert_array_equal(got["truncated"], [False, False, True, True, False, False])
    # bootstrap observation: next_observations of the last summed step (truncated: its true final obs)
    np.testing.assert_array_equal(got["next_observations"], [1.5, 1.5, 4.5, 4.5, 6.5, 6.5])


def test_nstep_never_mixes_streams():
    buf, model = make(12, 3)
    write(buf, model, np.arange(12, dtype=np.float32), np.zeros(12, bool), np.zeros(12, bool))
    got = buf.gather_nstep(np.arange(12), 3, 1.0)
    # stream s of id i sums ids i, i+3, i+6 (as far as written)
    want = [sum(j for j in range(i, 12, 3)[:3]) for i in range(12)]
    np.testing.assert_allclose(got["rewards"], want)


def test_nstep_gamma_zero_and_one_step():
    buf, model = make(8, 1)
    write(buf, model, [1, 2, 3, 4], [0] * 4, [0] * 4)
    g0 = buf.gather_nstep(np.arange(4), 3, 0.0)
    np.testing.assert_allclose(g0["rewards"], [1, 2, 3, 4])  # 0 ** 0 == 1: the first reward counts
    one = buf.sample(64, n_step=1, gamma=0.9)
    np.testing.assert_allclose(one.discounts, 0.9)
    np.testing.assert_allclose(one.rewards, one.observations + 1)
    np.testing.assert_allclose(one.next_observations, one.observations + 0.5)


def test_nstep_with_float64_and_int_rewards():
    b64 = fastrl.ReplayBuffer(8, reward_dtype=np.float64, seed=0)
    for t in range(4):
        b64.add(t, 0, 0.1, t, False, False)
    s = b64.sample(4, n_step=2, gamma=0.5)
    assert s.rewards.dtype == torch.float64 and s.discounts.dtype == torch.float64
    bint = fastrl.ReplayBuffer(8, reward_dtype=np.int32, seed=0)
    for t in range(4):
        bint.add(t, 0, 1, t, False, False)
    s = bint.sample(4, n_step=2, gamma=0.5)
    assert s.rewards.dtype == torch.float32
    assert bint.sample(4).rewards.dtype == torch.int32
    out = bint.empty_batch(4, discounts=True)
    assert out.rewards.dtype == torch.float32
    bint.sample_into(out, n_step=2, gamma=0.5)
    wrong = bint.empty_batch(4)._replace(discounts=torch.zeros(4))  # int32 rewards
    with pytest.raises(TypeError, match="rewards out: expected dtype float32"):
        bint.sample_into(wrong, n_step=2, gamma=0.5)


def test_episode_longer_than_capacity():
    """The oldest steps are overwritten before the episode ends; the stored ones get exact returns."""
    buf, model = make(4, 1, gamma=0.5)
    write(buf, model, [1] * 9, [0] * 8 + [1], [0] * 9)
    np.testing.assert_array_equal(buf.field("has_return"), [True] * 4)
    # stored ids 5..8, returns-to-go of a 9-step episode of ones
    got = buf.get([5, 6, 7, 8])["returns"]
    np.testing.assert_allclose(got, [1.875, 1.75, 1.5, 1.0])
    # an episode that started before the write cursor wrapped and is still running
    write(buf, model, [2, 2, 2], [0, 0, 0], [0, 0, 0])
    assert buf.get([8])["has_return"][0] and not buf.get([9, 10, 11])["has_return"].any()
    write(buf, model, [2], [0], [1])  # truncated: the observed partial return
    np.testing.assert_allclose(buf.get([9, 10, 11, 12])["returns"], [2 + 1 + 0.5 + 0.25, 3.5, 3, 2])
    check_episode_returns(buf, model)


def test_one_write_larger_than_capacity_with_episode_ends_in_skipped_rows():
    buf, model = make(4, 2, gamma=1.0)
    # 5 steps of 2 streams = 10 rows into capacity 4: rows 0..5 are never stored
    te = np.zeros(10, bool)
    te[2] = True  # stream 0 ends at id 2 (skipped): its next episode starts at id 4
    te[9] = True  # stream 1 ends at id 9 (stored)
    write(buf, model, np.ones(10, np.float32), te, np.zeros(10, bool))
    assert buf._impl.episode_starts() == [4, 11]
    np.testing.assert_array_equal(buf.get([6, 7, 8, 9])["has_return"], [False, True, False, True])
    np.testing.assert_allclose(buf.get([7, 9])["returns"], [2, 1])
    check_episode_returns(buf, model)


def test_require_return_is_uniform_over_finished_steps():
    buf, model = make(30, 3, gamma=0.9, seed=123)
    rng = np.random.default_rng(0)
    write(buf, model, rng.normal(size=60), rng.random(60) < 0.15, np.zeros(60, bool))
    finished = [i for i in model.live_ids() if model.episode_return(i)[1]]
    assert 5 < len(finished) < 30
    ids = buf.sample(20000, require_return=True).indices.numpy()
    counts = np.array([np.sum(ids == i) for i in finished])
    assert counts.sum() == len(ids)
    expected = len(ids) / len(finished)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < len(finished) + 6 * np.sqrt(2 * len(finished))  # far beyond p = 1e-6 for this df
    # without replacement: distinct, all finished
    ids = buf.sample(len(finished), replace=False, require_return=True).indices.numpy()
    assert sorted(ids.tolist()) == finished
    with pytest.raises(ValueError, match="with a return"):
        buf.sample(len(finished) + 1, replace=False, require_return=True)


def test_unfinished_episodes_are_flagged_and_excluded():
    buf, model = make(8, 1, gamma=0.9)
    write(buf, model, [1, 1, 1], [0, 0, 0], [0, 0, 0])
    assert not buf.field("has_return").any() and not buf.field("returns").any()
    with pytest.raises(ValueError, match="no stored transition has an episode return"):
        buf.sample(4, require_return=True)
    assert not buf.sample(8).extras["has_return"].any()
    write(buf, model, [1], [1], [0])
    b = buf.sample(32, require_return=True)
    assert b.extras["has_return"].all()


def test_state_dict_and_file_round_trip_continue_identically(tmp_path):
    """An episode that spans the save point ends after the load exactly as without the save."""
    a, model = make(6, 2, gamma=0.8, seed=5)
    rng = np.random.default_rng(1)
    write(a, model, rng.normal(size=10), rng.random(10) < 0.2, rng.random(10) < 0.1)
    b = fastrl.ReplayBuffer(6, num_envs=2, episode_returns_gamma=0.8, seed=99)
    b.load_state_dict(a.state_dict())
    a.save(tmp_path / "a.fastrl")
    c = fastrl.ReplayBuffer.load(tmp_path / "a.fastrl")
    assert c.episode_returns_gamma == 0.8
    tail = (rng.normal(size=8).astype(np.float32), rng.random(8) < 0.3, rng.random(8) < 0.1)
    m2 = ReturnsModel(6, 2, 0.8)
    m2.extend(*[list(x) for x in (model.rewards, model.terminated, model.truncated)])
    for buf in (a, b, c):
        ids = np.arange(buf.total_added, buf.total_added + 8)
        buf.extend(ids.astype(np.float32), ids, tail[0], ids + 0.5, tail[1], tail[2])
    m2.extend(*tail)
    for buf in (a, b, c):
        check_episode_returns(buf, m2)
        assert buf._impl.episode_starts() == a._impl.episode_starts()
        for name in ("returns", "has_return"):
            np.testing.assert_array_equal(buf.field(name), a.field(name))
    np.testing.assert_array_equal(b.sample(16, require_return=True).indices,
                                  a.sample(16, require_return=True).indices)


def test_damaged_episode_starts_are_rejected_and_change_nothing():
    a, model = make(6, 2, gamma=0.8)
    write(a, model, np.ones(6), [0, 0, 1, 0, 0, 0], [0] * 6)
    state = a.state_dict()
    b, _ = make(6, 2, gamma=0.8)
    before = b.state_dict()
    for bad in ([4], [4, 4], [3, 3], [100, 1], "x"):
        st_bad = dict(state, state=dict(state["state"], episode_starts=bad))
        with pytest.raises(ValueError, match="episode_starts"):
            b.load_state_dict(st_bad)
        assert b._impl.episode_starts() == before["state"]["episode_starts"]
    with pytest.raises(ValueError):  # a plain buffer's state does not load into one with returns
        plain = fastrl.ReplayBuffer(6, num_envs=2)
        b.load_state_dict(plain.state_dict())


def test_plain_buffer_state_has_no_episode_fields():
    buf = fastrl.ReplayBuffer(4)
    assert "episode_starts" not in buf.state_dict()["state"]
    assert "episode_returns_gamma" not in buf.state_dict()["config"]
    assert buf.episode_returns_gamma is None


def test_clear_resets_episode_tracking():
    buf, model = make(6, 2, gamma=0.5)
    write(buf, model, np.ones(4), [1, 0, 0, 0], [0] * 4)
    buf._impl.clear()
    assert buf._impl.episode_starts() == [0, 1]


def test_extras_and_computed_fields():
    buf = fastrl.ReplayBuffer(8, episode_returns_gamma=0.9, extra_fields={"w": ((), np.float32)}, seed=0)
    assert [f.name for f in buf.fields][-3:] == ["w", "returns", "has_return"]
    buf.add(0.0, 0, 1.0, 1.0, True, False, w=2.0)
    b = buf.sample(2)
    assert set(b.extras) == {"w", "returns", "has_return"}
    with pytest.raises(ValueError, match="unknown"):
        buf.add(0.0, 0, 1.0, 1.0, True, False, w=2.0, returns=1.0)
    with pytest.raises(ValueError, match="reserved"):
        fastrl.ReplayBuffer(8, episode_returns_gamma=0.9, extra_fields={"returns": ((), np.float32)})
    # without episode returns the names are free
    fastrl.ReplayBuffer(8, extra_fields={"returns": ((), np.float32)})
    # skipping computed fields in sample_into
    out = buf.empty_batch(2)
    del out.extras["returns"]
    buf.sample_into(out, require_return=True)


def test_batch_is_backward_compatible():
    t = torch.zeros(1)
    b = fastrl.Batch(t, t, t, t, t, t, t, {})
    assert b.discounts is None and b.extras == {}
    assert fastrl.ReplayBuffer(4, seed=0).empty_batch(2).discounts is None


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(n_step=0, gamma=0.9), ValueError, "n_step"),
    (dict(n_step=2.0, gamma=0.9), TypeError, "n_step"),
    (dict(n_step=3), ValueError, "gamma"),
    (dict(n_step=3, gamma=1.5), ValueError, "gamma"),
    (dict(n_step=3, gamma="0.9"), TypeError, "gamma"),
    (dict(require_return=True), ValueError, "episode_returns_gamma"),
])
def test_bad_sampling_options_raise_and_change_nothing(kwargs, exc, match):
    a, _ = make(8, 1, seed=3)
    b, _ = make(8, 1, seed=3)
    for buf in (a, b):
        buf.extend(np.zeros(4, np.float32), np.zeros(4, np.int64), np.ones(4, np.float32), np.zeros(4, np.float32),
                   np.zeros(4, bool), np.zeros(4, bool))
    with pytest.raises(exc, match=match):
        a.sample(4, **kwargs)
    with pytest.raises(exc, match=match):
        a.sample_into(a.empty_batch(4, discounts=True), **kwargs)
    np.testing.assert_array_equal(a.sample(8).indices, b.sample(8).indices)  # generator untouched


def test_sample_into_needs_discounts_and_exact_dtypes():
    buf, model = make(8, 1)
    write(buf, model, [1, 1, 1], [0, 0, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="discounts"):
        buf.sample_into(buf.empty_batch(4), n_step=2, gamma=0.9)
    out = buf.empty_batch(4, discounts=True)
    out = out._replace(discounts=torch.zeros(4, dtype=torch.float64))
    with pytest.raises(TypeError, match="discounts"):
        buf.sample_into(out, n_step=2, gamma=0.9)
    out = out._replace(discounts=torch.zeros(3))
    with pytest.raises(ValueError, match="discounts"):
        buf.sample_into(out, n_step=2, gamma=0.9)
    # a hand-made batch (not from empty_batch) works
    plain = buf.empty_batch(4)
    hand = fastrl.Batch(*(x.clone() for x in plain[:7]), {}, discounts=torch.zeros(4))
    buf.sample_into(hand, n_step=2, gamma=0.9)
    assert (hand.discounts > 0).all()


def test_gather_nstep_rejects_stale_ids():
    buf, model = make(4, 1)
    write(buf, model, [1] * 6, [0] * 6, [0] * 6)
    with pytest.raises(IndexError):
        buf.gather_nstep([0], 2, 0.9)
    with pytest.raises(IndexError):
        buf.gather_nstep([6], 2, 0.9)


@pytest.mark.parametrize("g, exc", [(1.5, ValueError), (-0.1, ValueError), ("x", TypeError), (True, TypeError)])
def test_bad_episode_returns_gamma(g, exc):
    with pytest.raises(exc, match="episode_returns_gamma"):
        fastrl.ReplayBuffer(8, episode_returns_gamma=g)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nstep_to_cuda():
    buf, model = make(16, 2, gamma=0.9)
    write(buf, model, np.ones(16), np.zeros(16, bool), np.zeros(16, bool))
    b = buf.sample(8, n_step=3, gamma=0.5, device="cuda")
    assert b.discounts.device.type == "cuda" and b.rewards.device.type == "cuda"
    out = buf.empty_batch(8, device="cuda", discounts=True)
    buf.sample_into(out, n_step=3, gamma=0.5, require_return=False)
    torch.cuda.synchronize()
    np.testing.assert_allclose(out.discounts.cpu().numpy(), 0.125)
