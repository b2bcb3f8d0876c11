"""One tuning trial, as a worker runs it: its K seeds trained in lockstep in one process, the mean
over seeds reported to the Optuna study after each round of evaluations, stopped when the pruner
says so.

**Lockstep.** The K runs of a trial are K :class:`~fastrl.training.trainer.Trainer` s in one
process (one CPU), each in its own thread, but only one running at a time: the run with the fewest
evaluations goes on to its next evaluation (an ``eval_hooks`` callback where it waits for its next
turn), so all K reach evaluation ``r`` before any reaches ``r + 1``. Each run keeps its own torch
random state across turns, so every seed's run is the run ``fastrl train --seed s`` makes with the
same config, and an interrupted trial resumes its runs from their checkpoints exactly as a sweep does.

**What is reported.** Round ``r`` is complete when every seed has its ``r``-th evaluation (a seed
that stopped early, having reached its ``solved_threshold``, holds its last one). At step
``max(step of the round)`` the trial reports the mean over seeds of the objective measured on the
curves so far:

- ``auc``: the mean evaluation return over ``[first evaluation, this step]`` (the run's AUC with
  the budget cut at this step; at the last round it is the objective itself);
- ``final``: the evaluation return of the round;
- ``steps_to_threshold``: the step at which the seed first reached the threshold, or, if it has
  not yet, this step (a lower bound of its final value; a seed that ended without reaching it counts
  as the budget). Median pruning then stops a trial once most others had reached the threshold by
  a step at which it had not.

The trial's value is the mean over seeds of the objective of each seed's whole run
(:func:`seed_value`); for ``steps_to_threshold`` a seed that never reached the threshold counts as
the budget (a censored value, so the mean is a lower bound for such trials).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from fastrl.agents.registry import ALGOS
from fastrl.config import ConfigError, from_dict
from fastrl.experiments.executors import Task, failed_result, first_line, one_thread, open_trainer, run_lock
from fastrl.experiments.manifest import Result, write_result
from fastrl.experiments.report import area_under_curve, run_metrics
from fastrl.training.trainer import Trainer, TrainResult

OBJECTIVES = {"auc": "maximize", "final": "maximize", "steps_to_threshold": "minimize"}
PRUNERS = ("median", "halving", "none")
SQLITE_TIMEOUT_S = 120  # workers and the tuner share one SQLite file; writes wait for each other

Rows = list[dict[str, float]]


# ---------------------------------------------------------------------------- Optuna pieces
def optuna_module() -> Any:
    """``optuna``, or a one-line ConfigError naming the extra that installs it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError('fastrl tune needs Optuna: pip install "fastrl[tune]"') from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_storage(url: str) -> Any:
    """Optuna's RDB storage at ``url`` (SQLite writers wait up to SQLITE_TIMEOUT_S for the lock)."""
    optuna = optuna_module()
    kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def make_pruner(name: str, budget: int, eval_every: int) -> Any:
    """``median``: Optuna's MedianPruner (after 5 finished trials, from a fifth of the budget on, a
    trial whose value is worse than the median of the others' at the same step stops);
    ``halving``: asynchronous successive halving (rungs at ``r, 3r, 9r, ...`` env steps,
    ``r = max(eval_every, budget / 27)``, the best third of each rung goes on); ``none``: no pruning."""
    optuna = optuna_module()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=budget // 5)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(eval_every, budget // 27, 1), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner {name!r}; use {', '.join(PRUNERS)}")


# ---------------------------------------------------------------------------- values
def seed_value(objective: str, evals: Rows, budget: float, threshold: float | None) -> float | None:
    """The objective of one seed's whole run (None without evaluations)."""
    if not evals:
        return None
    m = run_metrics(evals, budget, threshold)
    if objective == "steps_to_threshold":
        return m["steps_to_threshold"] if m["steps_to_threshold"] is not None else float(budget)
    return m[objective]


