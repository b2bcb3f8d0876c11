"""Tuning benchmark: LunarLander-v3 DQN, a pruned Optuna search against the same search unpruned,
then the best configuration found against today's preset on fresh seeds.

1. ``pruned``: ``fastrl tune`` of the DQN preset over SPACE, 32 trials of 50,000 steps, 2 seeds each,
   objective auc, the ``--pruner`` (default halving), TPE seed 0.
2. ``unpruned``: the same search (same sampler seed) with ``--pruner none``.
   Printed: env steps each spent (target: pruned <= 60% of unpruned) and their best values.
3. ``confirm``: the pruned search's best.json and the preset (``fastrl.agents.preset``), each on 3
   fresh seeds (100, 101, 102), trained until the greedy evaluation (20 episodes every 5,000 steps)
   reaches 200, at most 300,000 steps. Printed: median env steps to 200 of each (target: best < preset).

Every stage resumes: the searches are tune directories (re-running continues the study), the
confirmation runs are run directories with checkpoints (finished ones are skipped). Run the stages
one at a time with ``--stage`` (each prints what it found so far). A chart goes to ``<root>/bench_tune.png``.

    python benchmarks/bench_tune.py --estimate                  # 4 trials x 10,000 steps: times it, projects the full run
    python benchmarks/bench_tune.py --root bench_out/tune       # the full benchmark (hours on one core)
    python benchmarks/bench_tune.py --stage pruned              # one stage at a time, resumable
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from fastrl.agents import DQNConfig, preset
from fastrl.config import from_dict, to_dict, with_overrides
from fastrl.experiments.executors import run_local
from fastrl.experiments.manifest import read_result
from fastrl.experiments.report import pyplot
from fastrl.experiments.tune import plan_tune, run_tune
from fastrl.experiments.tune_report import TuneReport, format_tune_table

ENV = "LunarLander-v3"
SPACE = [
    "learning_rate=1e-4:3e-3:log",
    "batch_size=32,64,128",
    "train_freq=1:4",
    "gamma=0.98,0.99,0.995",
    "tau=0.001:0.05:log",
    "epsilon_decay=0.9:0.99",
    "n_step=1,3",
    "hidden_sizes=64,64;128,128;256,256",
]
TUNE_SETS = {"eval_every": 5_000, "eval_episodes": 10}  # 10 evaluations of 10 episodes per 50k-step run
CONFIRM = {"eval_every": 5_000, "eval_episodes": 20, "solved_threshold": 200.0, "solve_on": "eval"}
FRESH_SEEDS = (100, 101, 102)
STEPS_TARGET = 0.60


def search(root: Path, name: str, a: argparse.Namespace, pruner: str) -> TuneReport:
    plan = plan_tune(
        "dqn",
        ENV,
        params=SPACE,
        trials=a.trials,
        steps=a.steps,
        seeds=a.seeds,
        seed=0,
        overrides=TUNE_SETS,
        pruner=pruner,
        out=root / name,
    )
    tic = time.perf_counter()
    report = run_tune(plan, workers=a.workers, tensorboard=False, log=lambda s: print("  " + s, flush=True))
    print(f"{name}: {time.perf_counter() - tic:.0f} s wall this time")
    print(format_tune_table(report, limit=5))
    return report


def confirm(root: Path, a: argparse.Namespace) -> dict[str, list[float | None]]:
    """Median env steps to an evaluation of 200 for best.json and the preset, on fresh seeds."""
    best_file = root / "pruned" / "best.json"
    if not best_file.is_file():
        raise SystemExit(f"{best_file} is missing: run --stage pruned first")
    best = json.loads(best_file.read_text())
    best.pop("algo")
    sets = {**CONFIRM, "total_steps": a.confirm_steps, "checkpoint_every": max(a.confirm_steps // 10, 1_000)}
    configs = {
        "preset": with_overrides(preset("dqn", ENV), sets),
        "best": with_overrides(from_dict(DQNConfig, best), sets),
    }
    tasks = []
    for name, cfg in configs.items():
        for s in FRESH_SEEDS:
            run_dir = (root / "confirm" / name / f"seed{s}").resolve()
            r = read_result(run_dir)
            if r is not None and r["status"] == "ok":
                continue
            tasks.append(
                {
                    "id": f"{name}/seed{s}",
                    "algo": "dqn",
                    "config": to_dict(with_overrides(cfg, {"seed": s})),
                    "run_dir": str(run_dir),
                    "tensorboard": False,
                }
            )
    if tasks:
        print(f"confirm: {len(tasks)} runs to train ({a.confirm_steps} steps at most each)", flush=True)
        run_local(tasks, a.workers, lambda t, r: print(f"  {t['id']}: {r['status']} {r.get('error', '')}", flush=True))
    steps: dict[str, list[float | None]] = {}
    for name in configs:
        steps[name] = []
        for s in FRESH_SEEDS:
            r = read_result(root / "confirm" / name / f"seed{s}") or {"evals": []}
            hit = next((e for e in r["evals"] if e["mean"] >= 200.0), None)
            steps[name].append(float(hit["step"]) if hit else None)
    return steps


def _median(v: list[float | None], cap: float) -> float:
    return statistics.median([x if x is not None else cap * 10 for x in v])  # not reached: past any budget


def chart(root: Path, reports: dict[str, TuneReport], steps: dict[str, list[float | None]] | None) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for name, rep in reports.items():
        rows = sorted(rep.rows, key=lambda r: r["number"])
        total, xs, ys = 0, [], []
        for r in rows:
            total += int(r["env_steps"] or 0)
            xs.append(r["number"])
            ys.append(total)
        axes[0].plot(xs, ys, marker=".", label=f"{name}: {total:,} env steps")
    axes[0].set_xlabel("trial")
    axes[0].set_ylabel("env steps spent (cumulative)")
    axes[0].set_title("pruned vs unpruned search")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    if steps:
        for i, (name, v) in enumerate(steps.items()):
            axes[1].scatter([i] * len(v), [x if x is not None else float("nan") for x in v], label=name)
        axes[1].set_xticks(range(len(steps)), list(steps))
        axes[1].set_ylabel("env steps to greedy evaluation 200")
        axes[1].set_title(f"fresh seeds {', '.join(map(str, FRESH_SEEDS))} (not reached: not drawn)")
        axes[1].grid(alpha=0.3)
    path = root / "bench_tune.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stage", choices=["pruned", "unpruned", "confirm", "all"], default="all")
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--steps", type=int, default=50_000)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--pruner", choices=["median", "halving"], default="halving")
    ap.add_argument("--workers", type=int, default=1, help="trials at a time (default 1: one core)")
    ap.add_argument("--confirm-steps", type=int, default=300_000, help="most steps of a confirmation run")
    ap.add_argument("--root", default="bench_out/tune", help="where the searches and runs go (resumable)")
    ap.add_argument(
        "--estimate",
        action="store_true",
        help="4 trials x 10,000 steps, 20,000-step confirmation "
        "runs into <root>-estimate: time it and project the full benchmark",
    )
    a = ap.parse_args()
    full = {"trials": a.trials, "steps": a.steps, "seeds": a.seeds, "confirm_steps": a.confirm_steps}
    root = Path(a.root)
    if a.estimate:
        a.trials, a.steps, a.confirm_steps = 4, 10_000, 20_000
        root = Path(f"{a.root}-estimate")
    root.mkdir(parents=True, exist_ok=True)
    stages = ["pruned", "unpruned", "confirm"] if a.stage == "all" else [a.stage]
    reports: dict[str, TuneReport] = {}
    steps = None
    wall: dict[str, float] = {}
    for stage in stages:
        print(f"== {stage}", flush=True)
        tic = time.perf_counter()
        if stage == "confirm":
            steps = confirm(root, a)
        else:
            reports[stage] = search(root, stage, a, a.pruner if stage == "pruned" else "none")
        wall[stage] = time.perf_counter() - tic
    ok = True
    print()
    if "pruned" in reports and "unpruned" in reports:
        p, u = reports["pruned"].env_steps, reports["unpruned"].env_steps
        met = p <= STEPS_TARGET * u
        ok &= met
        print(
            f"env steps: pruned {p:,}, unpruned {u:,}: ratio {p / max(u, 1):.3f} "
            f"(target <= {STEPS_TARGET}: {'met' if met else 'NOT met'})"
        )
        for name, rep in reports.items():
            if rep.best is not None:
                print(f"best of {name}: trial {rep.best['number']}, auc {rep.best['value']:.1f}")
    if steps is not None:
        mp, mb = _median(steps["preset"], a.confirm_steps), _median(steps["best"], a.confirm_steps)
        met = mb < mp
        ok &= met
        show = {k: [f"{x:,.0f}" if x is not None else "not reached" for x in v] for k, v in steps.items()}
        print(f"env steps to greedy eval 200, seeds {FRESH_SEEDS}: preset {show['preset']}, best {show['best']}")
        print(
            f"median: best {mb:,.0f} vs preset {mp:,.0f} (target best < preset: {'met' if met else 'NOT met'}; "
            "not reached counts as 10x the budget)"
        )
    if reports or steps:
        print(f"chart: {chart(root, reports, steps)}")
    if a.estimate:
        _project(reports, wall, a, full)
        return 0
    return 0 if ok else 1


def _project(
    reports: dict[str, TuneReport], wall: dict[str, float], a: argparse.Namespace, full: dict[str, Any]
) -> None:
    """Seconds per env step measured here, times the env steps of the full benchmark."""
    if "unpruned" not in reports or "pruned" not in reports or "confirm" not in wall:
        print("estimate: run all three stages (--stage all) to project the full benchmark")
        return
    u = reports["unpruned"]
    per_step = wall["unpruned"] / max(u.env_steps, 1)
    unpruned = full["trials"] * full["seeds"] * full["steps"]
    pruned = STEPS_TARGET * unpruned
    confirm_steps = 2 * len(FRESH_SEEDS) * full["confirm_steps"]
    conf_per_step = wall["confirm"] / max(2 * len(FRESH_SEEDS) * a.confirm_steps, 1)
    total = (unpruned + pruned) * per_step + confirm_steps * conf_per_step
    print(
        f"estimate: {per_step * 1e3:.2f} ms per env step in a search (evaluations, reports and start-up included), "
        f"{conf_per_step * 1e3:.2f} ms in a confirmation run, on {a.workers} worker(s)"
    )
    print(
        f"full benchmark: unpruned {unpruned:,} env steps ~{unpruned * per_step / 3600:.1f} h; pruned at most "
        f"~{pruned:,.0f} ~{pruned * per_step / 3600:.1f} h (at the 60% target); confirmation at most "
        f"{confirm_steps:,} ~{confirm_steps * conf_per_step / 3600:.1f} h (less: runs stop at 200)"
    )
    print(f"full benchmark: about {total / 3600:.1f} h at most with {a.workers} worker(s)")


if __name__ == "__main__":
    sys.exit(main())
