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


def same(a, b):
    x, y = a.state_dict(), b.state_dict()
    return x["state"] == y["state"] and all(np.array_equal(x["arrays"][k], y["arrays"][k]) for k in x["arrays"])


@settings(max_examples=150)
@given(data=st.data())
def test_truncated_and_flipped_files(tmp_path_factory, data):
    buf, blob = saved(tmp_path_factory)
    mode = data.draw(st.sampled_from(["truncate", "flip", "both"]))
    b = bytearray(blob)
    if mode in ("flip", "both"):
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(b) - 1))
            b[i] ^= data.draw(st.integers(1, 255))
    if mode in ("truncate", "both"):
        b = b[: data.draw(st.integers(0, len(b) - 1))]
    p = tmp_path_factory.mktemp("d") / "damaged.frb"
    p.write_bytes(bytes(b))
    try:
        loaded = fastrl.ReplayBuffer.load(p)
    except ValueError:
        return
    assert same(loaded, buf), "a damaged file loaded with different contents"
