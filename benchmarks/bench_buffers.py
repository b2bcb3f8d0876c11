"""Replay-buffer microbenchmarks: fastrl against the buffers users write by hand (and cpprb,
Stable-Baselines3 and TorchRL when installed), all measured in one run.

    python benchmarks/bench_buffers.py [--quick] [--out bench_out]

Prints a table of medians (microseconds per call) and ratios against the preallocated-numpy buffer
sampled with ``rng.integers`` (the baseline, ``numpy-int``), measured in the same run; writes a PNG.
Every buffer's sample is checked for consistency before it is timed.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections import deque

import numpy as np
import torch

import fastrl

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- hand-written buffers
class ListBuffer:
    """A list of tuples sampled with random.sample (seed 000's style)."""

    name = "list+random.sample"

    def __init__(self, cap, obs_shape, obs_dtype):
        self.cap, self.data, self.pos = cap, [], 0

    def add(self, o, a, r, n, t, u):
        item = (o, a, r, n, t, u)
        if len(self.data) < self.cap:
            self.data.append(item)
        else:
            self.data[self.pos] = item
        self.pos = (self.pos + 1) % self.cap

    def extend(self, O, A, R, N, T, U):
        for row in zip(O, A, R, N, T, U):
            self.add(*row)

    def sample(self, b):
        rows = random.sample(self.data, b)
        o, a, r, n, t, u = zip(*rows)
        return (torch.from_numpy(np.stack(o)), torch.tensor(a), torch.tensor(r), torch.from_numpy(np.stack(n)),
                torch.tensor(t), torch.tensor(u))


class DequeBuffer(ListBuffer):
    """A deque sampled with np.random.choice (seed 001's NamedTuple-buffer style)."""

    name = "deque+np.choice"

    def __init__(self, cap, obs_shape, obs_dtype):
        self.data = deque(maxlen=cap)

    def add(self, o, a, r, n, t, u):
        self.data.append((o, a, r, n, t, u))

    def sample(self, b):
        idx = np.random.choice(len(self.data), b)
        rows = [self.data[i] for i in idx]
        o, a, r, n, t, u = zip(*rows)
        return (torch.from_numpy(np.stack(o)), torch.tensor(a), torch.tensor(r), torch.from_numpy(np.stack(n)),
                torch.tensor(t), torch.tensor(u))


class NumpyBuffer:
    """Preallocated numpy arrays (seed 004's style); sampled with rng.integers: the baseline."""

    name = "numpy-int"

    def __init__(self, cap, obs_shape, obs_dtype):
        self.obs = np.zeros((cap, *obs_shape), obs_dtype)
        self.next_obs = np.zeros((cap, *obs_shape), obs_dtype)
        self.act = np.zeros(cap, np.int64)
        self.rew = np.zeros(cap, np.float32)
        self.term = np.zeros(cap, bool)
        self.trunc = np.zeros(cap, bool)
        self.cap, self.pos, self.size = cap, 0, 0
        self.rng = np.random.default_rng(0)

    def add(self, o, a, r, n, t, u):
        p = self.pos
        self.obs[p] = o
        self.act[p] = a
        self.rew[p] = r
        self.next_obs[p] = n
        self.term[p] = t
        self.trunc[p] = u
        self.pos = (p + 1) % self.cap
        self.size = min(self.size + 1, self.cap)

    def extend(self, O, A, R, N, T, U):
        k = len(O)
        idx = np.arange(self.pos, self.pos + k) % self.cap
        if self.pos + k <= self.cap:  # slice copies, the way a careful user writes it
            s = slice(self.pos, self.pos + k)
            self.obs[s], self.act[s], self.rew[s], self.next_obs[s], self.term[s], self.trunc[s] = O, A, R, N, T, U
        else:
            self.obs[idx], self.act[idx], self.rew[idx], self.next_obs[idx], self.term[idx], self.trunc[idx] = O, A, R, N, T, U
        self.pos = (self.pos + k) % self.cap
        self.size = min(self.size + k, self.cap)

    def indices(self, b):
        return self.rng.integers(0, self.size, b)

    def sample(self, b):
        i = self.indices(b)
        return tuple(map(torch.from_numpy, (self.obs[i], self.act[i], self.rew[i], self.next_obs[i],
                                            self.term[i], self.trunc[i])))


class NumpyChoiceBuffer(NumpyBuffer):
    name = "numpy-choice"

    def indices(self, b):
        return np.random.choice(self.size, b, replace=False)


class FastrlBuffer:
    name = "fastrl"

    def __init__(self, cap, obs_shape, obs_dtype):
        self.buf = fastrl.ReplayBuffer(cap, observation_shape=obs_shape, observation_dtype=obs_dtype, seed=0)
        self.add = self.buf.add
        self.extend = self.buf.extend
        self._out = {}

    def sample(self, b):
        return self.buf.sample(b)

    def sample_into(self, b):
        out = self._out.get(b)
        if out is None:
            out = self._out[b] = self.buf.empty_batch(b)
        return self.buf.sample_into(out)


def optional_buffers():
    found = []
    try:
        import cpprb

        class CpprbBuffer:
            name = "cpprb"

            def __init__(self, cap, obs_shape, obs_dtype):
                self.rb = cpprb.ReplayBuffer(cap, env_dict={
                    "obs": {"shape": obs_shape, "dtype": obs_dtype}, "act": {"dtype": np.int64},
                    "rew": {"dtype": np.float32}, "next_obs": {"shape": obs_shape, "dtype": obs_dtype},
                    "term": {"dtype": np.bool_}, "trunc": {"dtype": np.bool_}})

            def add(self, o, a, r, n, t, u):
                self.rb.add(obs=o, act=a, rew=r, next_obs=n, term=t, trunc=u)

            def extend(self, O, A, R, N, T, U):
                self.rb.add(obs=O, act=A, rew=R, next_obs=N, term=T, trunc=U)

            def sample(self, b):
                s = self.rb.sample(b)
                return tuple(torch.from_numpy(s[k]) for k in ("obs", "act", "rew", "next_obs", "term", "trunc"))

        found.append(CpprbBuffer)
    except ImportError:
        pass
    try:
        import gymnasium as gym
        from stable_baselines3.common.buffers import ReplayBuffer as SB3RB

        class SB3Buffer:
            name = "sb3"

            def __init__(self, cap, obs_shape, obs_dtype):
                lo, hi = (0, 255) if obs_dtype == np.uint8 else (-np.inf, np.inf)
                obs_space = gym.spaces.Box(lo, hi, obs_shape, obs_dtype)
                self.rb = SB3RB(cap, obs_space, gym.spaces.Discrete(4), device="cpu", n_envs=1)
                self.info = [{}]

            def add(self, o, a, r, n, t, u):
                self.rb.add(o, n, np.array([a]), np.array([r]), np.array([t or u]),
                            [{"TimeLimit.truncated": u}] if u else self.info)

            def extend(self, O, A, R, N, T, U):
                for row in zip(O, A, R, N, T, U):
                    self.add(*row)

            def sample(self, b):
                s = self.rb.sample(b)
                return s.observations, s.actions, s.rewards, s.next_observations, s.dones, s.dones

        found.append(SB3Buffer)
    except ImportError:
        pass
    try:
        from tensordict import TensorDict
        from torchrl.data import LazyTensorStorage
        from torchrl.data import ReplayBuffer as TRB

        class TorchRLBuffer:
            name = "torchrl"

            def __init__(self, cap, obs_shape, obs_dtype):
                self.rb = TRB(storage=LazyTensorStorage(cap))

            def add(self, o, a, r, n, t, u):
                self.rb.add(TensorDict({"obs": torch.from_numpy(o), "act": torch.tensor(a), "rew": torch.tensor(r),
                                        "next_obs": torch.from_numpy(n), "term": torch.tensor(t),
                                        "trunc": torch.tensor(u)}, batch_size=[]))

            def extend(self, O, A, R, N, T, U):
                self.rb.extend(TensorDict({"obs": torch.from_numpy(O), "act": torch.from_numpy(A),
                                           "rew": torch.from_numpy(R), "next_obs": torch.from_numpy(N),
                                           "term": torch.from_numpy(T), "trunc": torch.from_numpy(U)},
                                          batch_size=[len(O)]))

            def sample(self, b):
                td = self.rb.sample(b)
                return tuple(td[k] for k in ("obs", "act", "rew", "next_obs", "term", "trunc"))

        found.append(TorchRLBuffer)
    except Exception:  # torchrl raises more than ImportError when its torch version does not match
        pass
    return found


# ----------------------------------------------------------------------------- timing
def median_us(fn, calls, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(times)


def loop(fn, args, n):
    """Call fn(*args) n times, dropping each result at once (as a training step does)."""
    for _ in range(n):
        fn(*args)


def make_rows(k, obs_shape, obs_dtype, seed=0):
    rng = np.random.default_rng(seed)
    if obs_dtype == np.uint8:
        obs = rng.integers(0, 256, (k, *obs_shape), dtype=np.uint8)
    else:
        obs = rng.normal(size=(k, *obs_shape)).astype(obs_dtype)
    return (obs, rng.integers(0, 4, k), rng.normal(size=k).astype(np.float32), np.roll(obs, -1, 0),
            rng.random(k) < 0.01, rng.random(k) < 0.01)


def bench_config(classes, obs_shape, obs_dtype, cap, batch, repeats, n_add):
    O, A, R, N, T, U = make_rows(max(cap, 1024), obs_shape, obs_dtype)
    # env-loop inputs: fresh ndarray observations, Python int / float / bool
    loop_inputs = [(O[i].copy(), int(A[i]), float(R[i]), N[i].copy(), bool(T[i]), bool(U[i])) for i in range(n_add)]
    results = {}
    for cls in classes:
        buf = cls(cap, obs_shape, obs_dtype)
        buf.extend(O[:cap], A[:cap], R[:cap], N[:cap], T[:cap], U[:cap])  # full: adds overwrite
        # consistency: a sampled observation must be one that was stored, with its own successor
        s = buf.sample(batch)
        obs0, next0 = s[0][0].numpy(), s[3][0].numpy()
        assert any(np.array_equal(obs0, O[i]) and np.array_equal(next0, N[i]) for i in range(cap)), cls.name
        r = {}
        add = buf.add

        def adds():
            for row in loop_inputs:
                add(*row)
        r["add"] = median_us(adds, n_add, repeats)
        chunk = (O[:1024], A[:1024], R[:1024], N[:1024], T[:1024], U[:1024])
        ext = buf.extend
        r["extend(1024)"] = median_us(lambda: loop(ext, chunk, 5), 5, repeats)
        smp = buf.sample
        n_s = 200 if batch >= 256 else 100
        r[f"sample({batch})"] = median_us(lambda: loop(smp, (batch,), n_s), n_s, repeats)
        if hasattr(buf, "sample_into"):
            si = buf.sample_into
            r["sample_into"] = median_us(lambda: loop(si, (batch,), n_s), n_s, repeats)
        results[cls.name] = r
        del buf
    return results


def memcpy_us(obs_shape, batch, repeats):
    """One memcpy of the bytes a pixel batch holds (obs + next_obs + small fields): from a source
    that is hot in cache, and from cold memory (a new region of a 256 MiB array each call, as the
    rows of a large replay buffer are)."""
    nbytes = batch * (2 * int(np.prod(obs_shape)) + 8 + 4 + 1 + 1 + 8)
    src = np.random.default_rng(0).integers(0, 256, nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    hot = median_us(lambda: loop(np.copyto, (dst, src), 100), 100, repeats)
    big = np.random.default_rng(1).integers(0, 256, 256 << 20, dtype=np.uint8)
    starts = list(range(0, big.size - nbytes, nbytes))
    it = iter(starts * 1000)

    def cold():
        k = next(it)
        np.copyto(dst, big[k:k + nbytes])
    return hot, median_us(lambda: loop(lambda: cold(), (), 100), 100, repeats)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats and smaller pixel buffers")
    p.add_argument("--out", default="bench_out", help="folder for the PNG chart")
    args = p.parse_args(argv)
    repeats = 3 if args.quick else 9
    classes = [FastrlBuffer, NumpyBuffer, NumpyChoiceBuffer, ListBuffer, DequeBuffer] + optional_buffers()
    configs = [("float32[4]", (4,), np.float32, 100_000, 256), ("float32[8]", (8,), np.float32, 100_000, 256),
               ("uint8[4,84,84]", (4, 84, 84), np.uint8, 2_000 if args.quick else 10_000, 32)]
    print(f"fastrl {fastrl.__version__}, numpy {np.__version__}, torch {torch.__version__}, "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; medians of {repeats} repeats, us per call")
    all_results = {}
    for label, shape, dtype, cap, batch in configs:
        res = bench_config(classes, shape, dtype, cap, batch, repeats, n_add=2000 if cap >= 100_000 else 500)
        all_results[label] = res
        base = res["numpy-int"]
        ops = list(base) + ["sample_into"]
        print(f"\n{label}, capacity {cap}  (x = numpy-int time / this time; higher is faster)")
        print(f"{'buffer':<20}" + "".join(f"{op:>22}" for op in ops))
        for name, r in res.items():
            cells = []
            for op in ops:
                if op not in r:
                    cells.append(f"{'-':>22}")
                    continue
                ref = base.get(op if op != "sample_into" else f"sample({batch})")
                cells.append(f"{r[op]:>11.2f} ({ref / r[op]:>6.2f}x)")
            print(f"{name:<20}" + "".join(cells))
        if dtype == np.uint8:
            hot, cold = memcpy_us(shape, batch, repeats)
            s = res["fastrl"][f"sample({batch})"]
            si = res["fastrl"]["sample_into"]
            print(f"one memcpy of the same bytes: {hot:.2f} us from cache, {cold:.2f} us from cold memory; "
                  f"fastrl sample({batch}) / memcpy = {s / hot:.2f} (hot), {s / cold:.2f} (cold); "
                  f"sample_into / memcpy = {si / hot:.2f} (hot), {si / cold:.2f} (cold)")
        if "cpprb" in res:
            f, c = res["fastrl"], res["cpprb"]
            print(f"fastrl vs cpprb: add {c['add'] / f['add']:.1f}x, sample {c[f'sample({batch})'] / f[f'sample({batch})']:.1f}x")
    plot(all_results, args.out)


def plot(all_results, out):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart")
        return
    os.makedirs(out, exist_ok=True)
    fig, axes = plt.subplots(1, len(all_results), figsize=(6 * len(all_results), 4.5))
    for ax, (label, res) in zip(np.atleast_1d(axes), all_results.items()):
        ops = list(res["numpy-int"])
        names = list(res)
        w = 0.8 / len(names)
        for k, name in enumerate(names):
            vals = [res[name].get(op, np.nan) for op in ops]
            ax.bar(np.arange(len(ops)) + k * w, vals, w, label=name)
        ax.set_xticks(np.arange(len(ops)) + 0.4 - w / 2, ops)
        ax.set_yscale("log")
        ax.set_ylabel("us per call (log)")
        ax.set_title(label)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(out, "bench_buffers.png")
    fig.savefig(path, dpi=110)
    print(f"\nchart: {path}")


if __name__ == "__main__":
    main()
