"""Many collectors, one learner: scaling on a slow simulator, and learning unchanged.

1. ``scaling``: DQN on ``slow_env:SlowCartPole-v1`` (CartPole-v1 sleeping ``--delay`` seconds a
   step: an expensive simulator that does not use the CPU, so this 2-core machine can host many
   collectors), ``replay_ratio_mode=free`` (the learner updates as fast as it can), 1, 2, 4, 8
   collectors of one env each, for each backend. Printed: env steps per second and learner updates
   per second over the training time (start-up excluded), the speed-up over one collector (target
   >= 0.8 N) and the learner's updates per second against one collector's (target within 10%).
   ``--repeats`` rounds of one run per count, interleaved; medians over rounds, the ratios taken within
   each round (so a drift of this shared machine's speed falls on every count alike).
2. ``learning``: LunarLander-v3 with the DQN preset, sequential and with 4 collectors in ``fixed``
   mode (the sequential loop's updates per env step), seeds 0, 1, 2, until the greedy evaluation
   reaches 200. Printed: env steps to 200 of each (target: 3/3 with collectors, within the
   sequential runs' spread), and a Mann-Whitney rank test of the two sets (scipy, in the ``bench``
   extra): with 3 seeds each, "within the spread" fails ~80% of the time for identical distributions.
   ``--sequential-seeds`` measures the sequential spread on more seeds (with 16, identical
   distributions pass 70% of the time; the fraction is printed).

    python benchmarks/bench_actors.py --part scaling [--pin]    # a few minutes; --pin: the learner alone on CPU 0
    python benchmarks/bench_actors.py --part learning           # tens of minutes on 2 cores
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

_HERE = str(Path(__file__).resolve().parent)
sys.path.insert(0, _HERE)  # slow_env, for this process and its spawned children
# and for Ray's workers, which a local Ray starts with the driver's environment
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_HERE, os.environ.get("PYTHONPATH")) if p)

from fastrl.agents import preset  # noqa: E402
from fastrl.config import with_overrides  # noqa: E402
from fastrl.training.trainer import Trainer  # noqa: E402

SLOW = "slow_env:SlowCartPole-v1"


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc): collector processes, Ray's services and workers."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


class Pinning:
    """``--pin``: the learner on the first CPU, everything it starts on the others (checked every
    0.2 s, so restarted collectors and new Ray workers follow), so that collectors take no CPU time
    from the learner: what the learner's updates per second compare on a machine with few cores."""

    def __init__(self) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        self.learner, self.rest = {cpus[0]}, set(cpus[1:]) or {cpus[0]}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            for pid in descendants(os.getpid()):
                try:
                    if os.sched_getaffinity(pid) != self.rest:
                        os.sched_setaffinity(pid, self.rest)
                except OSError:
                    pass

    def __enter__(self) -> Pinning:
        self.all = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.learner)  # threads started later (the pinning thread's too) inherit it
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        os.sched_setaffinity(0, self.all)


def one_scaling_run(n: int, backend: str, steps_each: int, root: Path, pin: bool = False) -> tuple[float, float]:
    cfg = with_overrides(
        preset("dqn", "CartPole-v1"),
        {
            "env_id": SLOW,
            "collectors": n,
            "collector_envs": 1,
            "collector_backend": backend,
            "replay_ratio_mode": "free",
            "total_steps": steps_each * n,
            "learning_starts": 200 * n,
            "eval_every": 0,
            "eval_episodes": 1,
            "checkpoint_every": 0,
            "save_buffer": False,
            "solved_threshold": None,
        },
    )
    t = Trainer(cfg, run_dir=root / f"{backend}-{n}", progress=False, tensorboard=False)
    try:
        with Pinning() if pin else contextlib.nullcontext():
            r = t.train()
        secs = r.train_seconds
        return r.env_steps / secs, t.concurrent_stats["updates"] / secs
    finally:
        t.close()


def scaling(a: argparse.Namespace) -> bool:
    """Rounds of one run per collector count, interleaved, so a drift in the machine's speed (it is
    shared) falls on every count alike; each count's ratios to one collector are taken within a round
    and their median is printed."""
    ok = True
    base = a.collectors[0]
    with tempfile.TemporaryDirectory() as tmp:
        for backend in a.backends:
            runs: dict[int, list[tuple[float, float]]] = {n: [] for n in a.collectors}
            for i in range(a.repeats):
                for n in a.collectors:
                    runs[n].append(one_scaling_run(n, backend, a.steps_each, Path(tmp) / f"{i}-{n}", a.pin))
                    sps, ups = runs[n][-1]
                    print(f"  {backend} round {i}, {n} collector(s): {sps:,.0f} env steps/s, {ups:,.0f} updates/s",
                          flush=True)
            print(f"\n{backend}: collectors | env steps/s | speed-up (target >= 0.8 N) | updates/s | vs one collector")
            for n, rs in runs.items():
                sps, ups = statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)
                speed = statistics.median(r[0] / b[0] for r, b in zip(rs, runs[base]))
                rel = statistics.median(r[1] / b[1] for r, b in zip(rs, runs[base]))
                ok &= speed >= 0.8 * n and abs(rel - 1) <= 0.10
                print(
                    f"{backend}: {n:>10} | {sps:>11,.0f} | {speed:>5.2f}x ({'met' if speed >= 0.8 * n else 'NOT met'})"
                    f" | {ups:>9,.0f} | {rel:.2f}x ({'met' if abs(rel - 1) <= 0.10 else 'NOT met'})"
                )
    return ok


