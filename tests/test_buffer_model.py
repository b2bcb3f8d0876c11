"""The C++ replay buffer against the plain-Python model in tests/reference.py, over random sequences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, note, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import fastrl
from reference import ReferenceBuffer

OBS_SHAPE = (3,)
EXTRA = {"mask": ((2,), np.uint8), "logp": ((), np.float64), "k": ((), np.int32)}


def make_pair(capacity: int, num_envs: int, seed: int, store_next_observations: bool = False):
    buf = fastrl.ReplayBuffer(capacity, observation_shape=OBS_SHAPE, action_shape=(), num_envs=num_envs,
                              seed=seed, extra_fields=EXTRA, store_next_observations=store_next_observations)
    fields = [(f.name, f.shape, f.dtype) for f in buf.fields]
    return buf, ReferenceBuffer(fields, capacity, num_envs, seed)


def random_columns(rng: np.random.Generator, k: int) -> dict[str, np.ndarray]:
    return {
        "observations": rng.normal(size=(k, *OBS_SHAPE)).astype(np.float32),
        "actions": rng.integers(0, 5, size=k),
        "rewards": rng.normal(size=k).astype(np.float32),
        "next_observations": rng.normal(size=(k, *OBS_SHAPE)).astype(np.float32),
        "terminated": rng.random(k) < 0.2,
        "truncated": rng.random(k) < 0.1,
        "mask": rng.integers(0, 256, size=(k, 2)).astype(np.uint8),
        "logp": rng.normal(size=k),
        "k": rng.integers(-1000, 1000, size=k).astype(np.int32),
    }


STD = ("observations", "actions", "rewards", "next_observations", "terminated", "truncated")


def extend(buf, cols):
    buf.extend(*(cols[n] for n in STD), **{n: cols[n] for n in EXTRA})


class BufferMachine(RuleBasedStateMachine):
    STORE_NEXT = False  # the default compact layout: next observations read from the next rows

    @initialize(capacity=st.integers(1, 24), num_envs=st.integers(1, 3), seed=st.integers(0, 2**64 - 1),
                data_seed=st.integers(0, 2**32 - 1))
    def setup(self, capacity, num_envs, seed, data_seed):
        capacity = max(1, capacity // num_envs) * num_envs  # capacity is a multiple of num_envs
        self.buf, self.model = make_pair(capacity, num_envs, seed, self.STORE_NEXT)
        self.rng = np.random.default_rng(data_seed)
        note(f"capacity={capacity} num_envs={num_envs}")

    @rule(steps=st.integers(0, 30))
    def extend(self, steps):
        cols = random_columns(self.rng, steps * self.model.num_envs)
        extend(self.buf, cols)
        self.model.write(cols)

    @precondition(lambda self: self.model.num_envs == 1)
    @rule()
    def add(self):
        cols = random_columns(self.rng, 1)
        row = {n: v[0] for n, v in cols.items()}
        # env-loop inputs: Python scalars for the scalar fields
        self.buf.add(row["observations"], int(row["actions"]), float(row["rewards"]), row["next_observations"],
                     bool(row["terminated"]), bool(row["truncated"]), mask=row["mask"], logp=float(row["logp"]),
                     k=int(row["k"]))
        self.model.write(cols)

    @precondition(lambda self: len(self.model) > 0)
    @rule(batch=st.integers(1, 40), replace=st.booleans())
    def sample(self, batch, replace):
        if not replace:
            batch = min(batch, len(self.model))
        b = self.buf.sample(batch, replace=replace)
        ids = self.model.sample_ids(batch, replace)
        assert b.indices.tolist() == ids
        if not replace:
            assert len(set(ids)) == len(ids)
        for j, i in enumerate(ids):
            row = self.model.rows[i]
            for n in STD:
                np.testing.assert_array_equal(getattr(b, n)[j].numpy(), row[n])
            for n in EXTRA:
                np.testing.assert_array_equal(b.extras[n][j].numpy(), row[n])

    @precondition(lambda self: len(self.model) > 0)
    @rule(batch=st.integers(1, 16))
    def sample_into(self, batch):
        out = self.buf.empty_batch(batch)
        self.buf.sample_into(out)
        ids = self.model.sample_ids(batch, True)
        assert out.indices.tolist() == ids
        for j, i in enumerate(ids):
            np.testing.assert_array_equal(out.observations[j].numpy(), self.model.rows[i]["observations"])
            np.testing.assert_array_equal(out.extras["mask"][j].numpy(), self.model.rows[i]["mask"])

    @rule()
    def state_dict_round_trip(self):
        sd = self.buf.state_dict()
        buf2, _ = make_pair(self.model.capacity, self.model.num_envs, 0, self.STORE_NEXT)
        buf2.load_state_dict(sd)
        self.buf = buf2

    @rule()
    def file_round_trip(self):
        import tempfile, os
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "buf.frb")
            self.buf.save(path)
            self.buf = fastrl.ReplayBuffer.load(path)

    @invariant()
    def storage_matches(self):
        assert len(self.buf) == len(self.model)
        assert self.buf.total_added == self.model.total
        for name, _, _ in self.model.fields:
            if name == "next_observations" and not self.STORE_NEXT:
                continue  # no storage: checked through get() below
            view = self.buf.field(name)
            for slot, value in self.model.storage(name).items():
                np.testing.assert_array_equal(view[slot], value)
        if len(self.model):
            live = list(self.model.live_ids())
            got = self.buf.get(live)
            for j, i in enumerate(live):
                np.testing.assert_array_equal(got["k"][j], self.model.rows[i]["k"])
                np.testing.assert_array_equal(got["next_observations"][j], self.model.rows[i]["next_observations"])


TestBufferMachine = BufferMachine.TestCase
TestBufferMachine.settings = settings(settings(), stateful_step_count=20)


class FullLayoutMachine(BufferMachine):
    STORE_NEXT = True  # next_observations stored as a field of its own


TestFullLayoutMachine = FullLayoutMachine.TestCase
TestFullLayoutMachine.settings = settings(settings(), stateful_step_count=20)


@given(capacity=st.integers(1, 50), num_envs=st.integers(1, 5), steps=st.lists(st.integers(0, 40), max_size=6))
def test_wraparound_keeps_newest_rows_in_stream_order(capacity, num_envs, steps):
    capacity = max(1, capacity // num_envs) * num_envs  # capacity is a multiple of num_envs
    buf, model = make_pair(capacity, num_envs, 1)
    rng = np.random.default_rng(0)
    for s in steps:
        cols = random_columns(rng, s * num_envs)
        extend(buf, cols)
        model.write(cols)
    assert len(buf) == len(model)
    live = list(model.live_ids())
    if live:
        got = buf.get(live)
        for j, i in enumerate(live):
            np.testing.assert_array_equal(got["observations"][j], model.rows[i]["observations"])
        # id -> stream is i % num_envs and the next step of a stream is i + num_envs
        assert all((i % num_envs) == ((i + num_envs) % num_envs) for i in live)
