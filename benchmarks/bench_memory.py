"""Memory-efficient pixel replay: bytes per transition and sample(32) time for 84x84 uint8 frames, k=4.

Compared (the same synthetic Atari-like episodes, single env stream):
  - fastrl, frame_stack=4 (default compact layout: each frame stored once, stacks built at sample time)
  - fastrl, naive layout: observation and next-observation stacks [4, 84, 84] stored in full
  - cpprb with next_of="obs" + stack_compress="obs", when importable
  - Stable-Baselines3 ReplayBuffer with optimize_memory_usage=True, when importable

Bytes per transition: fastrl's own ``memory_bytes()`` report, and for everyone the growth of the
resident memory of a fresh process while the buffer is built and filled (pages actually touched),
divided by the transitions stored. The million-transition figure is ``memory_bytes()`` of a real
1,000,000-transition fastrl buffer (its heap storage is reserved, lazily zeroed, not touched) plus
the side store per transition measured on the filled buffer.

Sampling: every implementation is timed in the same run, round-robin; the table shows the median
per-call time over rounds and the ratio to the naive layout, and the best round (the least
disturbed by other processes on a shared machine). The script also checks results:
fastrl's stacks equal the naive layout's bit for bit (same seed, same ids), and for every
implementation the fraction of stored transitions whose (obs, next_obs) are exactly what the env
emitted, at episode ends and elsewhere.

    python benchmarks/bench_memory.py [--capacity 20000] [--rounds 30] [--quick]

``--atari``: a 1,000,000-transition buffer built the way ``fastrl train dqn ALE/Breakout-v5`` builds
it (``ReplayBuffer.from_env`` on the preset's Atari env: 84x84 grayscale, 4-frame stack stored once
per frame) and filled with real ALE frames: ``--real-steps`` env steps (random actions) recorded,
then replayed in order until the buffer is full (the default records 250k; the recording's last
step is stored as truncated, its episode ending there). The preset's ``terminated_next_observations``
("auto": "zero" with lost lives terminal) applies, as in training. Printed: ``memory_bytes()``, and the process's resident memory (anonymous and file-backed)
before and after, heap storage vs ``--storage-path`` (a memory-mapped file: its pages are
file-backed, so the kernel can write them out and the buffer can exceed RAM). Target: <= 7.2 GB.

    python benchmarks/bench_memory.py --atari [--transitions 1000000] [--real-steps 250000]
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import fastrl

K, H, W = 4, 84, 84
FRAME = H * W


def status_kb(*keys: str) -> dict[str, int]:
    """Fields of /proc/self/status in kB (VmRSS, RssAnon, RssFile, ...)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in keys:
                out[name] = int(rest.split()[0])
    return out


