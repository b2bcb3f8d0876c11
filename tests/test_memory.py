"""Observations stored once, frame stacks, memory-mapped storage: against full copies (issue 5)."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, note, settings
from hypothesis import strategies as st
from reference import FullCopyObservations, ReturnsModel, env_like_rows, labelled_stack

import fastrl
from fastrl import PrioritizedReplayBuffer, ReplayBuffer

VALUES = [0.0, -0.0, 1.0, float("nan"), 2.5]  # repeats, signed zeros and NaN: bitwise equality matters


def bits(a) -> np.ndarray:
    a = a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    return np.ascontiguousarray(a).view(np.uint8)


def assert_bits_equal(got, want, what=""):
    g, w = bits(got), bits(want)
    assert g.shape == w.shape, (what, g.shape, w.shape)
    if not np.array_equal(g, w):
        bad = np.argwhere(g != w)[0]
        raise AssertionError(f"{what}: first difference at byte index {tuple(bad)}: got {np.asarray(got)!r}")


def write_both(buf, model, rets, rng, steps, start, frame_shape, dtype, p_jump, values, actions=True):
    obs, nxt, te, tr = env_like_rows(rng, steps, buf.num_envs, frame_shape, dtype, start, p_jump=p_jump,
                                     values=values)
    k = len(obs)
    r = rng.normal(size=k).astype(np.float32)
    buf.extend(obs, np.arange(k) % 3, r, nxt, te, tr)
    model.write(obs, nxt, te, tr)
    rets.extend(r, te, tr)


def check_all_live(buf, model):
    live = np.arange(buf.total_added - len(buf), buf.total_added)
    if not len(live):
        return
    got = buf.get(live)
    for j, i in enumerate(live):
        assert_bits_equal(got["observations"][j], model.obs[i], f"observations of id {i}")
        assert_bits_equal(got["next_observations"][j], model.next_obs[i], f"next_observations of id {i}")


# (store_next_observations, frame_stack, terminated_next_observations)
LAYOUTS = st.sampled_from([(False, 1, "keep"), (False, 2, "keep"), (False, 4, "keep"), (True, 3, "keep"),
                           (True, 1, "keep"), (False, 1, "zero"), (False, 3, "zero")])


@settings(max_examples=80, deadline=None)
@given(layout=LAYOUTS, padding=st.sampled_from(["reset", "zero"]), num_envs=st.integers(1, 3),
       capacity=st.integers(1, 30), pixels=st.booleans(), p_jump=st.sampled_from([0.0, 0.0, 0.2]),
       writes=st.lists(st.integers(0, 12), min_size=1, max_size=6), seed=st.integers(0, 2**32 - 1))
def test_every_stored_and_sampled_observation_equals_full_copies(layout, padding, num_envs, capacity, pixels, p_jump,
                                                                  writes, seed):
    store_next, k, terminated_next = layout
    capacity = max(1, capacity // num_envs) * num_envs  # capacity is a multiple of num_envs
    frame_shape, dtype, values = ((2, 3), np.uint8, None) if pixels else ((3,), np.float32, VALUES)
    note(f"store_next={store_next} k={k} padding={padding} terminated_next={terminated_next} N={num_envs} "
         f"cap={capacity}")
    buf = ReplayBuffer(capacity, observation_shape=frame_shape, observation_dtype=dtype, num_envs=num_envs,
                       seed=seed, store_next_observations=store_next, frame_stack=k, frame_padding=padding,
                       terminated_next_observations=terminated_next)
    model = FullCopyObservations(num_envs, k, padding, terminated_next)
    rets = ReturnsModel(capacity, num_envs)
    rng = np.random.default_rng(seed)
    start = [None] * num_envs
    for steps in writes:
        write_both(buf, model, rets, rng, steps, start, frame_shape, dtype, p_jump, values)
        check_all_live(buf, model)  # the write cursor, wrap-around and evicted frames included
        if len(buf):
            b = buf.sample(16)
            for j, i in enumerate(b.indices.tolist()):
                assert_bits_equal(b.observations[j], model.obs[i], "sampled observations")
                assert_bits_equal(b.next_observations[j], model.next_obs[i], "sampled next_observations")
            # n-step: the bootstrap observation is the next observation of the last summed step
            b = buf.sample(16, n_step=3, gamma=0.9)
            for j, i in enumerate(b.indices.tolist()):
                _, last, steps_summed = rets.nstep(i, 3, 0.9)
                assert_bits_equal(b.observations[j], model.obs[i], "n-step observations")
                assert_bits_equal(b.next_observations[j], model.next_obs[last], "n-step next_observations")
                assert b.discounts[j].item() == pytest.approx(0.9**steps_summed)
            out = buf.empty_batch(8)
            buf.sample_into(out)
            for j, i in enumerate(out.indices.tolist()):
                assert_bits_equal(out.next_observations[j], model.next_obs[i], "sample_into next_observations")


def full_twin(buf: ReplayBuffer, cls=ReplayBuffer, **kw) -> ReplayBuffer:
    """A full-layout buffer (observation and next observation stacks stored as they are) with the same seed."""
    shape = buf.fields[0].shape
    return cls(buf.capacity, observation_shape=shape, observation_dtype=buf.fields[0].dtype, num_envs=buf.num_envs,
               seed=0, store_next_observations=True, **kw)


@settings(max_examples=25, deadline=None)
@given(k=st.sampled_from([1, 4]), num_envs=st.integers(1, 3), capacity=st.integers(4, 40),
       writes=st.lists(st.integers(1, 15), min_size=1, max_size=5), seed=st.integers(0, 2**32 - 1))
def test_batches_equal_the_full_layout_with_nstep_returns_and_prioritized(k, num_envs, capacity, writes, seed):
    """Same ids, same generator use, same values as the naive layout: uniform, n-step,
    require_return, prioritized sampling (zero-mass rows never drawn), after a save/load round trip."""
    capacity = max(1, capacity // num_envs) * num_envs  # capacity is a multiple of num_envs
    kw = {"episode_returns_gamma": 0.9}
    compact = ReplayBuffer(capacity, observation_shape=(2, 2), observation_dtype=np.uint8, num_envs=num_envs, seed=0,
                           frame_stack=k, **kw)
    full = full_twin(compact, **kw)
    pc = PrioritizedReplayBuffer(capacity, observation_shape=(2, 2), observation_dtype=np.uint8, num_envs=num_envs,
                                 seed=0, frame_stack=k, alpha=0.7)
    pf = full_twin(pc, PrioritizedReplayBuffer, alpha=0.7)
    model = FullCopyObservations(num_envs, k)
    rng = np.random.default_rng(seed)
    start = [None] * num_envs
    for steps in writes:
        obs, nxt, te, tr = env_like_rows(rng, steps, num_envs, (2, 2), np.uint8, start, p_jump=0.1)
        first = len(model.obs)
        model.write(obs, nxt, te, tr)
        full_obs, full_nxt = np.stack(model.obs[first:]), np.stack(model.next_obs[first:])
        r = rng.normal(size=len(obs)).astype(np.float32)
        a = rng.integers(0, 4, size=len(obs))
        for b in (compact, pc):
            b.extend(obs, a, r, nxt, te, tr)
        for b in (full, pf):
            b.extend(full_obs, a, r, full_nxt, te, tr)
        for opts in ({}, {"n_step": 3, "gamma": 0.9}, {"require_return": True}, {"replace": False}):
            if opts.get("require_return") and not full._impl.episode_starts() or (
                    opts.get("replace") is False and len(full) < 5):
                continue
            try:
                want = full.sample(5, **opts)
            except ValueError:  # no step has a return yet: both must refuse
                with pytest.raises(ValueError):
                    compact.sample(5, **opts)
                continue
            got = compact.sample(5, **opts)
            for name in ("indices", "observations", "next_observations", "rewards", "terminated", "truncated"):
                assert_bits_equal(getattr(got, name), getattr(want, name), f"{opts} {name}")
            for name in want.extras:
                assert_bits_equal(got.extras[name], want.extras[name], f"{opts} {name}")
        got, want = pc.sample(6, beta=0.5), pf.sample(6, beta=0.5)
        for name in ("indices", "weights", "observations", "next_observations"):
            assert_bits_equal(getattr(got, name), getattr(want, name), f"prioritized {name}")
        g3, w3 = pc.sample(6, beta=0.5, n_step=3, gamma=0.9), pf.sample(6, beta=0.5, n_step=3, gamma=0.9)
        for name in ("indices", "weights", "observations", "next_observations", "rewards", "discounts"):
            assert_bits_equal(getattr(g3, name), getattr(w3, name), f"prioritized n-step {name}")
        pri = rng.random(6) * np.array([0, 1, 1, 1, 1, 1])  # one zero priority: that row gets no mass
        pc.update_priorities(got.indices, pri)
        pf.update_priorities(want.indices, pri)
        compact2 = ReplayBuffer(capacity, observation_shape=(2, 2), observation_dtype=np.uint8, num_envs=num_envs,
                                frame_stack=k, **kw)
        compact2.load_state_dict(compact.state_dict())
        compact = compact2
    live = np.arange(full.total_added - len(full), full.total_added)
    g, w = compact.get(live), full.get(live)
    for name in w:
        assert_bits_equal(g[name], w[name], name)


# ------------------------------------------------------------------ gymnasium's FrameStackObservation
@pytest.mark.parametrize("padding", ["reset", "zero"])
def test_cartpole_frame_stack_matches_gymnasium_step_by_step(padding):
    k = 4
    env = gym.wrappers.FrameStackObservation(gym.make("CartPole-v1", max_episode_steps=30), k, padding_type=padding)
    buf = ReplayBuffer.from_env(env, 64, frame_stack=k, frame_padding=padding, seed=0)
    assert buf.fields[0].shape == (k, 4) and buf.field("observations").shape == (64, 4)
    assert buf.frame_padding == padding
    expected = []  # per id: the wrapper's (obs, next_obs)
    obs, _ = env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(200):  # several episodes (terminations and the 30-step truncation), wraps around
        a = int(rng.integers(2))
        nxt, r, term, trunc, _ = env.step(a)
        buf.add(obs, a, r, nxt, term, trunc)
        expected.append((obs.copy(), nxt.copy()))
        i = buf.total_added - 1
        got = buf.get([i])  # step by step: the newest step, its successor not written yet
        np.testing.assert_array_equal(got["observations"][0], obs)
        np.testing.assert_array_equal(got["next_observations"][0], nxt)
        obs = env.reset()[0] if term or trunc else nxt
    live = np.arange(buf.total_added - len(buf), buf.total_added)
    got = buf.get(live)
    for j, i in enumerate(live):
        assert_bits_equal(got["observations"][j], expected[i][0], f"obs {i}")
        assert_bits_equal(got["next_observations"][j], expected[i][1], f"next obs {i}")
    assert buf._impl.side_rows < 200 // 5  # one kept final observation per episode, not one per step


def test_vector_env_frame_stack_with_autoreset_matches_gymnasium():
    k, n = 4, 3
    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.wrappers.FrameStackObservation(gym.make("CartPole-v1", max_episode_steps=20), k)] * n,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    buf = ReplayBuffer.from_env(envs, 90, frame_stack=k, seed=0)
    assert buf.num_envs == n and buf.fields[0].shape == (k, 4)
    obs, _ = envs.reset(seed=3)
    expected_obs, expected_next = [], []
    for _ in range(80):
        a = envs.action_space.sample()
        nxt, r, term, trunc, info = envs.step(a)
        final = fastrl.final_observations(nxt, term, trunc, info)
        buf.extend(obs, a, r, final, term, trunc)
        expected_obs.extend(obs.copy())
        expected_next.extend(final.copy())
        obs = nxt  # SAME_STEP: already the reset stack where an episode ended
    live = np.arange(buf.total_added - len(buf), buf.total_added)
    got = buf.get(live)
    for j, i in enumerate(live):
        assert_bits_equal(got["observations"][j], expected_obs[i], f"obs {i}")
        assert_bits_equal(got["next_observations"][j], expected_next[i], f"next obs {i}")


# ------------------------------------------------------------------ episodes that end inside a stack
SHORT_LENGTHS = (1, 2, 3, 1, 4, 2, 6, 3, 1, 1, 2)  # most episodes shorter than the stack (k = 4)


def short_episodes(num_envs: int, steps: int, k: int, padding: str):
    """``steps`` vector steps whose frames are labelled ``(episode, step)``: stream ``s`` runs
    episodes of the lengths ``SHORT_LENGTHS`` rotated by ``s`` (streams out of phase), ending
    terminated and truncated in turn. Yields per vector step ``(obs, next_obs, terminated,
    truncated, expected obs stacks, expected next stacks)``, next_obs being the true final frame
    where an episode ends."""
    ids = iter(range(1, 10**6))
    plan = [(next(ids), 0, s, s % 2) for s in range(num_envs)]  # (episode, step, length index, ends truncated?)
    for _ in range(steps):
        obs, nxt, te, tr, want_obs, want_next = [], [], [], [], [], []
        for s, (e, t, li, trunc) in enumerate(plan):
            length = SHORT_LENGTHS[li % len(SHORT_LENGTHS)]
            end = t + 1 == length
            obs.append((e, t))
            nxt.append((e, t + 1))
            te.append(end and not trunc)
            tr.append(end and bool(trunc))
            want_obs.append(labelled_stack(e, t, k, padding))
            want_next.append(labelled_stack(e, t + 1, k, padding))
            plan[s] = (next(ids), 0, li + 1, 1 - trunc) if end else (e, t + 1, li, trunc)
        yield (np.array(obs, np.int32), np.array(nxt, np.int32), np.array(te), np.array(tr),
               np.stack(want_obs), np.stack(want_next))


@pytest.mark.parametrize("num_envs", [1, 3])
@pytest.mark.parametrize("per_stream", [1, 2, 5, 16])
@pytest.mark.parametrize("padding", ["reset", "zero"])
@pytest.mark.parametrize("layout", ["compact", "full", "prioritized", "stacks given"])
def test_episodes_shorter_than_the_stack(num_envs, per_stream, padding, layout):
    """Episodes of 1, 2 and 3 steps with frame_stack=4 (and some of 4 and 6), terminated and
    truncated, on several streams out of phase, the ring wrapping many times: every stored and
    sampled stack (plain, n-step, prioritized) is the labelled model's, so no stack mixes two
    episodes, skips or repeats a step, or pads with anything but the episode's first frame."""
    k, capacity = 4, per_stream * num_envs
    cls = PrioritizedReplayBuffer if layout == "prioritized" else ReplayBuffer
    buf = cls(capacity, observation_shape=(2,), observation_dtype=np.int32, num_envs=num_envs, seed=1,
              frame_stack=k, frame_padding=padding, store_next_observations=layout == "full")
    rets = ReturnsModel(capacity, num_envs)
    want_obs, want_next = [], []  # per id
    steps = short_episodes(num_envs, 120, k, padding)
    for chunk in (1, 1, 2, 5, 1, 3, 8, 1, 13, 2, 1, 30, 4, 1, 47):  # 120 vector steps
        rows = [next(steps) for _ in range(chunk)]
        obs, nxt, te, tr, wo, wn = (np.concatenate(x) for x in zip(*rows))
        if layout == "stacks given":  # what the trainer passes: the env's stacks (the newest frame is kept)
            obs, nxt = wo, wn
        r = np.ones(len(obs), np.float32)
        buf.extend(obs, np.zeros(len(obs), np.int64), r, nxt, te, tr)
        rets.extend(r, te, tr)
        want_obs.extend(wo)
        want_next.extend(wn)
        live = np.arange(buf.total_added - len(buf), buf.total_added)
        got = buf.get(live)
        for j, i in enumerate(live):
            assert_bits_equal(got["observations"][j], want_obs[i], f"observations of id {i}")
            assert_bits_equal(got["next_observations"][j], want_next[i], f"next_observations of id {i}")
        b = buf.sample(64, **({"beta": 0.4} if layout == "prioritized" else {}))
        for j, i in enumerate(b.indices.tolist()):
            assert_bits_equal(b.observations[j], want_obs[i], f"sampled observations of id {i}")
            assert_bits_equal(b.next_observations[j], want_next[i], f"sampled next_observations of id {i}")
        b = buf.sample(64, n_step=3, gamma=0.9)
        for j, i in enumerate(b.indices.tolist()):
            last = rets.nstep(i, 3, 0.9)[1]
            assert_bits_equal(b.observations[j], want_obs[i], f"n-step observations of id {i}")
            assert_bits_equal(b.next_observations[j], want_next[last], f"n-step next_observations of id {i}")
    ends = np.array([w[-1, 1] for w in want_next])  # the step count each next stack ends at
    assert buf.total_added == 120 * num_envs and {1, 2, 3} <= set(ends.tolist())


