"""ReplayBuffer behaviour: construction, casting, errors, zero-copy, sampling statistics, files, envs."""

from __future__ import annotations

import gc
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from reference import snapshot

import fastrl
from fastrl import ReplayBuffer


SAME_STEP = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}


def filled(n=10, capacity=16, **kw):
    buf = ReplayBuffer(capacity, observation_shape=(4,), seed=kw.pop("seed", 0), **kw)
    for i in range(n):
        o = np.full(4, i, np.float32)
        buf.add(o, i % 3, float(i), o + 1, i % 5 == 4, False)
    return buf


def assert_unchanged(buf, snap):
    state, arrays = snapshot(buf)
    assert state == snap[0]
    for k, v in snap[1].items():
        np.testing.assert_array_equal(arrays[k], v)


# ------------------------------------------------------------------ basics
def test_add_sample_roundtrip_values_and_types():
    buf = filled(5)
    assert len(buf) == 5 and buf.capacity == 16
    b = buf.sample(64)
    assert isinstance(b, fastrl.Batch)
    assert b.observations.dtype == torch.float32 and b.observations.shape == (64, 4)
    assert b.actions.dtype == torch.int64 and b.rewards.dtype == torch.float32
    assert b.terminated.dtype == torch.bool and b.indices.dtype == torch.int64
    i = b.indices
    torch.testing.assert_close(b.observations[:, 0], i.float())
    torch.testing.assert_close(b.next_observations[:, 0], i.float() + 1)
    torch.testing.assert_close(b.rewards, i.float())
    assert torch.equal(b.actions, i % 3)
    assert torch.equal(b.terminated, i % 5 == 4)


def test_capacity_must_be_a_multiple_of_num_envs():
    # it was rounded down without a word (50 with 3 envs kept 48 rows)
    with pytest.raises(ValueError, match=r"capacity=10 must be a multiple of num_envs=3.*use 9 or 12"):
        ReplayBuffer(10, observation_shape=(2,), num_envs=3, seed=0)
    with pytest.raises(ValueError, match=r"capacity=50 .* num_envs=3.*use 48 or 51"):
        fastrl.PrioritizedReplayBuffer(50, observation_shape=(2,), num_envs=3, seed=0)
    with pytest.raises(ValueError, match=r"capacity=2 .* num_envs=3.*use 3"):
        ReplayBuffer(2, num_envs=3)
    assert ReplayBuffer(51, observation_shape=(2,), num_envs=3, seed=0).capacity == 51