def learning(a: argparse.Namespace) -> bool:
    base = with_overrides(
        preset("dqn", "LunarLander-v3"),
        {"eval_every": 5_000, "eval_episodes": 20, "solved_threshold": 200.0, "solve_on": "eval",
         "total_steps": a.max_steps, "checkpoint_every": 0, "save_buffer": False},
    )
    found: dict[str, list[float | None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs: list[tuple[str, dict[str, Any]]] = [("sequential", {})]
        if a.four_envs:  # the same 4 env streams, sequential, and the same updates per env step
            # (train_freq counts vector steps): separates the streams from the collectors
            runs.append(("sequential, num_envs=4", {"num_envs": 4, "gradient_steps": 4 * base.gradient_steps}))
        runs.append(("4 collectors", {"collectors": 4, "collector_envs": 1}))
        for name, sets in runs:
            found[name] = []
            for seed in a.seeds if sets.get("collectors") else a.sequential_seeds or a.seeds:
                cfg = with_overrides(base, {**sets, "seed": seed})
                t = Trainer(cfg, run_dir=Path(tmp) / f"{name}-{seed}", progress=False, tensorboard=False)
                try:
                    r = t.train()
                finally:
                    t.close()
                hit = r.first_reaching(200.0)
                found[name].append(hit["step"] if hit else None)
                print(f"  {name} seed {seed}: {hit['step'] if hit else 'not reached'} env steps to 200 "
                      f"({r.train_seconds:.0f} s)", flush=True)
    seq = [x for x in found["sequential"] if x is not None]
    par = found["4 collectors"]
    reached = all(x is not None for x in par)
    within = reached and bool(seq) and all(min(seq) <= x <= max(seq) for x in par if x is not None)
    print("")
    for name, steps in found.items():
        print(f"{name}: {steps}")
    print(f"4 collectors reach 200 on {sum(x is not None for x in par)}/{len(par)} seeds "
          f"({'met' if reached else 'NOT met'}); within the sequential spread: {'yes' if within else 'no'}")
    if seq and par:  # how often runs from one distribution pass: the two extremes of all must be sequential
        m, n = len(seq), len(par)
        print(f"(were both sets from one distribution, {m} sequential and {n} collector runs would pass "
              f"this {m * (m - 1) / ((m + n) * (m + n - 1)):.0%} of the time)")
    # Seed by seed, "within the spread" is a coin flip even for identical distributions (3 seeds
    # each: about 20% of orderings pass), so also compare the two sets of steps as distributions.
    done = [x for x in par if x is not None]
    if len(seq) >= 2 and len(done) >= 2:
        try:
            from scipy.stats import mannwhitneyu
        except ImportError:
            print("(scipy not installed: pip install '.[bench]' for the rank test)")
        else:
            u = mannwhitneyu(done, seq, alternative="two-sided")
            print(f"medians: sequential {statistics.median(seq):.0f}, 4 collectors {statistics.median(done):.0f}; "
                  f"Mann-Whitney U = {u.statistic:.1f}, two-sided p = {u.pvalue:.2f} (over {len(seq)} and "
                  f"{len(done)} seeds)")
    return reached


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["scaling", "learning", "all"], default="scaling")
    ap.add_argument("--collectors", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--backends", nargs="+", default=["process", "ray"])
    ap.add_argument("--steps-each", type=int, default=2_000, help="env steps per collector in a scaling run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pin", action="store_true", help="scaling: the learner alone on the first CPU (see Pinning)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sequential-seeds", type=int, nargs="+", default=None,
                    help="learning: the sequential runs' seeds, when its spread is to be measured on more "
                    "seeds than the collectors' runs (default: --seeds)")
    ap.add_argument("--max-steps", type=int, default=300_000)
    ap.add_argument("--four-envs", action="store_true",
                    help="learning: also a sequential run with num_envs=4 and 4x gradient_steps (the 4 "
                         "collectors' stream count, the same updates per env step)")
    a = ap.parse_args()
    ok = True
    if a.part in ("scaling", "all"):
        ok &= scaling(a)
    if a.part in ("learning", "all"):
        ok &= learning(a)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
