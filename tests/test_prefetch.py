"""Background prefetch (fastrl/prefetch.py): the draws of a prefetcher are those of plain
sampling made one next() earlier, whatever the thread timing, for uniform, n-step and prioritized
buffers; errors surface at next(); concurrent writers never produce torn rows."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
import torch

import fastrl

B = 16


def make(kind, cap=64, seed=3):
    kw = dict(observation_shape=(3,), seed=seed)
    if kind == "per":
        return fastrl.PrioritizedReplayBuffer(cap, alpha=0.7, **kw)
    return fastrl.ReplayBuffer(cap, **kw)


def write(buf, start, rows):
    ids = np.arange(start, start + rows, dtype=np.float32)
    obs = np.repeat(ids[:, None], 3, axis=1)
    term = (np.arange(start, start + rows) % 7) == 6
    buf.extend(obs, np.arange(rows) % 4, ids, obs + 0.5, term, np.zeros(rows, bool))


def assert_same(a, b):
    for x, y in zip(a[:7], b[:7]):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    for name in (n for n in ("weights", "discounts") if getattr(b, n) is not None):
        np.testing.assert_array_equal(getattr(a, name).numpy(), getattr(b, name).numpy())


@pytest.mark.parametrize("kind", ["uniform", "per"])
@pytest.mark.parametrize("nstep", [False, True])
def test_draws_equal_plain_sampling_one_next_earlier(kind, nstep):
    buf, ref = make(kind), make(kind)
    for b in (buf, ref):
        write(b, 0, 40)
    opts = dict(n_step=3, gamma=0.9) if nstep else {}
    beta = dict(beta=0.5) if kind == "per" else {}
    pf = buf.prefetcher(B, **beta, **opts)
    expected = ref.sample(B, **beta, **opts)  # drawn when the prefetcher was made
    gen = np.random.default_rng(0)
    written = 40
    for step in range(60):
        new_beta = {"beta": 0.5 + step / 200} if kind == "per" else {}
        got = pf.next(**new_beta)
        assert_same(got, expected)
        got = {k: v.clone() for k, v in zip(got._fields[:7], got[:7])}  # valid until the next next()
        expected = ref.sample(B, **(new_beta or beta), **opts)  # what the worker draws now
        pf.wait()  # before writing: the draw above must not see what follows
        td = gen.exponential(size=B)
        for b in (buf, ref):
            if kind == "per":
                b.update_priorities(got["indices"], td)
            write(b, written, 3)
        written += 3
    pf.close()


def test_cpu_slots_alternate_and_are_reused():
    buf = make("uniform")
    write(buf, 0, 20)
    with buf.prefetcher(B) as pf:
        a, b, c = pf.next(), pf.next(), pf.next()
        assert a.observations.data_ptr() != b.observations.data_ptr()
        assert a.observations.data_ptr() == c.observations.data_ptr()


def test_errors_surface_at_next_and_it_recovers():
    buf = make("uniform")
    pf = buf.prefetcher(B)
    with pytest.raises(ValueError, match="empty buffer"):
        pf.next()
    with pytest.raises(ValueError, match="empty buffer"):
        pf.next()  # drawn again, still empty
    write(buf, 0, 10)
    batch = pf.next()
    assert (batch.observations[:, 0] == batch.indices.float()).all()
    pf.close()
    pf.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        pf.next()
    pf.wait()  # a no-op once closed


def test_bad_arguments():
    buf, per = make("uniform"), make("per")
    write(buf, 0, 10)
    write(per, 0, 10)
    with pytest.raises(ValueError, match="batch_size"):
        buf.prefetcher(0)
    with pytest.raises(TypeError, match="batch_size"):
        buf.prefetcher(2.5)
    with pytest.raises(ValueError, match="gamma"):
        buf.prefetcher(4, n_step=3)
    with pytest.raises(ValueError, match="beta"):
        per.prefetcher(4, beta=-1.0)
    with buf.prefetcher(4) as pf:
        with pytest.raises(ValueError, match="beta"):  # a uniform buffer validates beta and ignores it
            pf.next(beta=-0.5)
        pf.next()  # the rejected call changed nothing
        assert pf.next(beta=0.5).weights is None
    with per.prefetcher(4) as pf:
        with pytest.raises(ValueError, match="beta"):
            pf.next(beta=float("nan"))
        assert len(pf.next().weights) == 4


def test_prefetcher_keeps_its_buffer_alive():
    buf = make("per")
    write(buf, 0, 30)
    pf = buf.prefetcher(B, beta=0.4)
    del buf
    gc.collect()
    for _ in range(5):
        batch = pf.next()
        assert (batch.observations[:, 0] == batch.indices.float()).all()
    pf.close()


def test_concurrent_writer_never_gives_torn_rows():
    buf = make("uniform", cap=32)
    write(buf, 0, 32)
    stop = threading.Event()

    def writer():
        start = 32
        while not stop.is_set():
            write(buf, start, 5)
            start += 5

    t = threading.Thread(target=writer)
    t.start()
    try:
        with buf.prefetcher(B) as pf:
            for _ in range(3000):
                b = pf.next()
                obs = b.observations.numpy()
                assert (obs == obs[:, :1]).all(), "a row mixes two writes"
                np.testing.assert_array_equal(obs[:, 0], b.indices.numpy())
                np.testing.assert_array_equal(b.next_observations.numpy(), obs + 0.5)
    finally:
        stop.set()
        t.join()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_prefetch_matches_cpu_draws():
    buf, ref = make("per"), make("per")
    for b in (buf, ref):
        write(b, 0, 50)
    with buf.prefetcher(B, beta=0.4, device="cuda") as pf:
        assert pf._slots[0].observations.is_pinned()
        for _ in range(20):
            got = pf.next()
            exp = ref.sample(B, beta=0.4)
            assert got.observations.device.type == "cuda"
            torch.cuda.synchronize()
            assert_same(type(got)(*(t.cpu() if isinstance(t, torch.Tensor) else t for t in got)), exp)