def round_value(
    objective: str, rows: Sequence[Rows], done: Sequence[bool], r: int, budget: float, threshold: float | None
) -> tuple[int, float]:
    """``(step, value)`` reported after round ``r`` (see the module docstring); every seed has at
    least ``r + 1`` evaluations or has ended."""
    cut = [seed_rows[: r + 1] for seed_rows in rows]
    step = max(int(c[-1]["step"]) for c in cut)
    values = []
    for c, finished, seed_rows in zip(cut, done, rows):
        if objective == "auc":
            values.append(area_under_curve([e["step"] for e in c], [e["mean"] for e in c], step))
        elif objective == "final":
            values.append(float(c[-1]["mean"]))
        else:
            hit = next((e for e in c if threshold is not None and e["mean"] >= threshold), None)
            ended = finished and len(seed_rows) <= r + 1
            values.append(float(hit["step"]) if hit else float(budget) if ended else float(step))
    return step, sum(values) / len(values)


# ---------------------------------------------------------------------------- lockstep
class _Stop(Exception):
    """Raised in a run's thread (at its evaluation) to end it: the trial was pruned or failed."""


class Lockstep:
    """Train ``trainers`` in one process, one at a time, the one with the fewest evaluations first.

    ``rng_states[i]``: trainer ``i``'s torch random state at the start of its training (taken
    right after it was built or restored). ``on_progress(rows, done)`` is called in the calling
    thread after every evaluation or end of a run; it returns True to stop every run (pruning).
    """

    def __init__(self, trainers: Sequence[Trainer], rng_states: Sequence[torch.Tensor]) -> None:
        self.trainers = list(trainers)
        self.rows: list[Rows] = [list(t.state.evals) for t in trainers]
        self.done = [False] * len(trainers)
        self.results: list[TrainResult | None] = [None] * len(trainers)
        self._rng = list(rng_states)
        self._go = [threading.Semaphore(0) for _ in trainers]
        self._back: queue.SimpleQueue[tuple[int, str, Any]] = queue.SimpleQueue()
        self._stop = False
        for i, t in enumerate(trainers):
            t.eval_hooks.append(self._hook(i))

    def _hook(self, i: int) -> Callable[[dict[str, float]], None]:
        def pause(row: dict[str, float]) -> None:  # in run i's thread, after each evaluation
            self._rng[i] = torch.get_rng_state()
            self._back.put((i, "eval", dict(row)))
            self._go[i].acquire()
            torch.set_rng_state(self._rng[i])
            if self._stop:
                raise _Stop

        return pause

    def _body(self, i: int) -> None:
        self._go[i].acquire()
        try:
            if self._stop:
                raise _Stop
            torch.set_rng_state(self._rng[i])
            self._back.put((i, "done", self.trainers[i].train()))
        except _Stop:
            self._back.put((i, "stopped", None))
        except BaseException as e:  # noqa: BLE001  handed to the calling thread
            self._back.put((i, "error", e))

    def run(self, on_progress: Callable[[list[Rows], list[bool]], bool]) -> bool:
        """Train until every run ended (False) or ``on_progress`` asked to stop (True)."""
        threads = [threading.Thread(target=self._body, args=(i,), daemon=True) for i in range(len(self.trainers))]
        for th in threads:
            th.start()
        alive = set(range(len(self.trainers)))
        stopped = False
        try:
            while alive:
                i = min(alive, key=lambda j: (len(self.rows[j]), j))
                kind, payload = self._turn(i)
                if kind == "error":
                    alive.discard(i)
                    raise payload
                if kind == "eval":
                    self.rows[i].append(payload)
                else:
                    alive.discard(i)
                    self.done[i] = True
                    self.results[i] = payload
                if on_progress(self.rows, self.done):
                    stopped = True
                    break
        finally:  # pruned, or an error here or in a run: end the runs still going
            self._stop = True
            for i in sorted(alive):
                with contextlib.suppress(Exception):
                    self._turn(i)
            for th in threads:
                th.join(timeout=60)
        return stopped

    def _turn(self, i: int) -> tuple[str, Any]:
        self._go[i].release()
        j, kind, payload = self._back.get()
        if j != i:
            raise RuntimeError(f"run {j} of a trial answered during run {i}'s turn")
        return kind, payload


