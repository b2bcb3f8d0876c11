"""Damaged buffer files: truncated at random offsets or with random bytes flipped, a load either
raises ValueError or returns exactly what was saved (a flip in alignment padding changes nothing)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

import fastrl


def saved(tmp_path_factory):
    buf = fastrl.ReplayBuffer(12, observation_shape=(3,), seed=4, extra_fields={"e": ((2,), np.int32)})
    rng = np.random.default_rng(0)
    for i in range(17):
        buf.add(rng.normal(size=3).astype(np.float32), i, float(i), rng.normal(size=3), i % 4 == 0, i % 7 == 0,
                e=[i, -i])
    p = tmp_path_factory.mktemp("f") / "b.frb"
    buf.save(p)
    return buf, p.read_bytes()


def damaged(tmp_path_factory, data, blob, name):
    """``blob`` truncated at a random offset and/or with 1-4 random bytes flipped, written to a file."""
    mode = data.draw(st.sampled_from(["truncate", "flip", "both"]))
    b = bytearray(blob)
    if mode in ("flip", "both"):
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(b) - 1))
            b[i] ^= data.draw(st.integers(1, 255))
    if mode in ("truncate", "both"):
        b = b[: data.draw(st.integers(0, len(b) - 1))]
    p = tmp_path_factory.mktemp("d") / name
    p.write_bytes(bytes(b))
    return p


def same(a, b):
    x, y = a.state_dict(), b.state_dict()
    return x["state"] == y["state"] and all(np.array_equal(x["arrays"][k], y["arrays"][k]) for k in x["arrays"])


@settings(max_examples=150)
@given(data=st.data())
def test_truncated_and_flipped_files(tmp_path_factory, data):
    buf, blob = saved(tmp_path_factory)
    p = damaged(tmp_path_factory, data, blob, "damaged.frb")
    try:
        loaded = fastrl.ReplayBuffer.load(p)
    except ValueError:
        return
    assert same(loaded, buf), "a damaged file loaded with different contents"


# ------------------------------------------------------------------ checkpoints
def _checkpoint_blob(tmp_path_factory):
    import torch

    from fastrl.training import checkpoint

    g = torch.Generator().manual_seed(0)
    state = {"algo": "dqn", "config": {"env_id": "CartPole-v1", "seed": 3, "hidden_sizes": [4, 4]},
             "agent": {"q": {"w": torch.randn(4, 4, generator=g), "b": torch.randn(4, generator=g)},
                       "steps": 17},
             "trainer": {"env_steps": 100, "evals": [{"step": 50, "mean": 9.5}]}}
    p = tmp_path_factory.mktemp("c") / "ok.pt"
    checkpoint.save(p, state)
    return checkpoint.load(p), p.read_bytes()


def _same_state(a, b):
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@settings(max_examples=100)
@given(data=st.data())
def test_damaged_checkpoints_raise_or_load_exactly(tmp_path_factory, data):
    """Checkpoints (torch zip files plus a BLAKE2 digest) truncated at random offsets or with random
    bytes flipped: CheckpointError (a ValueError), never a crash or a different state."""
    from fastrl.training import checkpoint

    state, blob = _checkpoint_blob(tmp_path_factory)
    p = damaged(tmp_path_factory, data, blob, "damaged.pt")
    try:
        loaded = checkpoint.load(p)
    except checkpoint.CheckpointError:
        return
    assert _same_state(loaded, state), "a damaged checkpoint loaded with different contents"


def test_checkpoint_wrong_version_and_schema(tmp_path):
    import pytest
    import torch

    from fastrl.training import checkpoint
    from fastrl.config import ConfigError
    from fastrl.training.trainer import Trainer

    state = {"format": checkpoint.FORMAT, "version": checkpoint.VERSION + 1, "algo": "dqn"}
    state["digest"] = checkpoint._digest(state)
    torch.save(state, tmp_path / "v2.pt")
    with pytest.raises(checkpoint.CheckpointError, match="version"):
        checkpoint.load(tmp_path / "v2.pt")
    # an intact checkpoint of the right format whose contents are not a run's: clear errors at resume
    run = tmp_path / "run" / "checkpoints"
    checkpoint.save(run / "last.pt", {"algo": "dqn", "config": {"env_id": "CartPole-v1", "no_such_key": 1}})
    with pytest.raises(ConfigError, match="no_such_key"):
        Trainer(resume=tmp_path / "run", progress=False)
    checkpoint.save(run / "last.pt", {"algo": "not-an-algo", "config": {}})
    with pytest.raises(ConfigError, match="not-an-algo"):
        Trainer(resume=tmp_path / "run", progress=False)
    checkpoint.save(run / "last.pt", {"algo": "dqn", "config": {"env_id": "CartPole-v1", "total_steps": 10,
                                                                "eval_episodes": 1}})
    with pytest.raises(checkpoint.CheckpointError, match="missing or has bad entries"):
        Trainer(resume=tmp_path / "run", progress=False, tensorboard=False)