def test_extend_rows_interleave_streams_in_time_order():
    buf = ReplayBuffer(12, observation_shape=(1,), num_envs=2, seed=0)
    for t in range(8):  # one vector step at a time; env e observes 10*e + t
        obs = np.array([[t], [10 + t]], np.float32)
        buf.extend(obs, np.array([0, 1]), np.zeros(2), obs + 1, np.zeros(2, bool), np.zeros(2, bool))
    assert len(buf) == 12 and buf.total_added == 16
    ids = np.arange(4, 16)
    obs = buf.get(ids)["observations"][:, 0]
    np.testing.assert_array_equal(obs, np.where(ids % 2 == 0, ids // 2, 10 + ids // 2))


def test_extend_many_rows_single_stream_and_more_than_capacity():
    buf = ReplayBuffer(100, observation_shape=(2,), seed=0)
    obs = np.arange(500, dtype=np.float32).reshape(250, 2)
    buf.extend(obs, np.zeros(250, np.int64), np.ones(250), obs, np.zeros(250, bool), np.zeros(250, bool))
    assert len(buf) == 100 and buf.total_added == 250
    np.testing.assert_array_equal(buf.get([150])["observations"][0], obs[150])
    np.testing.assert_array_equal(buf.get([249])["observations"][0], obs[249])


def test_dtypes_and_extra_fields():
    buf = ReplayBuffer(8, observation_shape=(2, 2), observation_dtype=np.uint8, action_shape=(2,),
                       action_dtype=np.float64, seed=0, extra_fields={"h": ((3,), np.int32), "ok": ((), bool)})
    buf.add(np.ones((2, 2), np.uint8), [0.5, -0.5], 1, np.zeros((2, 2), np.uint8), False, True,
            h=[1, 2, 3], ok=True)
    b = buf.sample(2)
    assert b.observations.dtype == torch.uint8 and b.actions.dtype == torch.float64
    assert b.extras["h"].dtype == torch.int32 and b.extras["ok"].dtype == torch.bool
    assert b.extras["h"][0].tolist() == [1, 2, 3] and b.truncated.all()


def test_casting_policy():
    buf = ReplayBuffer(8, observation_shape=(2,), action_dtype=np.int32, seed=0)
    buf.add(np.array([1.5, 2.5]), np.int64(3), np.float64(0.25), [1, 2], np.bool_(True), 0)  # ok
    b = buf.get([0])
    assert b["observations"].dtype == np.float32 and b["actions"][0] == 3 and b["terminated"][0]
    snap = snapshot(buf)
    with pytest.raises(ValueError, match="actions"):
        buf.add(np.zeros(2), 2**40, 0.0, np.zeros(2), False, False)  # does not fit int32
    with pytest.raises(TypeError, match="actions"):
        buf.add(np.zeros(2), 1.5, 0.0, np.zeros(2), False, False)  # float into an int field
    with pytest.raises(ValueError, match="terminated"):
        buf.add(np.zeros(2), 1, 0.0, np.zeros(2), 2, False)  # bool field takes 0 / 1 only
    with pytest.raises(TypeError, match="observations"):
        buf.add(np.array(["a", "b"]), 1, 0.0, np.zeros(2), False, False)
    with pytest.raises(TypeError, match="observations"):
        buf.add(np.zeros(2) + 1j, 1, 0.0, np.zeros(2), False, False)  # complex
    assert_unchanged(buf, snap)


def test_byte_swapped_strided_readonly_and_torch_inputs():
    buf = ReplayBuffer(8, observation_shape=(3,), seed=0)
    big = np.arange(6, dtype=">f8")[::2]  # byte-swapped and strided
    ro = np.array([7, 8, 9], np.float32)
    ro.flags.writeable = False
    buf.add(big, 1, 0.0, ro, False, False)
    buf.add(torch.tensor([1.0, 2.0, 3.0]), torch.tensor(2), torch.tensor(0.5), ro, torch.tensor(True), False)
    got = buf.get([0, 1])
    np.testing.assert_array_equal(got["observations"], [[0, 2, 4], [1, 2, 3]])
    np.testing.assert_array_equal(got["actions"], [1, 2])
    assert got["terminated"].tolist() == [False, True]


# ------------------------------------------------------------------ bad input leaves the buffer unchanged
BAD_ADDS = [
    ((np.zeros(3), 1, 0.0, np.zeros(4), False, False), ValueError, "observations"),
    ((np.zeros(4), 1, 0.0, np.zeros((4, 1)), False, False), ValueError, "next_observations"),
    ((np.zeros(4), [1, 2], 0.0, np.zeros(4), False, False), ValueError, "actions"),
    ((np.zeros(4), 1, "x", np.zeros(4), False, False), TypeError, "rewards"),
    ((np.zeros(4), 1, None, np.zeros(4), False, False), TypeError, "rewards"),
    ((np.zeros(4), 1, 0.0, np.zeros(4), 0.5, False), TypeError, "terminated"),
    ((np.zeros(4), 1, 0.0, np.zeros(4), False, object()), TypeError, "truncated"),
    ((np.zeros(4), 2**70, 0.0, np.zeros(4), False, False), ValueError, "actions"),
    ((np.zeros(4), -1, 0.0, np.zeros(4, np.float32), False, False), None, None),  # valid: negative int64
]


@pytest.mark.parametrize("args,exc,match", BAD_ADDS)
def test_bad_add_raises_and_changes_nothing(args, exc, match):
    buf = filled(20)  # wrapped
    snap = snapshot(buf)
    if exc is None:
        buf.add(*args)
        return
    with pytest.raises(exc, match=match):
        buf.add(*args)
    assert_unchanged(buf, snap)


def test_bad_extend_raises_and_changes_nothing():
    buf = ReplayBuffer(8, observation_shape=(2,), num_envs=2, seed=0)
    z = np.zeros((2, 2), np.float32)
    buf.extend(z, [0, 1], [0.0, 0.0], z, [False, False], [False, False])
    snap = snapshot(buf)
    cases = [
        ((np.zeros((3, 2)), [0, 1, 2], [0.0] * 3, np.zeros((3, 2)), [False] * 3, [False] * 3), ValueError, "multiple of num_envs"),
        ((z, [0, 1, 2], [0.0, 0.0], z, [False, False], [False, False]), ValueError, "actions"),
        ((z, [0, 1], [0.0, 0.0], z, [False, 3], [False, False]), ValueError, "terminated"),
        ((z, [0, 1], 0.0, z, [False, False], [False, False]), ValueError, "rewards"),
        ((np.zeros(2), [0, 1], [0.0, 0.0], z, [False, False], [False, False]), ValueError, "observations"),
    ]
    for args, exc, match in cases:
        with pytest.raises(exc, match=match):
            buf.extend(*args)
        assert_unchanged(buf, snap)
    with pytest.raises(ValueError, match="extend"):
        buf.add(np.zeros(2), 0, 0.0, np.zeros(2), False, False)  # add is for num_envs == 1
    with pytest.raises(ValueError, match="unknown"):
        buf.extend(z, [0, 1], [0.0, 0.0], z, [False, False], [False, False], nope=[1, 2])
    assert_unchanged(buf, snap)


@pytest.mark.parametrize("kwargs,exc", [
    ({"capacity": 0}, ValueError), ({"capacity": -5}, ValueError), ({"capacity": 2.5}, TypeError),
    ({"capacity": 4, "num_envs": 0}, ValueError), ({"capacity": 2, "num_envs": 3}, ValueError),
    ({"capacity": 4, "observation_shape": (-1,)}, ValueError), ({"capacity": 4, "observation_shape": "ab"}, ValueError),
    ({"capacity": 4, "observation_dtype": np.complex64}, TypeError), ({"capacity": 4, "action_dtype": "nope"}, TypeError),
    ({"capacity": 4, "extra_fields": {"rewards": ((), float)}}, ValueError),
    ({"capacity": 4, "extra_fields": {"x": (1, 2, 3)}}, TypeError), ({"capacity": 4, "seed": -1}, ValueError),
    ({"capacity": 4, "seed": "s"}, TypeError),
])
def test_bad_construction(kwargs, exc):
    with pytest.raises(exc):
        ReplayBuffer(**kwargs)


def test_bad_sample_calls_change_nothing():
    empty = ReplayBuffer(4, seed=0)
    with pytest.raises(ValueError, match="empty"):
        empty.sample(1)
    buf = filled(5)
    snap = snapshot(buf)
    with pytest.raises(ValueError, match="batch_size"):
        buf.sample(6, replace=False)
    with pytest.raises(ValueError, match="batch_size"):
        buf.sample(0)
    with pytest.raises(TypeError, match="batch_size"):
        buf.sample(2.0)
    with pytest.raises(IndexError):
        buf.get([5])
    with pytest.raises(KeyError):
        buf.field("nope")
    assert_unchanged(buf, snap)  # generator state included: failed calls drew nothing


def test_sample_into_refuses_conversion_and_wrong_shapes():
    buf = filled(5)
    out = buf.empty_batch(4)
    bad_dtype = out._replace(observations=torch.zeros(4, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="observations"):
        buf.sample_into(bad_dtype)
    bad_shape = out._replace(rewards=torch.zeros(5))
    with pytest.raises(ValueError, match="rewards"):
        buf.sample_into(bad_shape)
    noncontig = out._replace(observations=torch.zeros(4, 8)[:, ::2])
    with pytest.raises(ValueError, match="contiguous"):
        buf.sample_into(noncontig)
    with pytest.raises(TypeError):
        buf.sample_into({"observations": 1})
    snap = snapshot(buf)
    assert_unchanged(buf, snap)


# ------------------------------------------------------------------ sampling statistics
def test_uniform_frequencies_chi_square():
    n, draws = 50, 200_000
    buf = filled(n, capacity=n, seed=123)
    ids = np.concatenate([buf.sample(1000).indices.numpy() for _ in range(draws // 1000)])
    counts = np.bincount(ids, minlength=n)
    expected = draws / n
    chi2 = ((counts - expected) ** 2 / expected).sum()
    # 49 degrees of freedom: P(chi2 > 94.5) ~ 1e-4 under uniformity
    assert chi2 < 94.5, chi2
    assert counts.min() > 0


def test_without_replacement_is_unique_and_covers_everything():
    buf = filled(30, capacity=30, seed=5)
    for b in (1, 7, 30):
        ids = buf.sample(b, replace=False).indices.numpy()
        assert len(np.unique(ids)) == b
    assert sorted(buf.sample(30, replace=False).indices.tolist()) == list(range(30))


def test_same_seed_same_batches_and_state_dict_restores_generator():
    a, b = filled(12, seed=9), filled(12, seed=9)
    for _ in range(3):
        assert torch.equal(a.sample(8).indices, b.sample(8).indices)
    c = filled(12, seed=10)
    assert not torch.equal(filled(12, seed=9).sample(32).indices, c.sample(32).indices)
    sd = a.state_dict()
    nxt = a.sample(16).indices
    d = ReplayBuffer(16, observation_shape=(4,), seed=0)
    d.load_state_dict(sd)
    assert torch.equal(d.sample(16).indices, nxt)


# ------------------------------------------------------------------ zero-copy and lifetimes
def test_sample_tensors_share_memory_with_the_arrays_cpp_filled():
    buf = filled(5)
    raw = buf._impl.sample(8, True)
    t = torch.from_numpy(raw[1])
    assert np.shares_memory(t.numpy(), raw[1])
    b = buf.sample(8)
    arr = b.observations.numpy()
    assert arr.base is not None or arr.flags.owndata  # memory owned by the array C++ filled


def test_field_views_share_storage_are_read_only_and_outlive_the_buffer():
    buf = filled(5)
    v = buf.field("observations")
    v2 = buf.field("observations")
    assert np.shares_memory(v, v2)
    assert not v.flags.writeable
    with pytest.raises(ValueError):
        v[0] = 1
    o = np.full(4, 42, np.float32)
    buf.add(o, 0, 0.0, o, False, False)  # writes slot 5
    assert v[5, 0] == 42  # a view, not a copy
    del buf, v2
    gc.collect()
    assert v[5, 0] == 42 and v.sum() > 0  # the view kept the storage alive


def test_sample_into_writes_in_place():
    buf = filled(5)
    out = buf.empty_batch(16)
    ptr = out.observations.data_ptr()
    buf.sample_into(out)
    assert out.observations.data_ptr() == ptr
    torch.testing.assert_close(out.observations[:, 0], out.indices.float())
    user = fastrl.Batch(*(torch.zeros_like(t) for t in out[:7]), {})
    buf.sample_into(user)
    torch.testing.assert_close(user.observations[:, 0], user.indices.float())


# ------------------------------------------------------------------ files
def test_save_load_resumes_identically(tmp_path):
    buf = filled(20, extra_fields={"x": ((2,), np.int32)}) if False else filled(20)
    p = tmp_path / "b.frb"
    buf.save(p)
    other = ReplayBuffer.load(p)
    assert len(other) == len(buf) and other.total_added == buf.total_added
    for _ in range(3):
        x, y = buf.sample(10), other.sample(10)
        for a, b in zip(x[:7], y[:7]):
            assert torch.equal(a, b)
    assert not (tmp_path / "b.frb.tmp").exists()


def test_damaged_files_get_clear_errors(tmp_path):
    buf = filled(20)
    p = tmp_path / "b.frb"
    buf.save(p)
    data = p.read_bytes()
    import struct
    hlen = struct.unpack_from("<8sQI", data)[1]
    start = -(-(20 + hlen) // 64) * 64 + 5  # a byte inside the first array
    cases = {
        "truncated_header": data[:30],
        "truncated_data": data[:-7],
        "empty": b"",
        "bad_magic": b"X" + data[1:],
        "flipped_data_byte": data[:start] + bytes([data[start] ^ 0xFF]) + data[start + 1:],
        "flipped_header_byte": data[:40] + bytes([data[40] ^ 0x01]) + data[41:],
    }
    for name, blob in cases.items():
        q = tmp_path / f"{name}.frb"
        q.write_bytes(blob)
        with pytest.raises(ValueError):
            ReplayBuffer.load(q)
    # a valid file of another schema into load_state_dict
    other = ReplayBuffer(16, observation_shape=(5,), seed=0)
    with pytest.raises(ValueError, match="schema"):
        other.load_state_dict(buf.state_dict())


def test_wrong_version_is_rejected(tmp_path):
    import json, struct, zlib
    buf = filled(3)
    p = tmp_path / "b.frb"
    buf.save(p)
    data = bytearray(p.read_bytes())
    magic, hlen, _ = struct.unpack_from("<8sQI", data)
    header = json.loads(data[20:20 + hlen])
    header["version"] = 2
    body = json.dumps(header, sort_keys=True).encode()
    body = body.ljust(hlen)[:hlen] if len(body) <= hlen else body
    assert len(body) == hlen
    data[20:20 + hlen] = body
    struct.pack_into("<8sQI", data, 0, magic, hlen, zlib.crc32(body))
    p.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="version"):
        ReplayBuffer.load(p)


# ------------------------------------------------------------------ gymnasium
def test_from_env_single_and_vector():
    env = gym.make("CartPole-v1")
    buf = ReplayBuffer.from_env(env, 100, seed=0)
    assert buf.fields[0].shape == (4,) and buf.fields[0].dtype == "float32"
    assert buf.fields[1].shape == () and buf.fields[1].dtype == "int64" and buf.num_envs == 1
    venv = gym.make_vec("Pendulum-v1", num_envs=3, vectorization_mode="sync", vector_kwargs=SAME_STEP)
    vbuf = ReplayBuffer.from_env(venv, 99, seed=0)
    assert vbuf.num_envs == 3 and vbuf.fields[1].shape == (1,) and vbuf.fields[1].dtype == "float32"
    with pytest.raises(TypeError):
        ReplayBuffer.from_env(object(), 10)
    with pytest.raises(TypeError, match="num_envs"):
        ReplayBuffer.from_env(env, 10, num_envs=2)


def test_vector_env_stores_true_final_observation_of_truncated_episodes():
    from gymnasium.vector import AutoresetMode

    n = 2
    venv = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="sync", max_episode_steps=7,
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    buf = ReplayBuffer.from_env(venv, 1000, seed=0)
    obs, _ = venv.reset(seed=3)
    saw_truncation = False
    for _ in range(40):
        actions = np.zeros(n, np.int64)  # push left: episodes end by time limit or by falling
        next_obs, rew, term, trunc, infos = venv.step(actions)
        real_next = fastrl.final_observations(next_obs, term, trunc, infos)
        buf.extend(obs, actions, rew, real_next, term, trunc)
        for i in np.flatnonzero(term | trunc):
            saw_truncation |= bool(trunc[i])
            assert not np.array_equal(real_next[i], next_obs[i])  # the reset obs was replaced
            np.testing.assert_array_equal(real_next[i], infos["final_obs"][i])
        obs = next_obs
    assert saw_truncation
    # the stored successor of each non-final step is the next stored observation of the same stream
    ids = np.arange(buf.total_added - len(buf), buf.total_added - n)
    rows, nxt = buf.get(ids), buf.get(ids + n)
    cont = ~(rows["terminated"] | rows["truncated"])
    np.testing.assert_array_equal(rows["next_observations"][cont], nxt["observations"][cont])


def test_final_observations_requires_same_step_mode():
    with pytest.raises(ValueError, match="SAME_STEP"):
        fastrl.final_observations(np.zeros((2, 3)), np.array([True, False]), np.array([False, False]), {})


def test_from_env_refuses_next_step_autoreset():
    """gymnasium's default NEXT_STEP mode returns a reset step after every episode end; storing
    its steps as returned stored fake 'final observation -> reset observation' rows."""
    from gymnasium.vector import AutoresetMode

    venv = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    with pytest.raises(ValueError, match=r"NEXT_STEP.*autoreset_mode.*SAME_STEP"):
        ReplayBuffer.from_env(venv, 100)
    with pytest.raises(ValueError, match="SAME_STEP"):
        fastrl.PrioritizedReplayBuffer.from_env(venv, 100)
    disabled = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync",
                            vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED})
    assert ReplayBuffer.from_env(disabled, 100).num_envs == 2


def test_final_observations_of_each_autoreset_mode():
    from gymnasium.vector import AutoresetMode

    n = 2
    for mode in (AutoresetMode.DISABLED, "Disabled", "DISABLED"):
        venv = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="sync", max_episode_steps=5,
                            vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED})
        venv.reset(seed=0)
        for _ in range(5):
            next_obs, _, term, trunc, infos = venv.step(np.zeros(n, np.int64))
        assert (term | trunc).all() and "final_obs" not in infos
        # next_obs already is the true final observation: returned as it is (it raised before)
        assert fastrl.final_observations(next_obs, term, trunc, infos, autoreset_mode=mode) is next_obs
    with pytest.raises(ValueError, match="NEXT_STEP.*SAME_STEP"):
        fastrl.final_observations(next_obs, term, trunc, infos, autoreset_mode=AutoresetMode.NEXT_STEP)
    with pytest.raises(ValueError, match="autoreset_mode"):
        fastrl.final_observations(next_obs, term, trunc, infos, autoreset_mode="sometimes")
    same = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="sync", max_episode_steps=5,
                        vector_kwargs=SAME_STEP)
    same.reset(seed=0)
    for _ in range(5):
        next_obs, _, term, trunc, infos = same.step(np.zeros(n, np.int64))
    got = fastrl.final_observations(next_obs, term, trunc, infos, autoreset_mode=same.metadata["autoreset_mode"])
    np.testing.assert_array_equal(got, np.stack(infos["final_obs"]))


def test_import_replay_pulls_neither_gymnasium_nor_higher_layers():
    import subprocess
    import sys

    code = ("import sys, fastrl.replay; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'gymnasium' "
            "or m.startswith(('fastrl.agents', 'fastrl.training', 'fastrl.experiments'))))")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "[]", out.stdout


# ------------------------------------------------------------------ API: one call for both buffers, documented formulas
def test_documented_target_formula_works_on_a_sampled_batch():
    """The Batch docstring's target, evaluated as written on a real batch (bool ``terminated``)."""
    buf = filled(40, capacity=64)
    b = buf.sample(32, n_step=3, gamma=0.9)
    assert b.terminated.dtype == torch.bool and b.terminated.any()
    rewards, discounts, terminated, next_observations = b.rewards, b.discounts, b.terminated, b.next_observations
    V = lambda obs: obs.sum(1)  # noqa: E731 - any value function
    target = rewards + discounts * ~terminated * V(next_observations)
    expected = torch.where(terminated, rewards, rewards + discounts * V(next_observations))
    torch.testing.assert_close(target, expected)
    gamma, one = 0.9, buf.sample(32)
    target1 = one.rewards + gamma * ~one.terminated * V(one.next_observations)
    torch.testing.assert_close(target1, torch.where(one.terminated, one.rewards,
                                                    one.rewards + gamma * V(one.next_observations)))
    doc = fastrl.Batch.__doc__
    assert "rewards + discounts * ~terminated * V(next_observations)" in " ".join(doc.split())
    with pytest.raises(RuntimeError):  # what the docs said before
        rewards + discounts * (1 - terminated) * V(next_observations)


def test_uniform_buffer_takes_beta_like_the_prioritized_one():
    a, b = filled(30, capacity=32, seed=7), filled(30, capacity=32, seed=7)
    x, y = a.sample(16), b.sample(16, 0.4)  # positional, as PrioritizedReplayBuffer.sample(16, 0.4)
    assert y.weights is None and torch.equal(x.indices, y.indices)  # the same draws: beta changes nothing
    y = b.sample(16, beta=0.5, n_step=2, gamma=0.9)
    assert torch.equal(a.sample(16, n_step=2, gamma=0.9).indices, y.indices) and y.weights is None
    out_a, out_b = a.empty_batch(8), b.empty_batch(8)
    a.sample_into(out_a)
    b.sample_into(out_b, beta=0.4)
    assert torch.equal(out_a.indices, out_b.indices) and out_b.weights is None
    for bad, exc in ((-0.1, ValueError), (float("nan"), ValueError), (True, TypeError), ("0.4", TypeError)):
        with pytest.raises(exc, match="beta"):
            b.sample(4, bad)
        with pytest.raises(exc, match="beta"):
            b.sample_into(out_b, beta=bad)
        with pytest.raises(exc, match="beta"):
            b.prefetcher(4, bad)
    with a.prefetcher(8) as pa, b.prefetcher(8, 0.4) as pb:
        for step in range(3):
            x, y = pa.next(), pb.next(beta=0.4 + step / 10)
            assert torch.equal(x.indices, y.indices) and y.weights is None


# ------------------------------------------------------------------ CUDA
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sample_and_sample_into():
    buf = filled(50, capacity=64)
    b = buf.sample(32, device="cuda")
    assert b.observations.is_cuda
    torch.testing.assert_close(b.observations[:, 0], b.indices.float())
    out = buf.empty_batch(32, device="cuda")
    for _ in range(5):
        buf.sample_into(out)
        torch.cuda.synchronize()
        torch.testing.assert_close(out.observations[:, 0], out.indices.float())
    pinned = buf.empty_batch(32, pin_memory=True)
    assert pinned.observations.is_pinned()
    buf.sample_into(pinned)


def test_ids_beyond_32_bits():
    buf = ReplayBuffer(6, observation_shape=(1,), seed=0)
    start = 2**33 + 5
    buf._impl.set_state(start - start % 1, buf._impl.rng_state())
    for i in range(8):
        o = np.array([i], np.float32)
        buf.add(o, i, 0.0, o, False, False)
    assert buf.total_added == start + 8 and len(buf) == 6
    b = buf.sample(64)
    assert int(b.indices.min()) >= start + 2
    torch.testing.assert_close(b.observations[:, 0], (b.indices - start).float())
    assert buf.get([start + 7])["actions"][0] == 7


def test_capacity_beyond_available_memory_fails_at_construction():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(2**40, observation_shape=(84, 84), observation_dtype=np.uint8, seed=0)