def atari_million(transitions: int, real_steps: int, storage_path: str | None) -> None:
    """Fill a ``transitions`` buffer from the ALE preset's env with real frames (see the module doc)."""
    from fastrl.agents.presets import preset
    from fastrl.training.envs import make_vec_env

    cfg = preset("dqn", "ALE/Breakout-v5")
    envs = make_vec_env(cfg.env_id, 1, "sync", cfg.max_episode_steps, cfg.frame_stack, **cfg.env_options())
    t0 = time.perf_counter()
    real = min(real_steps, transitions)
    # what extend receives each step: obs and next obs stacks [1, 4, 84, 84]; only their newest
    # frames are new (the buffer keeps single frames), so record those and the stacks' starts
    obs_last = np.empty((real, H, W), np.uint8)
    finals: dict[int, np.ndarray] = {}  # the true final observation (stack) of each episode end
    first_stacks: dict[int, np.ndarray] = {}
    acts = np.empty(real, np.int64)
    rews = np.empty(real, np.float32)
    term = np.empty(real, bool)
    trunc = np.empty(real, bool)
    from fastrl import final_observations

    obs, _ = envs.reset(seed=0)
    rng = np.random.default_rng(0)
    ends = 0
    prev_done = True
    for i in range(real):
        a = rng.integers(envs.single_action_space.n, size=1)
        nxt, r, te, tr, info = envs.step(a)
        true_next = final_observations(nxt, te, tr, info)
        if prev_done:
            first_stacks[i] = np.asarray(obs[0]).copy()
        obs_last[i] = obs[0, -1]
        if i == real - 1:  # the replay starts over after it: end the recording's last episode here
            tr[0] = not te[0]
        if te[0] or tr[0]:
            finals[i] = np.asarray(true_next[0]).copy()
        acts[i], rews[i], term[i], trunc[i] = a[0], r[0], te[0], tr[0]
        prev_done = bool(te[0] or tr[0])
        ends += prev_done
        obs = nxt
    step_s = time.perf_counter() - t0
    print(f"recorded {real:,} real ALE steps ({ends} episode ends) in {step_s:.0f} s "
          f"({real / step_s:,.0f} steps/s, preset env: {cfg.env_id}, frame_stack={cfg.frame_stack})")

    gc.collect()
    before = status_kb("VmRSS", "RssAnon", "RssFile")
    # as the trainer builds it: with lost lives terminal, terminated steps' final frames are not kept
    # (terminated_next_observations="auto" -> "zero"; no target bootstraps from them)
    buf = fastrl.ReplayBuffer.from_env(
        envs, transitions, storage_path=storage_path, terminated_next_observations=cfg.replay_terminated_next
    )
    t0 = time.perf_counter()
    stack = np.empty((1, K, H, W), np.uint8)
    for j in range(transitions):
        i = j % real
        if i in first_stacks:
            stack[0] = first_stacks[i]
        else:
            stack[0, :-1] = stack[0, 1:]
            stack[0, -1] = obs_last[i]
        done = term[i] or trunc[i]
        if done:
            nxt_stack = finals[i][None]
        else:
            nxt_stack = np.concatenate([stack[:, 1:], obs_last[i + 1][None, None]], axis=1)
        buf.extend(stack, acts[i:i + 1], rews[i:i + 1], nxt_stack, term[i:i + 1], trunc[i:i + 1])
    fill_s = time.perf_counter() - t0
    gc.collect()
    after = status_kb("VmRSS", "RssAnon", "RssFile")
    envs.close()
    grow = {k: (after[k] - before[k]) * 1024 for k in after}
    where = f"storage_path={storage_path}" if storage_path else "heap storage"
    print(f"{len(buf):,} transitions ({where}), filled in {fill_s:.0f} s")
    print(f"  memory_bytes(): {buf.memory_bytes() / 1e9:.3f} GB ({buf.memory_bytes() / len(buf):,.0f} B/transition); "
          f"memory_usage(): { {k: round(v / 1e9, 3) for k, v in buf.memory_usage().items()} } GB")
    print(f"  resident growth: {grow['VmRSS'] / 1e9:.3f} GB (anonymous {grow['RssAnon'] / 1e9:.3f} GB, "
          f"file-backed {grow['RssFile'] / 1e9:.3f} GB)")
    if not storage_path:
        ok = max(buf.memory_bytes(), grow["VmRSS"]) <= 7.2e9
        print(f"  target <= 7.2 GB per 1M transitions: {'met' if ok else 'NOT met'}")
    # the stacks it samples are the env's: check a few hundred against the recording
    b = buf.sample(256)
    ids = b.indices.numpy() % transitions
    wrong = 0
    for row, j in enumerate(ids):
        i = int(j) % real
        wrong += int(not (b.observations[row, -1].numpy() == obs_last[i]).all())
    print(f"  sampled stacks whose newest frame is the recorded one: {256 - wrong}/256 "
          f"(terminated_next_observations={buf.terminated_next_observations!r})")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def episodes(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Frames (a table, index -1 is a zero frame) and, per transition, the frame indices of the true
    obs / next_obs stacks (FrameStackObservation, reset padding), terminated, truncated."""
    rng = np.random.default_rng(seed)
    obs_idx, next_idx, term, trunc = [], [], [], []
    nframes = 0
    while len(obs_idx) < rows:
        length = int(rng.integers(100, 1000))
        f = np.arange(nframes, nframes + length + 1)  # f[t] is the obs of step t, f[length] the final obs
        nframes += length + 1
        padded = np.concatenate([np.full(K - 1, f[0]), f])  # reset padding: the first frame repeated
        for t in range(length):
            obs_idx.append(padded[t:t + K])
            next_idx.append(padded[t + 1:t + K + 1])
            end = t == length - 1
            ends_by_time = rng.random() < 0.5
            term.append(end and not ends_by_time)
            trunc.append(end and ends_by_time)
    frames = rng.integers(0, 256, size=(nframes, H, W), dtype=np.uint8)
    return {"frames": frames, "obs": np.array(obs_idx[:rows]), "next": np.array(next_idx[:rows]),
            "terminated": np.array(term[:rows]), "truncated": np.array(trunc[:rows])}


def stacks(d: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
    return d["frames"][idx]


# ---------------------------------------------------------------- the implementations
class Impl:
    name = ""
    stored: int = 0  # transitions stored

    def fill(self, d: dict[str, np.ndarray]) -> None: ...
    def sample(self) -> Any: ...
    def pairs(self, s: int, e: int) -> tuple[np.ndarray, np.ndarray]:
        """(obs, next_obs) stacks [e - s, 4, 84, 84] of the stored transitions s..e-1 (in write order)."""
        raise NotImplementedError


class FastrlStacked(Impl):
    name = "fastrl frame_stack=4"

    def __init__(self, capacity: int) -> None:
        self.buf = fastrl.ReplayBuffer(capacity, observation_shape=(H, W), observation_dtype=np.uint8,
                                       frame_stack=K, seed=0)

    def fill(self, d: dict[str, np.ndarray]) -> None:
        n = len(d["obs"])
        for s in range(0, n, 1024):
            e = min(n, s + 1024)
            self.buf.extend(d["frames"][d["obs"][s:e, -1]], np.zeros(e - s, np.int64), np.ones(e - s, np.float32),
                            d["frames"][d["next"][s:e, -1]], d["terminated"][s:e], d["truncated"][s:e])
        self.stored = n

    def sample(self) -> Any:
        return self.buf.sample(32)

    def pairs(self, s: int, e: int) -> tuple[np.ndarray, np.ndarray]:
        got = self.buf.get(np.arange(s, e))
        return got["observations"], got["next_observations"]


class FastrlNaive(FastrlStacked):
    name = "fastrl naive layout"

    def __init__(self, capacity: int) -> None:
        self.buf = fastrl.ReplayBuffer(capacity, observation_shape=(K, H, W), observation_dtype=np.uint8,
                                       store_next_observations=True, seed=0)

    def fill(self, d: dict[str, np.ndarray]) -> None:
        n = len(d["obs"])
        for s in range(0, n, 1024):
            e = min(n, s + 1024)
            self.buf.extend(stacks(d, d["obs"][s:e]), np.zeros(e - s, np.int64), np.ones(e - s, np.float32),
                            stacks(d, d["next"][s:e]), d["terminated"][s:e], d["truncated"][s:e])
        self.stored = n


class Cpprb(Impl):
    name = "cpprb next_of+stack_compress"

    def __init__(self, capacity: int) -> None:
        import cpprb

        self.rb = cpprb.ReplayBuffer(capacity, {"obs": {"shape": (H, W, K), "dtype": np.uint8},
                                                "act": {"dtype": np.int64}, "rew": {}, "done": {}},
                                     next_of="obs", stack_compress="obs")

    def fill(self, d: dict[str, np.ndarray]) -> None:
        n = len(d["obs"])
        for i in range(n):
            done = bool(d["terminated"][i] or d["truncated"][i])
            self.rb.add(obs=np.moveaxis(stacks(d, d["obs"][i]), 0, -1), act=0, rew=1.0,
                        next_obs=np.moveaxis(stacks(d, d["next"][i]), 0, -1), done=float(d["terminated"][i]))
            if done:
                self.rb.on_episode_end()
        self.stored = n

    def sample(self) -> Any:
        return self.rb.sample(32)

    def pairs(self, s: int, e: int) -> tuple[np.ndarray, np.ndarray]:
        t = self.rb._encode_sample(np.arange(s, e))
        return np.moveaxis(t["obs"], -1, 1), np.moveaxis(t["next_obs"], -1, 1)


class SB3(Impl):
    name = "SB3 optimize_memory_usage"

    def __init__(self, capacity: int) -> None:
        import gymnasium as gym
        from stable_baselines3.common.buffers import ReplayBuffer

        # one more slot: with optimize_memory_usage the next obs of the newest step lives in the next slot
        self.rb = ReplayBuffer(capacity + 1, gym.spaces.Box(0, 255, (K, H, W), np.uint8), gym.spaces.Discrete(4),
                               device="cpu", optimize_memory_usage=True, handle_timeout_termination=False)

    def fill(self, d: dict[str, np.ndarray]) -> None:
        n = len(d["obs"])
        for i in range(n):
            done = bool(d["terminated"][i] or d["truncated"][i])
            self.rb.add(stacks(d, d["obs"][i])[None], stacks(d, d["next"][i])[None], np.zeros(1, np.int64),
                        np.ones(1, np.float32), np.array([done]), [{}])
        self.stored = n

    def sample(self) -> Any:
        return self.rb.sample(32)

    def pairs(self, s: int, e: int) -> tuple[np.ndarray, np.ndarray]:
        b = self.rb._get_samples(np.arange(s, e))
        return b.observations.numpy(), b.next_observations.numpy()


def available() -> list[Callable[[int], Impl]]:
    out: list[Callable[[int], Impl]] = [FastrlStacked, FastrlNaive]  # first two: fastrl, then the naive baseline
    for cls, mod in ((Cpprb, "cpprb"), (SB3, "stable_baselines3")):
        try:
            __import__(mod)
            out.append(cls)
        except ImportError:
            print(f"({mod} not importable: skipped)")
    return out


# ---------------------------------------------------------------- measurements
def exactness(impl: Impl, d: dict[str, np.ndarray]) -> tuple[float, float]:
    """Fractions of stored transitions whose (obs, next_obs) equal the truth: at episode ends, elsewhere."""
    ok = np.zeros(impl.stored, bool)
    for s in range(0, impl.stored, 1024):
        e = min(impl.stored, s + 1024)
        obs, nxt = impl.pairs(s, e)
        want_o, want_n = stacks(d, d["obs"][s:e]), stacks(d, d["next"][s:e])
        ok[s:e] = (obs == want_o).reshape(e - s, -1).all(1) & (nxt == want_n).reshape(e - s, -1).all(1)
    end = d["terminated"][:impl.stored] | d["truncated"][:impl.stored]
    return float(ok[end].mean()), float(ok[~end].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--capacity", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--calls", type=int, default=50, help="sample(32) calls per round")
    ap.add_argument("--quick", action="store_true", help="small run (capacity 3000, 8 rounds)")
    ap.add_argument("--png", default="bench_out/memory.png")
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # child process: RSS growth of one implementation
    ap.add_argument("--atari", action="store_true", help="a 1M-transition buffer of real ALE frames (see above)")
    ap.add_argument("--transitions", type=int, default=1_000_000)
    ap.add_argument("--real-steps", type=int, default=250_000, help="ALE steps recorded (7 KB each in RAM)")
    ap.add_argument("--storage-path", default=None)
    args = ap.parse_args()
    if args.atari:
        atari_million(args.transitions, args.real_steps, args.storage_path)
        return
    if args.quick:
        args.capacity, args.rounds = 3000, 8
    cap = args.capacity
    d = episodes(cap)
    if args.measure:
        make = {c.__name__: c for c in available()}[args.measure]
        gc.collect()
        before = rss()
        impl = make(cap)
        impl.fill(d)
        gc.collect()
        print((rss() - before) / cap)
        return
    n_end = int((d["terminated"] | d["truncated"]).sum())
    print(f"{cap} transitions of 84x84 uint8 frames, k=4, {n_end} episode ends; "
          f"sample(32) x {args.calls} calls x {args.rounds} rounds\n")

    impls: list[Impl] = []
    mem: dict[str, float] = {}
    for make in available():
        child = subprocess.run([sys.executable, __file__, "--measure", make.__name__, "--capacity", str(cap)],
                               capture_output=True, text=True, check=True)
        impl = make(cap)
        impl.fill(d)
        mem[impl.name] = float(child.stdout.split()[-1])
        impls.append(impl)

    stacked, naive = impls[0], impls[1]
    assert isinstance(stacked, FastrlStacked) and isinstance(naive, FastrlNaive)
    # results: same seed -> same ids -> the same stacks, bit for bit
    for _ in range(20):
        a, b = stacked.buf.sample(32), naive.buf.sample(32)
        assert (a.indices == b.indices).all()
        assert (a.observations == b.observations).all() and (a.next_observations == b.next_observations).all()
    exact = {impl.name: exactness(impl, d) for impl in impls}
    assert exact[stacked.name] == (1.0, 1.0) and exact[naive.name] == (1.0, 1.0)

    times: dict[str, list[float]] = {impl.name: [] for impl in impls}
    for _ in range(args.rounds):
        for impl in impls:
            t0 = time.perf_counter()
            for _ in range(args.calls):
                impl.sample()
            times[impl.name].append((time.perf_counter() - t0) / args.calls)
    med = {k: float(np.median(v)) for k, v in times.items()}
    best = {k: float(np.min(v)) for k, v in times.items()}

    fast_bytes = stacked.buf.memory_bytes() / cap
    naive_bytes = naive.buf.memory_bytes() / cap
    side_per_row = stacked.buf.memory_usage()["observation_store"] / cap
    big = fastrl.ReplayBuffer(1_000_000, observation_shape=(H, W), observation_dtype=np.uint8, frame_stack=K)
    million = big.memory_bytes() + side_per_row * 1_000_000
    del big

    print("| implementation | bytes/transition (memory_bytes) | bytes/transition (RSS growth) | "
          "sample(32) median | vs naive | best round | vs naive | exact (obs, next_obs) at episode ends / elsewhere |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for impl in impls:
        mb = f"{impl.buf.memory_bytes() / cap:,.0f}" if isinstance(impl, FastrlStacked) else "-"
        e_end, e_mid = exact[impl.name]
        print(f"| {impl.name} | {mb} | {mem[impl.name]:,.0f} | {med[impl.name] * 1e6:,.1f} us | "
              f"{med[impl.name] / med[naive.name]:.2f}x | {best[impl.name] * 1e6:,.1f} us | "
              f"{best[impl.name] / best[naive.name]:.2f}x | {e_end:.0%} / {e_mid:.0%} |")
    print()
    ratio = naive_bytes / fast_bytes
    print(f"fastrl frame_stack=4 stores {fast_bytes:,.0f} bytes per transition, 1/{ratio:.2f} of the naive "
          f"layout's {naive_bytes:,.0f} (target: <= 1/7)")
    print(f"1,000,000 transitions: {million / 1e9:.2f} GB (memory_bytes of a real 1M buffer + side store "
          f"{side_per_row:.1f} B/transition; target: < 8 GB)")
    print(f"sampling with stacking: {med[stacked.name] / med[naive.name]:.2f}x the naive layout's median time, "
          f"{best[stacked.name] / best[naive.name]:.2f}x its best round (target: <= 1.5x)")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = [impl.name for impl in impls]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
        ax1.barh(names, [mem[n] / 1024 for n in names])
        ax1.set_xlabel("KiB per transition (RSS growth)")
        ax2.barh(names, [med[n] * 1e6 for n in names])
        ax2.set_xlabel("sample(32) median, microseconds")
        fig.suptitle(f"84x84 uint8 frames, k=4, {cap} transitions")
        fig.tight_layout()
        os.makedirs(os.path.dirname(args.png) or ".", exist_ok=True)
        fig.savefig(args.png, dpi=100)
        print(f"wrote {args.png}")
    except ImportError:
        pass


if __name__ == "__main__":
    main()
