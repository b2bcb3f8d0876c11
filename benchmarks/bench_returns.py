"""Return-computation benchmarks: fastrl against the ways users compute returns today, one run.

    python benchmarks/bench_returns.py [--quick] [--out bench_out]

1. Discounted returns over time-major [T, N] rewards with episode ends: fastrl.discounted_returns
   vs the tutorial's ``itertools.accumulate`` over a reversed reward list (seed 000, one call per
   episode and stream), a Python loop over time with numpy rows, and TorchRL's ``reward2go`` /
   Tianshou's numba kernel when installed.
2. GAE over [T, N]: fastrl.gae vs a numpy loop, TorchRL's ``generalized_advantage_estimate`` and
   ``vec_generalized_advantage_estimate`` and Tianshou's numba ``_gae`` when installed.
3. Replay-buffer n-step sampling: sample(256, n_step=3, gamma) vs plain sample(256).

Every competitor's result is checked against fastrl's before it is timed. Times are medians of
repeats (ms per call, us for sampling); ratios are against a baseline measured in the same run.
torch runs on one thread, like fastrl. Writes bench_returns.png.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from itertools import accumulate

import numpy as np
import torch

import fastrl

torch.set_num_threads(1)
GAMMA, LAM = 0.99, 0.95


def median_s(fn, repeats, budget=0.2):
    """Median seconds per call: calls per repeat chosen so a repeat takes about `budget` s."""
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    calls = max(1, min(10_000, int(budget / max(once, 1e-7))))
    if once > 1.0:
        repeats = min(repeats, 3)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls)
    return statistics.median(times)


def rollout(T, N, seed=0, p_term=0.002, p_trunc=0.001):
    rng = np.random.default_rng(seed)
    return {
        "rewards": rng.normal(size=(T, N)).astype(np.float32),
        "values": rng.normal(size=(T, N)).astype(np.float32),
        "next_values": rng.normal(size=(T, N)).astype(np.float32),
        "terminated": rng.random((T, N)) < p_term,
        "truncated": rng.random((T, N)) < p_trunc,
    }


# ----------------------------------------------------------------------------- discounted returns
def accumulate_returns(rewards_lists, done_lists):
    """The tutorial's get_episode_returns, called on each episode of each stream."""
    out = []
    for rew, done in zip(rewards_lists, done_lists):
        ret, start = [], 0
        for t, d in enumerate(done):
            if d or t == len(done) - 1:
                ep = rew[start:t + 1]
                ret += list(accumulate(ep[::-1], lambda x, y: x * GAMMA + y))[::-1]
                start = t + 1
        out.append(ret)
    return out


def numpy_loop_returns(r, done):
    T = r.shape[0]
    out = np.empty_like(r)
    nxt = np.zeros(r.shape[1], r.dtype)
    for t in range(T - 1, -1, -1):
        nxt = r[t] + GAMMA * nxt * (1.0 - done[t])
        out[t] = nxt
    return out


def discounted_competitors(d):
    """(name, setup-free callable, result-as-[T, N] callable) for each available method."""
    r, te, tr = d["rewards"], d["terminated"], d["truncated"]
    done = te | tr
    T, N = r.shape
    methods = {}
    rl = [r[:, n].tolist() for n in range(N)]
    dl = [done[:, n].tolist() for n in range(N)]
    methods["itertools.accumulate"] = (lambda: accumulate_returns(rl, dl),
                                       lambda res: np.array(res, dtype=np.float64).T)
    methods["numpy loop"] = (lambda: numpy_loop_returns(r, done), lambda res: res)
    methods["fastrl"] = (lambda: fastrl.discounted_returns(r, te, tr, GAMMA), lambda res: res)
    try:
        from torchrl.objectives.value.functional import reward2go

        rt = torch.from_numpy(np.ascontiguousarray(r.T))[..., None]  # TorchRL layout [N, T, 1]
        dt = torch.from_numpy(np.ascontiguousarray(done.T))[..., None]
        methods["torchrl reward2go"] = (lambda: reward2go(rt, dt, GAMMA, time_dim=-2),
                                        lambda res: res[..., 0].numpy().T)
    except ImportError:
        pass
    try:
        from tianshou.algorithm.algorithm_base import _gae

        # Tianshou computes episodic returns as GAE with zero values and lambda = 1 over the
        # flattened, env-major buffer.
        rf = np.ascontiguousarray(r.T).reshape(-1).astype(np.float64)
        end = np.ascontiguousarray(done.T).copy()
        end[:, -1] = True
        ef = end.reshape(-1)
        zf = np.zeros_like(rf)
        methods["tianshou numba"] = (lambda: _gae(zf, zf, rf, ef, GAMMA, 1.0),
                                     lambda res: res.reshape(N, T).T)
    except ImportError:
        pass
    return methods


