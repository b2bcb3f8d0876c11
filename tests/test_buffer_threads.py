"""One writer and one reader at once: the C++ buffer locks internally and releases the GIL, so
every sampled row must be whole (never half old, half new) while another thread writes."""

from __future__ import annotations

import threading

import numpy as np

import fastrl


def write_until(stop, buf, obs_dim, k):
    """Extend ``k`` rows at a time until ``stop``; row ``i`` observes ``i`` (id 0 is added before)."""
    written = 1
    while not stop.is_set() and written < 400_001:
        ids = np.arange(written, written + k, dtype=np.float64)
        obs = np.repeat(ids[:, None], obs_dim, axis=1).astype(np.float32)
        buf.extend(obs, np.arange(k) % 4, ids.astype(np.float32), obs + 1, np.zeros(k, bool), np.zeros(k, bool))
        written += k


def test_writer_and_reader_threads_never_see_torn_rows():
    cap, obs_dim = 64, 256
    buf = fastrl.ReplayBuffer(cap, observation_shape=(obs_dim,), seed=0)
    stop = threading.Event()
    errors: list[str] = []

    def writer():
        write_until(stop, buf, obs_dim, 32)

    def reader():
        out = buf.empty_batch(64)
        for i in range(20000):
            b = buf.sample(64) if i % 2 else buf.sample_into(out)
            ids = b.indices.numpy().astype(np.float32)
            o = b.observations.numpy()
            if not (np.all(o == ids[:, None]) and np.all(b.next_observations.numpy() == ids[:, None] + 1)):
                errors.append(f"torn row at iteration {i}")
                break
        stop.set()

    w = threading.Thread(target=writer)
    o = np.zeros(obs_dim, np.float32)
    buf.add(o, 0, 0.0, o + 1, False, False)  # id 0 holds 0 / 1 like every later row
    w.start()
    r = threading.Thread(target=reader)
    r.start()
    r.join()
    stop.set()
    w.join()
    assert not errors, errors
    assert buf.total_added > cap  # the writer wrapped around while the reader sampled


def test_prioritized_writer_and_priority_updating_reader_threads():
    """PER: one thread extends while another samples and updates priorities of what it sampled;
    rows stay whole, priorities stay finite and positive, and sampled indices are in the buffer."""
    cap, obs_dim = 128, 64
    buf = fastrl.PrioritizedReplayBuffer(cap, observation_shape=(obs_dim,), alpha=0.6, seed=0)
    o = np.zeros(obs_dim, np.float32)
    buf.add(o, 0, 0.0, o + 1, False, False)
    stop = threading.Event()
    errors: list[str] = []

    def writer():
        write_until(stop, buf, obs_dim, 16)

    def reader():
        rng = np.random.default_rng(1)
        try:
            for i in range(5000):
                b = buf.sample(32, beta=0.4)
                idx = b.indices.numpy()
                ids = idx.astype(np.float32)
                if not np.all(b.observations.numpy() == ids[:, None]):
                    errors.append(f"torn row at iteration {i}")
                    break
                if not np.all(np.isfinite(b.weights.numpy())) or (b.weights.numpy() <= 0).any():
                    errors.append(f"bad weights at iteration {i}")
                    break
                try:  # rows overwritten since the draw may be refused; anything else is a bug
                    buf.update_priorities(idx, rng.random(len(idx)) + 0.01)
                except IndexError:
                    pass
        finally:
            stop.set()

    w = threading.Thread(target=writer)
    w.start()
    r = threading.Thread(target=reader)
    r.start()
    r.join()
    w.join()
    assert not errors, errors
    assert buf.total_added > cap
    live = np.arange(buf.total_added - len(buf), buf.total_added)
    p = buf.priorities(live)
    assert np.all(np.isfinite(p)) and (p > 0).all()