# ---------------------------------------------------------------------------- the worker's task
class _Reporter:
    """``on_progress`` of a trial: reports each complete round to the Optuna trial, asks the pruner."""

    def __init__(self, task: Task, trial: Any) -> None:
        self.task, self.trial = task, trial
        self.reported: list[tuple[int, float]] = []
        self.pruned_at: int | None = None

    def __call__(self, rows: list[Rows], done: list[bool]) -> bool:
        t = self.task
        while True:
            r = len(self.reported)
            complete = all(len(x) > r or (d and x) for x, d in zip(rows, done))
            if not complete or all(len(x) <= r for x in rows):
                return False
            step, value = round_value(t["objective"], rows, done, r, t["budget"], t["threshold"])
            if self.reported and step <= self.reported[-1][0]:  # only seeds held: nothing new
                return False
            self.trial.report(value, step)
            self.reported.append((step, value))
            if self.trial.should_prune():
                self.pruned_at = step
                return True


def run_trial(task: Task) -> Result:
    """Train the seeds of one trial in lockstep, reporting to the study (see the module docstring);
    returns its result (also written to ``<trial dir>/result.json``)."""
    t0 = time.perf_counter()
    trial_dir = Path(task["run_dir"])
    trial_dir.mkdir(parents=True, exist_ok=True)
    try:
        optuna = optuna_module()
        one_thread()
        if task["algo"] not in ALGOS:
            raise ConfigError(f"unknown algorithm {task['algo']!r} on this worker")
        cls = ALGOS[task["algo"]][0]
        study = optuna.load_study(
            study_name=task["study"],
            storage=open_storage(task["storage"]),
            sampler=optuna.samplers.RandomSampler(),  # the worker never samples
            pruner=make_pruner(task["pruner"], task["budget"], task["eval_every"]),
        )
        trial = optuna.trial.Trial(study, task["trial_id"])
        with contextlib.ExitStack() as stack:
            trainers, rngs, resumed = [], [], []
            for cfg_dict, run_dir in zip(task["configs"], task["run_dirs"]):
                Path(run_dir).mkdir(parents=True, exist_ok=True)
                stack.enter_context(run_lock(Path(run_dir)))
                trainer, resumed_from = open_trainer(
                    from_dict(cls, cfg_dict), task["algo"], Path(run_dir), task["tensorboard"]
                )
                stack.callback(trainer.close)
                trainers.append(trainer)
                rngs.append(torch.get_rng_state())
                resumed.append(resumed_from)
            lockstep = Lockstep(trainers, rngs)
            reporter = _Reporter(task, trial)
            pruned = lockstep.run(reporter)
            seeds = [
                {
                    "seed": t.cfg.seed,
                    "env_steps": t.state.env_steps,
                    "episodes": t.state.episodes,
                    "solved": t.state.solved,
                    "train_seconds": t.state.train_seconds,
                    "resumed_from": r,
                    "evals": rows,
                }
                for t, r, rows in zip(trainers, resumed, lockstep.rows)
            ]
        values = [seed_value(task["objective"], s["evals"], task["budget"], task["threshold"]) for s in seeds]
        ok = not pruned and all(v is not None for v in values)
        result: Result = {
            "status": "pruned" if pruned else "ok",
            "error": "",
            "lost": False,
            "value": sum(values) / len(values) if ok else None,  # type: ignore[arg-type]
            "values": values,
            "pruned_at": reporter.pruned_at,
            "intermediate": reporter.reported,
            "env_steps": sum(s["env_steps"] for s in seeds),
            "seeds": seeds,
        }
    except Exception as e:  # noqa: BLE001  a failed trial is a result, not the end of the search
        with contextlib.suppress(OSError):
            (trial_dir / "error.txt").write_text(traceback.format_exc())
        result = failed_result(f"{type(e).__name__}: {first_line(e)}")
    result["wall_seconds"] = time.perf_counter() - t0
    write_result(trial_dir, result)
    return result


__all__ = [
    "OBJECTIVES",
    "PRUNERS",
    "Lockstep",
    "make_pruner",
    "open_storage",
    "optuna_module",
    "round_value",
    "run_trial",
    "seed_value",
]