# ----------------------------------------------------------------------------- GAE
def numpy_loop_gae(r, v, nv, te, tr):
    T = r.shape[0]
    adv = np.empty_like(r)
    last = np.zeros(r.shape[1], r.dtype)
    nonterm = 1.0 - te
    cont = 1.0 - (te | tr)
    for t in range(T - 1, -1, -1):
        delta = r[t] + GAMMA * nv[t] * nonterm[t] - v[t]
        last = delta + GAMMA * LAM * cont[t] * (last if t < T - 1 else 0.0)
        adv[t] = last
    return adv, adv + v


def gae_competitors(d):
    r, v, nv, te, tr = (d[k] for k in ("rewards", "values", "next_values", "terminated", "truncated"))
    T, N = r.shape
    methods = {
        "numpy loop": (lambda: numpy_loop_gae(r, v, nv, te, tr), lambda res: res[0]),
        "fastrl": (lambda: fastrl.gae(r, v, nv, te, tr, GAMMA, LAM), lambda res: res[0]),
    }
    try:
        from torchrl.objectives.value.functional import (
            generalized_advantage_estimate,
            vec_generalized_advantage_estimate,
        )

        def tl(a):  # TorchRL layout [N, T, 1]
            return torch.from_numpy(np.ascontiguousarray(a.T))[..., None]

        args = (tl(v), tl(nv), tl(r), tl(te | tr), tl(te))
        methods["torchrl gae"] = (lambda: generalized_advantage_estimate(GAMMA, LAM, *args),
                                  lambda res: res[0][..., 0].numpy().T)
        methods["torchrl vec_gae"] = (lambda: vec_generalized_advantage_estimate(GAMMA, LAM, *args),
                                      lambda res: res[0][..., 0].numpy().T)
    except ImportError:
        pass
    try:
        from tianshou.algorithm.algorithm_base import _gae

        # Tianshou's kernel has one end flag (no terminated / truncated split): it is given
        # next values already zeroed after terminal steps, over the flattened env-major buffer.
        vf = np.ascontiguousarray(v.T).reshape(-1)
        nvf = np.ascontiguousarray((nv * ~te).T).reshape(-1)
        rf = np.ascontiguousarray(r.T).reshape(-1)
        end = np.ascontiguousarray((te | tr).T).copy()
        end[:, -1] = True
        ef = end.reshape(-1)
        methods["tianshou numba"] = (lambda: _gae(vf, nvf, rf, ef, GAMMA, LAM), lambda res: res.reshape(N, T).T)
    except ImportError:
        pass
    return methods


# The slow methods are timed only up to this many elements T * N (the rest of a table still runs).
SLOW_LIMITS = {"itertools.accumulate": 17 * 10**6, "numpy loop": 2 * 10**6, "torchrl reward2go": 2 * 10**5,
               "torchrl gae": 2 * 10**5, "torchrl vec_gae": 2 * 10**6}