# ------------------------------------------------------------------ persistence
def filled_pixels(tmp=None, n=50, **kw):
    kw.setdefault("frame_stack", 4)
    kw.setdefault("store_next_observations", False)  # tiny frames: the auto layout would store them twice
    buf = ReplayBuffer(32, observation_shape=(6, 6), observation_dtype=np.uint8, num_envs=2, seed=5, **kw)
    model = FullCopyObservations(2, kw["frame_stack"], kw.get("frame_padding", "reset"),
                                 kw.get("terminated_next_observations", "keep"))
    rng = np.random.default_rng(1)
    start = [None, None]
    for _ in range(n // 10):
        obs, nxt, te, tr = env_like_rows(rng, 5, 2, (6, 6), np.uint8, start, p_done=0.3)
        buf.extend(obs, np.zeros(10, np.int64), np.ones(10), nxt, te, tr)
        model.write(obs, nxt, te, tr)
    return buf, model


@pytest.mark.parametrize("kw", [{}, {"frame_stack": 1}, {"store_next_observations": True},
                                {"frame_padding": "zero", "episode_returns_gamma": 0.5},
                                {"terminated_next_observations": "zero"}])
def test_save_load_keeps_side_store_tail_and_sampling(tmp_path, kw):
    buf, model = filled_pixels(**kw)
    assert buf._impl.side_rows > 0 or kw.get("store_next_observations")
    path = tmp_path / "b.frb"
    buf.save(path)
    others = (ReplayBuffer.load(path), _via_state_dict(buf))
    want = buf.sample(20)
    for other in others:
        check_all_live(other, model)
        got = other.sample(20)
        for name in ("indices", "observations", "next_observations"):
            assert_bits_equal(getattr(got, name), getattr(want, name), name)
        assert other._impl.side_rows == buf._impl.side_rows


def _via_state_dict(buf):
    other = ReplayBuffer(**{k: v for k, v in buf._config.items()}, seed=1)
    other.load_state_dict(buf.state_dict())
    return other


def test_damaged_side_store_in_state_dict_is_rejected_and_changes_nothing():
    buf, _ = filled_pixels()
    sd = buf.state_dict()
    slots = sd["arrays"]["observation_store/side_slots"]
    assert len(slots) >= 2
    target, _ = filled_pixels(frame_padding="reset")
    before = target.state_dict()
    for damage in (lambda s: s.__setitem__(0, 10**6), lambda s: s.__setitem__(1, s[0]), lambda s: s.__setitem__(0, -1)):
        bad = {**sd, "arrays": dict(sd["arrays"])}
        bad["arrays"]["observation_store/side_slots"] = s = slots.copy()
        damage(s)
        with pytest.raises(ValueError, match="kept next observations"):
            target.load_state_dict(bad)
        after = target.state_dict()
        assert after["state"] == before["state"]
        for name, v in before["arrays"].items():
            assert_bits_equal(after["arrays"][name], v, name)


def test_old_files_without_layout_keys_load_as_the_full_layout(tmp_path):
    buf = ReplayBuffer(8, observation_shape=(2,), store_next_observations=True, seed=0)
    for i in range(5):
        buf.add(np.full(2, i, np.float32), 0, 0.0, np.full(2, i + 1, np.float32), False, False)
    path = tmp_path / "old.frb"
    meta = buf._meta()
    for key in ("store_next_observations", "frame_stack", "frame_padding"):
        del meta["config"][key]
    from fastrl.replay import persistence as serialization
    serialization.write_file(path, meta, list(buf._arrays(len(buf)).items()))
    loaded = ReplayBuffer.load(path)
    assert loaded.store_next_observations and loaded.frame_stack == 1
    np.testing.assert_array_equal(loaded.get(range(5))["next_observations"][:, 0], np.arange(1, 6))


@pytest.mark.parametrize("k", [1, 4])
def test_zero_terminated_next_keeps_only_truncated_final_frames(k):
    """terminated_next_observations="zero": the side store holds the final frames of truncated
    episodes only (a terminated one's next frame reads as zeros), so each step costs one frame."""
    rng = np.random.default_rng(3)
    bufs = {m: ReplayBuffer(60, observation_shape=(5, 5), observation_dtype=np.uint8, num_envs=3, seed=0, frame_stack=k,
                            store_next_observations=False, terminated_next_observations=m) for m in ("keep", "zero")}
    start = [None] * 3
    for _ in range(9):  # 135 rows through 60 slots: wrap-around frees side entries
        obs, nxt, te, tr = env_like_rows(rng, 5, 3, (5, 5), np.uint8, start, p_done=0.4)
        for b in bufs.values():
            b.extend(obs, np.zeros(15, np.int64), np.zeros(15), nxt, te, tr)
    rows = bufs["keep"].get(np.arange(bufs["keep"].total_added - 60, bufs["keep"].total_added))
    newest = np.arange(60) >= 57  # each stream's newest row: its next frame waits in `pending`
    te, tr = rows["terminated"] & ~newest, rows["truncated"] & ~newest
    assert te.sum() > 3 and tr.sum() > 3
    assert bufs["keep"]._impl.side_rows == te.sum() + tr.sum()
    assert bufs["zero"]._impl.side_rows == tr.sum()
    got = bufs["zero"].get(np.arange(bufs["zero"].total_added - 60, bufs["zero"].total_added))
    newest_next = got["next_observations"][:, -1] if k > 1 else got["next_observations"]
    want_next = rows["next_observations"][:, -1] if k > 1 else rows["next_observations"]
    assert not newest_next[rows["terminated"]].any()
    np.testing.assert_array_equal(newest_next[~rows["terminated"]], want_next[~rows["terminated"]])
    np.testing.assert_array_equal(got["observations"], rows["observations"])


def test_zero_terminated_next_needs_the_compact_layout():
    with pytest.raises(ValueError, match="terminated_next_observations='zero' needs the compact layout"):
        ReplayBuffer(8, observation_shape=(2,), store_next_observations=True, terminated_next_observations="zero")
    assert not ReplayBuffer(8, observation_shape=(2,), terminated_next_observations="zero").store_next_observations


# ------------------------------------------------------------------ memory-mapped storage
def test_mmap_storage_same_api_saves_in_place_and_reopens(tmp_path):
    path = str(tmp_path / "mapped.frb")
    buf, model = filled_pixels(storage_path=path, episode_returns_gamma=0.9)
    assert buf.storage_path == path and os.path.exists(path)
    ref, _ = filled_pixels(episode_returns_gamma=0.9)
    a, b = buf.sample(16), ref.sample(16)
    for name in ("indices", "observations", "next_observations", "rewards"):
        assert_bits_equal(getattr(a, name), getattr(b, name), name)
    check_all_live(buf, model)
    before = os.stat(path)
    buf.save(path)  # in place: header and small arrays only
    after = os.stat(path)
    assert after.st_ino == before.st_ino  # the same file, not a new copy renamed over it
    for mapped in (True, False):
        other = ReplayBuffer.load(path, mmap=mapped)
        assert other.storage_path == (path if mapped else None)
        check_all_live(other, model)
        assert_bits_equal(other.sample(16).observations, _via_state_dict(ref).sample(16).observations,
                          f"mmap={mapped}")
        del other
    # a normally saved file cannot be mapped; the mapped file keeps being the storage after reopening
    plain = tmp_path / "plain.frb"
    ref.save(plain)
    with pytest.raises(ValueError, match="mmap=False"):
        ReplayBuffer.load(plain, mmap=True)
    reopened = ReplayBuffer.load(path, mmap=True)
    del buf
    obs = np.zeros((2, 6, 6), np.uint8)
    reopened.extend(obs, np.zeros(2, np.int64), np.zeros(2), obs, np.ones(2, bool), np.zeros(2, bool))
    reopened.save(path)
    again = ReplayBuffer.load(path, mmap=True)
    assert again.total_added == reopened.total_added
    assert_bits_equal(again.get([again.total_added - 1])["observations"], reopened.get([reopened.total_added - 1])[
        "observations"], "after reopen")


def test_mmap_damage_is_detected_and_existing_files_are_not_overwritten(tmp_path):
    path = str(tmp_path / "m.frb")
    buf, _ = filled_pixels(storage_path=path)
    buf.save(path)
    with pytest.raises(FileExistsError):
        ReplayBuffer(8, observation_shape=(2,), storage_path=path)
    buf.field("observations")  # a view of the mapped rows stays valid after the buffer is gone
    start = buf._layout.data_start
    del buf
    with open(path, "r+b") as f:
        f.seek(start + 3)
        byte = f.read(1)
        f.seek(start + 3)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ValueError, match="damaged"):
        ReplayBuffer.load(path, mmap=True)
    ReplayBuffer.load(path, mmap=True, verify=False)  # the caller's choice
    with pytest.raises(ValueError, match="damaged"):
        ReplayBuffer.load(path)


