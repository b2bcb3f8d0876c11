"""Hyper-parameter sweeps: a grid or a random search over config fields, several seeds each.

``plan_sweep(...)`` expands the search and checks every configuration before any run starts
(ConfigError, one line); ``run_sweep(plan, ...)`` runs what is not finished yet, locally in worker
processes or on Ray, and writes the report. The pieces: :mod:`~fastrl.experiments.plan` (parsing
and expansion), :mod:`~fastrl.experiments.manifest` (the sweep directory's files),
:mod:`~fastrl.experiments.executors` (where runs execute), :mod:`~fastrl.experiments.report`.
A sweep directory holds:

    sweep.json                       the manifest: algorithm, env, configurations, seeds, run dirs
    c00_buffer_size=1000_.../seed0/  one run directory per configuration x seed, as `fastrl train`
                                     writes it, plus result.json (status, error, evaluations)
    runs.csv summary.csv curves.png heatmap.png    the report

Re-running the same sweep resumes it: runs whose result.json says ``ok`` are skipped, the others
resume from their checkpoints (failed runs are retried). A different sweep into the same
directory is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from fastrl.config import ConfigError
from fastrl.experiments.executors import Task, run_local, run_ray, worker_plan
from fastrl.experiments.manifest import Result, plan_digest, prepare_dir, read_result
from fastrl.experiments.plan import Dimension, SweepPlan, base_config, expand
from fastrl.experiments.report import Report, check_metric, write_report
from fastrl.training.envs import make_env


def plan_sweep(
    algo: str,
    env_id: str,
    *,
    grid: Mapping[str, Sequence[Any]] | Sequence[str] = (),
    ranges: Mapping[str, Dimension] | Sequence[str] = (),
    random: int = 0,
    search_seed: int = 0,
    seeds: int = 1,
    steps: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    preset: str = "default",
) -> SweepPlan:
    """Expand and check a sweep; nothing runs. ``grid``/``ranges`` take parsed dicts or the CLI
    strings. Without ``random`` the grid is crossed; with it, ``random`` points are drawn from the
    grid's lists (as choices) and the ranges. Seeds are ``seed, seed + 1, ...`` of the base config,
    which is the ``preset`` (a name from ``preset_names``) of ``algo`` on ``env_id`` with ``overrides``.
    """
    base = base_config(algo, env_id, overrides, steps, preset)
    plan = expand(algo, env_id, base, grid, ranges, random, search_seed, seeds)
    plan.preset = preset
    make_env(env_id).close()  # an unknown env fails here, not in every run
    plan.out = (
        Path(out) if out is not None else Path("sweeps") / f"{env_id.replace('/', '-')}-{algo}-{plan_digest(plan)}"
    )
    return plan


def run_sweep(
    plan: SweepPlan,
    *,
    executor: Literal["local", "ray"] = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    tensorboard: bool = True,
    threshold: float | None = None,
    metric: str = "auc",
    log: Callable[[str], None] = print,
) -> Report:
    """Run every unfinished run of ``plan``, then write the report and return it. Finished runs
    are skipped, interrupted ones resume."""
    check_metric(metric)
    if executor not in ("local", "ray"):
        raise ConfigError(f"unknown executor {executor!r}; use local or ray")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    prepare_dir(plan)
    tasks = plan.tasks(tensorboard)
    todo, done, resume = [], 0, 0
    for t in tasks:
        r = read_result(Path(t["run_dir"]))
        if r is not None and r["status"] == "ok":
            done += 1
            continue
        todo.append(t)
        resume += (Path(t["run_dir"]) / "checkpoints" / "last.pt").is_file()
    n_workers, where = worker_plan(executor, workers, len(todo), ray_address)
    log(
        f"sweep {plan.out}: {len(tasks)} runs ({len(plan.configs)} configurations x "
        f"{len(plan.seeds)} seeds); {done} finished (skipped), {resume} to resume, "
        f"{len(todo) - resume} new; {where}"
    )
    if todo:
        progress = _Progress(done, len(tasks), log)
        if executor == "ray":
            run_ray(todo, workers, ray_address, progress)
        else:
            run_local(todo, n_workers, progress)
    return write_report(plan.out, threshold=threshold, metric=metric)


class _Progress:
    """The executors' ``on_result``: one line per finished run, ``[k/n] id: final, best (time)``."""

    def __init__(self, done: int, total: int, log: Callable[[str], None]) -> None:
        self.count, self.total, self.log = done, total, log

    def __call__(self, task: Task, result: Result) -> None:
        self.count += 1
        evals = result.get("evals") or []
        if result["status"] == "ok":
            what = (
                f"final {evals[-1]['mean']:.1f}, best {max(e['mean'] for e in evals):.1f}" if evals else "no evaluation"
            )
        else:
            what = f"FAILED: {result['error']}"
        resumed = f", resumed at {result['resumed_from']}" if result.get("resumed_from") else ""
        self.log(f"[{self.count}/{self.total}] {task['id']}: {what} ({result.get('wall_seconds', 0.0):.1f} s{resumed})")


__all__ = ["plan_sweep", "run_sweep"]