def run_table(title, sizes, make_methods, baseline, repeats, slow_limits):
    """Times every method at every size; returns {(T, N): {name: seconds}}."""
    results = {}
    print(f"\n{title}  (ms per call; x = {baseline} time / this time, higher is faster)")
    names_seen: list[str] = []
    rows = []
    for T, N in sizes:
        d = rollout(T, N)
        methods = make_methods(d)
        want = methods["fastrl"][1](methods["fastrl"][0]())
        res = {}
        for name, (fn, to_tn) in methods.items():
            if T * N > slow_limits.get(name, float("inf")):
                continue
            got = to_tn(fn())
            tol = 2e-3 * max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-3, atol=tol, err_msg=name)
            res[name] = median_s(fn, repeats)
            if name not in names_seen:
                names_seen.append(name)
        results[(T, N)] = res
        rows.append(((T, N), res))
    print(f"{'T x N':<14}" + "".join(f"{n:>26}" for n in names_seen))
    for (T, N), res in rows:
        base = res.get(baseline)
        cells = []
        for n in names_seen:
            if n not in res:
                cells.append(f"{'-':>26}")
            elif base is None:
                cells.append(f"{res[n] * 1e3:>17.3f}{'':>9}")
            else:
                cells.append(f"{res[n] * 1e3:>15.3f} ({base / res[n]:>7.1f}x)")
        print(f"{T:>9} x {N:<3}" + "".join(cells))
    return results


# ----------------------------------------------------------------------------- n-step sampling
def nstep_ops(N):
    """A filled buffer with N streams and the four sampling calls to compare."""
    rng = np.random.default_rng(0)
    buf = fastrl.ReplayBuffer(100_000, observation_shape=(8,), num_envs=N, seed=0)
    k = 100_000
    buf.extend(rng.normal(size=(k, 8)).astype(np.float32), rng.integers(0, 4, k),
               rng.normal(size=k).astype(np.float32), rng.normal(size=(k, 8)).astype(np.float32),
               rng.random(k) < 0.01, rng.random(k) < 0.002)
    b = buf.sample(4096, n_step=3, gamma=GAMMA)  # sanity: discounts in {g, g^2, g^3}, mostly g^3
    d = b.discounts.numpy()[:, None]
    assert np.isclose(d, [GAMMA, GAMMA**2, GAMMA**3], rtol=1e-6).any(axis=1).all()
    assert np.isclose(d[:, 0], GAMMA**3).mean() > 0.9
    plain_out, nstep_out = buf.empty_batch(256), buf.empty_batch(256, discounts=True)
    return {
        "sample(256)": lambda: buf.sample(256),
        "sample(256, n_step=3)": lambda: buf.sample(256, n_step=3, gamma=GAMMA),
        "sample_into(256)": lambda: buf.sample_into(plain_out),
        "sample_into(256, n_step=3)": lambda: buf.sample_into(nstep_out, n_step=3, gamma=GAMMA),
    }