def test_mmap_buffers_are_not_limited_by_available_memory(tmp_path, monkeypatch):
    import fastrl.replay.buffer as fb

    monkeypatch.setattr(fb, "available_memory", lambda: 1 << 20)  # 1 MiB of RAM left
    with pytest.raises(ValueError, match="storage_path"):
        ReplayBuffer(10_000, observation_shape=(84, 84), observation_dtype=np.uint8)
    buf = ReplayBuffer(10_000, observation_shape=(84, 84), observation_dtype=np.uint8,
                       storage_path=tmp_path / "big.frb", frame_stack=4)
    assert buf.memory_usage()["observations"] == 10_000 * 84 * 84
    assert os.stat(tmp_path / "big.frb").st_blocks * 512 < 1 << 20  # sparse until rows are written


def test_prioritized_buffer_with_mmap_and_frame_stack_round_trip(tmp_path):
    path = str(tmp_path / "p.frb")
    buf = PrioritizedReplayBuffer(16, observation_shape=(3,), storage_path=path, frame_stack=2, seed=0)
    for i in range(20):
        o = np.full(3, i, np.float32)
        buf.add(o, 0, 1.0, o + 1, i % 7 == 6, False)
    buf.update_priorities([10, 11], [5.0, 0.0])
    buf.save(path)
    other = PrioritizedReplayBuffer.load(path, mmap=True)
    np.testing.assert_array_equal(other.priorities([10, 11]), buf.priorities([10, 11]))
    a, b = buf.sample(8, beta=0.4), other.sample(8, beta=0.4)
    assert_bits_equal(a.next_observations, b.next_observations, "next_observations")
    assert "priority_trees" in other.memory_usage()


