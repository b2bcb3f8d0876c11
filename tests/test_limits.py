"""Limits: capacities beyond 2^31 (64-bit ids and slots) and sizes beyond the memory available.

The big buffers here are memory-mapped sparse files: only the pages of the rows written are ever
touched, so a 2^31 + 10 row buffer costs a few kB of disk and memory. Its logical size must still
fit the free disk (a sparse file that outgrows the disk would crash on a later write), so the rows
are kept narrow: uint8 observations and actions, about 28 GiB with episode returns.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastrl

CAP = 2**31 + 10  # more rows than a signed 32-bit index can address


def _huge(tmp_path, **kwargs):
    return fastrl.ReplayBuffer(CAP, observation_shape=(1,), observation_dtype=np.uint8,
                               action_dtype=np.uint8, seed=0, storage_path=tmp_path / "huge.frb", **kwargs)


def test_capacity_beyond_2_31_wraps_with_64_bit_slots(tmp_path):
    buf = _huge(tmp_path)
    assert buf.capacity == CAP
    # Start 5 rows before the end of the third lap (ids beyond 2^32), so the writes cross the
    # last slot (index 2^31 + 9) and wrap to slot 0.
    start = 3 * CAP - 5
    buf._impl.set_state(start, buf._impl.rng_state())
    for i in range(12):
        o = np.array([i], np.uint8)
        buf.add(o, i, float(i), o + 100, i == 11, False)
    assert buf.total_added == start + 12 and len(buf) == CAP
    ids = np.arange(start, start + 12)
    got = buf.get(ids)
    np.testing.assert_array_equal(got["actions"], np.arange(12))
    np.testing.assert_array_equal(got["observations"][:, 0], np.arange(12, dtype=np.uint8))
    np.testing.assert_array_equal(got["next_observations"][:, 0], np.arange(12) + 100)
    # the slots beyond 2^31 hold the first five rows, slots 0..6 the rest
    obs = buf.field("observations")
    np.testing.assert_array_equal(obs[CAP - 5:, 0], np.arange(5, dtype=np.uint8))
    np.testing.assert_array_equal(obs[:7, 0], np.arange(5, 12, dtype=np.uint8))
    # sampling draws 64-bit ids over the whole range of stored ids (a small batch: every row
    # drawn is a page fault in a sparse file)
    idx = buf.sample(32).indices.numpy()
    assert idx.min() >= start + 12 - CAP and idx.max() < start + 12 and idx.min() > 2**32
    # rows of the written ids are read back exactly through sampled ids too
    written = buf.get(ids[-3:])
    np.testing.assert_array_equal(written["rewards"], np.array([9.0, 10.0, 11.0], np.float32))


def test_capacity_beyond_2_31_n_step_and_episode_returns(tmp_path):
    buf = _huge(tmp_path, episode_returns_gamma=0.5)
    start = 3 * CAP - 3
    buf._impl.set_full_state(start, buf._impl.rng_state(), [start])
    for i in range(6):  # one episode of 6 steps across the wrap: rewards 1 each
        o = np.array([i], np.uint8)
        buf.add(o, 0, 1.0, o + 1, i == 5, False)
    ids = np.arange(start, start + 6)
    b = buf.gather_nstep(ids, 3, 0.5)
    np.testing.assert_allclose(b["rewards"], [1.75, 1.75, 1.75, 1.75, 1.5, 1.0])
    np.testing.assert_allclose(b["discounts"], [0.125, 0.125, 0.125, 0.125, 0.25, 0.5])
    ret = buf.get(ids)["returns"]
    np.testing.assert_allclose(ret, [sum(0.5**k for k in range(6 - t)) for t in range(6)], rtol=1e-6)


def test_mapped_buffer_beyond_the_free_disk_fails_cleanly(tmp_path):
    # 2^40 rows of 84x84 bytes: far beyond any disk. Refused before a file is made, not a crash on
    # the first write past the space the disk has.
    path = tmp_path / "toobig.frb"
    with pytest.raises(ValueError, match=r"storage_path: the buffer needs .* GiB, the disk has"):
        fastrl.ReplayBuffer(2**40, observation_shape=(84, 84), observation_dtype=np.uint8, seed=0,
                            storage_path=path)
    assert not path.exists()


def test_prioritized_buffer_beyond_memory_fails_cleanly():
    # The sum and min trees live in RAM: 2^40 leaves cannot, and that is a ValueError up front.
    with pytest.raises(ValueError, match="capacity"):
        fastrl.PrioritizedReplayBuffer(2**40, observation_shape=(1,), seed=0)


def test_batch_beyond_memory_fails_cleanly():
    buf = fastrl.ReplayBuffer(8, observation_shape=(84, 84), observation_dtype=np.uint8, seed=0)
    o = np.zeros((84, 84), np.uint8)
    buf.add(o, 0, 0.0, o, False, False)
    with pytest.raises(ValueError, match="batch"):
        buf.sample(2**40)
    assert len(buf) == 1