def bench_nstep(repeats, quick):
    out = {}
    print("\nreplay buffer sampling, capacity 100000, obs float32[8]  (us per call; x = this / plain sample)")
    print(f"{'num_envs':<10}{'sample(256)':>16}{'n_step=3':>22}{'sample_into':>16}{'n_step=3 into':>22}")
    for N in (1, 16):
        ops = nstep_ops(N)
        # interleaved rounds, so that a change of machine load hits every op alike
        rounds: dict[str, list[float]] = {k: [] for k in ops}
        for _ in range(repeats * 3):
            for k, fn in ops.items():
                rounds[k].append(median_s(fn, 1, 0.02 if quick else 0.05))
        r = {k: statistics.median(v) for k, v in rounds.items()}
        out[N] = r
        p, n_, pi, ni = (r[k] * 1e6 for k in r)
        print(f"{N:<10}{p:>16.2f}{n_:>14.2f} ({n_ / p:.2f}x){pi:>16.2f}{ni:>14.2f} ({ni / pi:.2f}x)")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats, sizes up to 10^5")
    p.add_argument("--out", default="bench_out", help="folder for the PNG chart")
    args = p.parse_args(argv)
    repeats = 3 if args.quick else 7
    Ts = [10**3, 10**4, 10**5] + ([] if args.quick else [10**6])
    sizes = [(T, N) for N in (1, 16) for T in Ts]
    optional = []
    for mod in ("torchrl", "tianshou"):
        try:
            m = __import__(mod)
            optional.append(f"{mod} {m.__version__}")
        except ImportError:
            optional.append(f"{mod} not installed")
    print(f"fastrl {fastrl.__version__}, numpy {np.__version__}, torch {torch.__version__} (1 thread), "
          f"{', '.join(optional)}, python {sys.version.split()[0]}, {os.cpu_count()} cpus; medians of "
          f"{repeats} repeats; gamma {GAMMA}, lambda {LAM}, float32, episode ends ~1/333 steps")
    limits = {k: min(v, 2 * 10**5) for k, v in SLOW_LIMITS.items()} if args.quick else SLOW_LIMITS
    limits = dict(limits, **{"itertools.accumulate": SLOW_LIMITS["itertools.accumulate"]})
    disc = run_table("discounted returns", sizes, discounted_competitors, "itertools.accumulate", repeats, limits)
    gae_sizes = sorted(set(sizes) | {(2048, 16)}, key=lambda s: (s[1], s[0]))
    gae = run_table("GAE", gae_sizes, gae_competitors, "numpy loop", repeats, limits)
    nstep = bench_nstep(repeats, args.quick)

    print("\ntargets (same run):")
    big = (max(Ts), 1)
    if "itertools.accumulate" in disc.get(big, {}):
        x = disc[big]["itertools.accumulate"] / disc[big]["fastrl"]
        print(f"  discounted returns, T={big[0]}: {x:.0f}x itertools.accumulate (target >= 50x)")
    g = gae[(2048, 16)]
    for name in ("torchrl gae", "torchrl vec_gae", "tianshou numba"):
        if name in g:
            print(f"  GAE [2048, 16]: fastrl {g['fastrl'] * 1e6:.1f} us, {name} {g[name] * 1e6:.1f} us "
                  f"({g[name] / g['fastrl']:.1f}x; target > 1x)")
    for N, r in nstep.items():
        print(f"  num_envs={N}: sample(256, n_step=3) / sample(256) = "
              f"{r['sample(256, n_step=3)'] / r['sample(256)']:.2f} (target <= 1.5)")
    plot(disc, gae, nstep, args.out)


def plot(disc, gae, nstep, out):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart")
        return
    os.makedirs(out, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    for ax, (title, res) in zip(axes[:2], (("discounted returns", disc), ("GAE", gae))):
        names = sorted({n for r in res.values() for n in r})
        for i, name in enumerate(names):
            for N, style in ((1, "-"), (16, "--")):
                pts = sorted((T, r[name]) for (T, n), r in res.items() if n == N and name in r)
                if pts:
                    ax.plot([T * N for T, _ in pts], [s * 1e3 for _, s in pts], style, marker="o", color=f"C{i}",
                            label=f"{name} (N={N})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("elements T x N")
        ax.set_ylabel("ms per call (log)")
        ax.set_title(title)
        ax.legend(fontsize=7)
    ax = axes[2]
    ops = list(next(iter(nstep.values())))
    w = 0.8 / len(nstep)
    for k, (N, r) in enumerate(nstep.items()):
        ax.bar(np.arange(len(ops)) + k * w, [r[o] * 1e6 for o in ops], w, label=f"num_envs={N}")
    ax.set_xticks(np.arange(len(ops)) + 0.4 - w / 2, ops, rotation=15, fontsize=8)
    ax.set_ylabel("us per call")
    ax.set_title("replay buffer: n-step vs plain sampling (B=256)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, "bench_returns.png")
    fig.savefig(path, dpi=110)
    print(f"\nchart: {path}")


if __name__ == "__main__":
    main()