# ------------------------------------------------------------------ memory report
def test_pixel_frame_stacks_take_under_a_seventh_of_the_naive_layout():
    cap = 2_000
    compact, _ = filled_pixels(), None
    del compact
    buf = ReplayBuffer(cap, observation_shape=(84, 84), observation_dtype=np.uint8, frame_stack=4)
    naive = ReplayBuffer(cap, observation_shape=(4, 84, 84), observation_dtype=np.uint8,
                         store_next_observations=True)
    rng = np.random.default_rng(0)
    start = [None]
    obs, nxt, te, tr = env_like_rows(rng, cap, 1, (84, 84), np.uint8, start, p_done=0.002)
    buf.extend(obs, np.zeros(cap, np.int64), np.zeros(cap), nxt, te, tr)
    per_row = buf.memory_bytes() / cap
    assert per_row <= naive.memory_bytes() / cap / 7
    assert per_row * 1_000_000 < 8e9  # a million 84x84 pixel transitions in under 8 GB
    usage = buf.memory_usage()
    assert "next_observations" not in usage and usage["observations"] == cap * 84 * 84


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kw, err, match", [
    ({"frame_stack": 0}, ValueError, "frame_stack"),
    ({"frame_stack": 2.0}, TypeError, "frame_stack"),
    ({"frame_stack": True}, TypeError, "frame_stack"),
    ({"frame_padding": "edge"}, ValueError, "frame_padding"),
    ({"store_next_observations": "no"}, TypeError, "store_next_observations"),
    ({"terminated_next_observations": "drop"}, ValueError, "terminated_next_observations must be 'keep' or 'zero'"),
])
def test_bad_options(kw, err, match):
    with pytest.raises(err, match=match):
        ReplayBuffer(8, observation_shape=(2,), **kw)


