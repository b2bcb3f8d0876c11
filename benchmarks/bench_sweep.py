"""Sweep benchmark: one grid run one after another, in parallel worker processes, and through Ray.

The seed course's grid (buffer size 1000, 10000, 100000 x target-update interval 10, 100, 1000) with
3 seeds of 20,000-step CartPole-v1 DQN runs (27 runs, the preset otherwise) is run three times,
each into a fresh sweep directory: the local executor with 1 worker (sequential), with --workers
(parallel), and the Ray executor on a local instance with --workers CPUs. It prints the wall times,
the parallel / sequential ratio (target: <= 1/1.7 = 0.588 on 2 cores) and whether the three
summaries agree in every non-timing column (exit status 1 if not). A bar chart goes to bench_out/.

    python benchmarks/bench_sweep.py                         # the full benchmark (27 runs x 3)
    python benchmarks/bench_sweep.py --seeds 1 --steps 2000  # a quick check (9 runs x 3)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from fastrl.experiments.report import differences
from fastrl.experiments.sweep import plan_sweep, run_sweep

TARGET = 1 / 1.7


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray executor")
    ap.add_argument("--out", default="bench_out", help="folder for the PNG chart")
    ap.add_argument("--keep", help="keep the sweep directories here (default: a temp dir)")
    a = ap.parse_args()
    grid = ["buffer_size=1000,10000,100000", "target_update_interval=10,100,1000"]
    modes = [("sequential", "local", 1), ("parallel", "local", a.workers)]
    if not a.no_ray:
        try:
            import ray  # noqa: F401

            modes.append(("ray", "ray", a.workers))
        except ImportError:
            print("ray is not installed: skipping the Ray executor (pip install 'fastrl[ray]')")
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    times, reports = {}, {}
    for name, executor, workers in modes:
        plan = plan_sweep("dqn", "CartPole-v1", grid=grid, seeds=a.seeds, steps=a.steps,
                          out=root / name)
        if (plan.out / "sweep.json").exists():
            raise SystemExit(f"{plan.out} exists: give --keep an empty folder")
        n = len(plan.configs) * len(plan.seeds)
        print(f"{name}: {n} runs ({executor} executor, {workers} worker(s)) ...", flush=True)
        tic = time.perf_counter()
        reports[name] = run_sweep(plan, executor=executor, workers=workers,  # type: ignore[arg-type]
                                  log=lambda s: None)
        times[name] = time.perf_counter() - tic
        mean_train = sum(r["train_seconds_mean"] or 0.0 for r in reports[name].summary) / len(
            reports[name].summary)
        failed = sum(r["status"] != "ok" for r in reports[name].runs)
        print(f"  {times[name]:8.1f} s wall, {mean_train:.1f} s mean training time per run"
              + (f", {failed} runs not ok" if failed else ""), flush=True)

    print()
    print(f"{'executor':<12} {'workers':>7} {'wall s':>9} {'vs sequential':>14}")
    for name, _, workers in modes:
        print(f"{name:<12} {workers:>7} {times[name]:>9.1f} "
              f"{times[name] / times['sequential']:>14.3f}")
    ratio = times["parallel"] / times["sequential"]
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(f"parallel / sequential = {ratio:.3f} (target <= {TARGET:.3f}: {verdict}); "
          f"speed-up {1 / ratio:.2f}x with {a.workers} workers")
    agree = True
    for name, rep in reports.items():
        if name == "sequential":
            continue
        diff = differences(reports["sequential"].summary, rep.summary)
        diff += differences(reports["sequential"].runs, rep.runs)
        agree &= not diff
        print(f"summary {name} vs sequential: "
              + ("identical in every non-timing column" if not diff
                 else f"{len(diff)} differences, e.g. {diff[:3]}"))
    best = reports["sequential"].best("auc")
    if best is not None:
        print(f"best configuration by auc: {best['label']} ({best['auc_mean']:.1f})")
    print(f"sweep directories: {root}")
    _chart(times, modes, Path(a.out) / "bench_sweep.png", a)
    return 0 if agree else 1


def _chart(times: dict[str, float], modes: list, out: Path, a: argparse.Namespace) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
    names = [m[0] for m in modes]
    ax.bar(names, [times[n] for n in names], color=["grey", "tab:blue", "tab:orange"][: len(names)])
    ax.axhline(times["sequential"] * TARGET, color="red", linestyle="--", linewidth=0.8,
               label="target: sequential / 1.7")
    ax.set_ylabel("wall seconds")
    ax.set_title(f"3x3 grid x {a.seeds} seeds x {a.steps} steps, CartPole-v1 DQN", fontsize=10)
    ax.legend(fontsize=8)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    print(f"chart: {out}")


if __name__ == "__main__":
    sys.exit(main())