def test_bad_observations_with_frame_stack_change_nothing():
    buf = ReplayBuffer(8, observation_shape=(2,), frame_stack=3, seed=0)
    buf.add(np.zeros(2, np.float32), 0, 0.0, np.ones(2, np.float32), False, False)
    snap = buf.state_dict()
    for bad in (np.zeros((2, 2), np.float32), np.zeros((3, 3), np.float32), np.zeros(3, np.float32)):
        with pytest.raises(ValueError, match="observations"):
            buf.add(bad, 0, 0.0, np.ones(2, np.float32), False, False)
    with pytest.raises(ValueError, match="next_observations"):
        buf.add(np.zeros(2, np.float32), 0, 0.0, np.ones((2, 2), np.float32), False, False)
    with pytest.raises(ValueError, match="no storage"):
        buf.field("next_observations")
    after = buf.state_dict()
    assert after["state"] == snap["state"] and after["arrays"].keys() == snap["arrays"].keys()
    for name, v in snap["arrays"].items():
        assert_bits_equal(after["arrays"][name], v, name)


def test_auto_layout_stores_pixels_once_and_small_vectors_twice():
    assert not ReplayBuffer(8, observation_shape=(4, 84, 84), observation_dtype=np.uint8, seed=0).store_next_observations
    assert not ReplayBuffer(8, observation_shape=(2,), frame_stack=4, seed=0).store_next_observations
    assert ReplayBuffer(8, observation_shape=(8,), seed=0).store_next_observations
    assert not ReplayBuffer(8, observation_shape=(8,), store_next_observations=False, seed=0).store_next_observations



@pytest.mark.parametrize("prioritized", [False, True])
def test_one_step_stacks_are_views_of_one_window_array(prioritized):
    """sample() and sample_into an empty_batch copy k + 1 frames per row: observations = w[:, :k],
    next_observations = w[:, 1:] of one window array, with the values of the per-stack gather
    (get); n-step batches stay separate contiguous arrays, and a window batch refuses n-step."""
    cls = PrioritizedReplayBuffer if prioritized else ReplayBuffer
    k, shape = 4, (3, 5)
    buf = cls(40, observation_shape=shape, observation_dtype=np.uint8, num_envs=2, seed=1, frame_stack=k)
    rng = np.random.default_rng(0)
    start = [None, None]
    obs, nxt, te, tr = env_like_rows(rng, 60, 2, shape, np.uint8, start, p_jump=0.2)
    buf.extend(obs, np.zeros(120, np.int64), np.ones(120, np.float32), nxt, te, tr)
    b = buf.sample(64)
    frame = int(np.prod(shape))
    assert b.next_observations.data_ptr() == b.observations.data_ptr() + frame
    assert b.observations.stride() == ((k + 1) * frame, frame, shape[1], 1) == b.next_observations.stride()
    assert not b.observations.is_contiguous()
    shared = b.next_observations[:, : k - 1]  # the same memory as observations[:, 1:]
    assert shared.data_ptr() == b.observations[:, 1:].data_ptr() and shared.stride() == b.observations[:, 1:].stride()
    assert torch.equal(shared, b.observations[:, 1:])
    got = buf.get(b.indices.numpy())
    assert np.array_equal(got["observations"], b.observations.numpy())
    assert np.array_equal(got["next_observations"], b.next_observations.numpy())
    # one full row of the window is k + 1 distinct reads: padding and episode ends included
    assert any(bool(b.terminated[j]) or bool(b.truncated[j]) for j in range(64))
    n = buf.sample(64, n_step=3, gamma=0.9)
    assert n.observations.is_contiguous() and n.next_observations.is_contiguous()
    assert n.next_observations.data_ptr() != n.observations.data_ptr() + frame
    out = buf.empty_batch(16)
    assert out.next_observations.data_ptr() == out.observations.data_ptr() + frame
    buf.sample_into(out)  # registered with the buffer: validated once
    got = buf.get(out.indices.numpy())
    assert np.array_equal(got["observations"], out.observations.numpy())
    assert np.array_equal(got["next_observations"], out.next_observations.numpy())
    # a window pair made by hand (not registered: validated at the call) is accepted too
    w = torch.zeros(16, k + 1, *shape, dtype=torch.uint8)
    mine = out._replace(observations=w[:, :k], next_observations=w[:, 1:])
    buf.sample_into(mine)
    assert np.array_equal(buf.get(mine.indices.numpy())["next_observations"], w[:, 1:].numpy())
    with buf.prefetcher(16) as pf:  # the CPU prefetcher's slots are window batches too
        for _ in range(3):
            x = pf.next()
            assert x.next_observations.data_ptr() == x.observations.data_ptr() + frame
            got = buf.get(x.indices.numpy())
            assert np.array_equal(got["observations"], x.observations.numpy())
            assert np.array_equal(got["next_observations"], x.next_observations.numpy())
    nb = buf.empty_batch(16, discounts=True)
    assert nb.observations.is_contiguous() and nb.next_observations.is_contiguous()
    buf.sample_into(nb, n_step=3, gamma=0.9)
    before = w.clone()
    with pytest.raises(ValueError, match="1-step batches only"):
        buf.sample_into(mine._replace(discounts=torch.zeros(16)), n_step=3, gamma=0.9)
    assert torch.equal(w, before)


def test_overlapping_observation_outputs_are_refused_and_change_nothing():
    """A next_observations output one frame after the observations' would read as a window
    request: sample_into refuses it before drawing anything."""
    k, shape = 4, (2, 3)
    buf = ReplayBuffer(20, observation_shape=shape, observation_dtype=np.uint8, seed=3, frame_stack=k)
    twin = ReplayBuffer(20, observation_shape=shape, observation_dtype=np.uint8, seed=3, frame_stack=k)
    for t in range(25):
        for b in (buf, twin):
            b.add(np.full(shape, t, np.uint8), 0, 1.0, np.full(shape, t + 1, np.uint8), t % 7 == 6, False)
    out = buf.empty_batch(8)
    frame = int(np.prod(shape))
    block = torch.zeros(8 * k * frame + frame, dtype=torch.uint8)
    bad = out._replace(observations=block[: 8 * k * frame].view(8, k, *shape),
                       next_observations=block[frame:].view(8, k, *shape))
    with pytest.raises(ValueError, match="observations out and next_observations out overlap"):
        buf.sample_into(bad)
    assert not block.any()
    assert torch.equal(buf.sample(8).indices, twin.sample(8).indices)  # the generator did not move
