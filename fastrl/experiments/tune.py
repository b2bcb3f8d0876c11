"""Hyper-parameter tuning with Optuna: a seeded TPE sampler, pruning on each run's greedy
evaluations, parallel trials on the sweep executors, and a study that survives a crash.

``plan_tune(...)`` parses and checks the search before any run starts (ConfigError, one line);
``run_tune(plan, ...)`` runs the trials that are not finished yet and writes the report
(:mod:`~fastrl.experiments.tune_report`). A trial trains its K seeds in lockstep in one worker (one
CPU) and reports to the study as evaluations arrive (:mod:`~fastrl.experiments.trial`). A tune
directory holds:

    tune.json            the search: algorithm, env, space, seeds, objective, pruner, base config
    study.db             the Optuna study (SQLite through Optuna's RDB storage)
    trials/0007/seed0/   one run directory per trial x seed, as `fastrl train` writes it;
    trials/0007/result.json                 the trial's result (status, values, evaluations)
    trials.csv best.json optimization_history.png param_importances.png best_curves.png

Re-running the same command resumes the study: finished (complete, pruned, failed) trials are
kept; trials left running by a killed tuner are marked failed and re-run with the same parameters,
their runs resuming from their checkpoints; ``--trials`` may grow. A trial whose worker died
(killed, out of memory) is marked failed and retried once, also from its checkpoints. A different
search into the same directory is refused; so is a second tuner on a directory in use.

The tuner process is the only one that asks and tells the study; workers only report intermediate
values and ask the pruner. With one worker the search is deterministic given ``--seed``; with
several, which trial finishes first (and so what TPE knows when it samples) depends on timing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fastrl._util import write_text_atomic
from fastrl.config import ConfigError, to_dict
from fastrl.experiments.executors import Task, run_local, run_ray, worker_plan
from fastrl.experiments.manifest import Result
from fastrl.experiments.plan import (
    Dimension,
    Range,
    base_config,
    canonical_key,
    fmt_value,
    jsonable,
    parse_ranges,
    preset_entry,
)
from fastrl.experiments.trial import OBJECTIVES, PRUNERS, make_pruner, open_storage, optuna_module, run_trial
from fastrl.experiments.tune_report import TuneReport, objective_text, write_tune_report
from fastrl.training.envs import make_env

if sys.platform != "win32":
    import fcntl

FORMAT, VERSION = "fastrl-tune", 1
MANIFEST, STUDY_FILE, STUDY_NAME = "tune.json", "study.db", "fastrl-tune"
NOT_TUNED = {
    "total_steps": "the budget of every trial is --steps",
    "eval_every": "pruning compares trials at the same evaluation steps; set it with --set",
}
STARTUP_TRIALS = 5  # TPE samples at random until this many trials have finished (RL-Zoo's choice)


@dataclass
class TunePlan:
    """A checked search: ``base`` is the config every trial starts from (env, overrides and
    ``--steps`` in it); each trial replaces the ``space`` keys and runs ``seeds``."""

    algo: str
    env_id: str
    base: Any
    space: dict[str, Dimension]
    trials: int
    seeds: list[int]
    objective: str
    pruner: str
    threshold: float | None
    search_seed: int
    out: Path
    preset: str = "default"
    """The named preset ``base`` comes from (``fastrl tune --preset``)."""

    def manifest(self) -> dict[str, Any]:
        """What ``tune.json`` holds: everything that defines the search (not ``trials``: a search
        may be extended; a named preset: :func:`preset_entry`)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "algo": self.algo,
            "env_id": self.env_id,
            **preset_entry(self.preset),
            "space": {k: d.spec() if isinstance(d, Range) else jsonable(d) for k, d in self.space.items()},
            "seeds": self.seeds,
            "objective": self.objective,
            "pruner": self.pruner,
            "threshold": self.threshold,
            "search_seed": self.search_seed,
            "base": to_dict(self.base),
        }

    def fingerprint(self) -> str:
        return hashlib.blake2b(json.dumps(self.manifest(), sort_keys=True).encode(), digest_size=8).hexdigest()

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{(self.out / STUDY_FILE).resolve()}"


# ---------------------------------------------------------------------------- planning
def plan_tune(
    algo: str,
    env_id: str,
    *,
    params: Mapping[str, Dimension] | Sequence[str],
    trials: int,
    steps: int | None = None,
    seeds: int = 1,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
    objective: str = "auc",
    pruner: str = "median",
    threshold: float | None = None,
    out: str | Path | None = None,
    preset: str = "default",
) -> TunePlan:
    """Parse and check a search; nothing runs. ``params``: the CLI strings (``key=lo:hi[:log]``,
    ``key=a,b,c``) or a dict of :class:`~fastrl.experiments.plan.Range` / value lists. ``seed``
    seeds the sampler; the runs' seeds are ``s, s + 1, ...`` of the base config (``--set seed=s``),
    which is the ``preset`` (a name from ``preset_names``) of ``algo`` on ``env_id`` with ``overrides``."""
    optuna_module()  # Optuna missing: one line naming the extra, before anything else
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}; use {', '.join(OBJECTIVES)}")
    if pruner not in PRUNERS:
        raise ConfigError(f"unknown pruner {pruner!r}; use {', '.join(PRUNERS)}")
    if trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    base = base_config(algo, env_id, overrides, steps, preset)
    try:
        base.check()
    except (ConfigError, TypeError, ValueError) as e:
        raise ConfigError(f"the base configuration: {e}") from None
    space = _space(type(base), params)
    for key, dim in space.items():  # every end of every range and every choice, one at a time
        for v in [dim.low, dim.high] if isinstance(dim, Range) else dim:
            v = int(v) if isinstance(dim, Range) and dim.integer else v
            try:
                dataclasses.replace(base, **{key: v}).check()
            except (ConfigError, TypeError, ValueError) as e:
                raise ConfigError(f"--param {key}={fmt_value(v)}: {e}") from None
    if pruner != "none" and not 0 < base.eval_every < base.total_steps:
        raise ConfigError(
            f"--pruner {pruner} needs evaluations during the runs: eval_every ({base.eval_every}) must be "
            f"in (0, {base.total_steps}); set it with --set eval_every=N, or use --pruner none"
        )
    thr = threshold if threshold is not None else base.solved_threshold
    if objective == "steps_to_threshold" and thr is None:
        raise ConfigError("--objective steps_to_threshold needs --threshold (the config has no solved_threshold)")
    make_env(env_id).close()  # an unknown env fails here, not in every trial
    plan = TunePlan(
        algo,
        env_id,
        base,
        space,
        trials,
        [base.seed + i for i in range(seeds)],
        objective,
        pruner,
        thr,
        seed,
        Path("."),
        preset,
    )
    plan.out = (
        Path(out) if out is not None else Path("tunes") / f"{env_id.replace('/', '-')}-{algo}-{plan.fingerprint()[:8]}"
    )
    return plan


def _space(cls: type, params: Mapping[str, Dimension] | Sequence[str]) -> dict[str, Dimension]:
    if isinstance(params, Mapping):
        space: dict[str, Dimension] = {}
        for k, d in params.items():
            key = canonical_key(cls, k, "--param")
            space[key] = d if isinstance(d, Range) else list(d)
    else:
        space = parse_ranges(cls, params, "--param")
    if not space:
        raise ConfigError("give at least one --param key=lo:hi[:log] or key=a,b,c to tune")
    for key, d in space.items():
        if key in NOT_TUNED:
            raise ConfigError(f"--param: {key} cannot be tuned: {NOT_TUNED[key]}")
        if isinstance(d, Range):
            if not d.low < d.high:
                raise ConfigError(f"--param {key}: low {fmt_value(d.low)} must be < high {fmt_value(d.high)}")
            if d.log and d.low <= 0:
                raise ConfigError(f"--param {key}: a log range needs low > 0, got {fmt_value(d.low)}")
            if d.integer and math.ceil(d.low) > math.floor(d.high):
                raise ConfigError(f"--param {key}: no integer in {d.spec()}")
        elif len(d) < 2:
            raise ConfigError(f"--param {key}: a choice needs at least 2 values (a fixed value goes in --set)")
    return space


# ---------------------------------------------------------------------------- the directory
@contextmanager
def _dir_lock(out: Path) -> Iterator[None]:
    """One tuner per directory: a second is refused (its workers would share the study's trials)."""
    if sys.platform == "win32":
        yield
        return
    with open(out / ".tune.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"{out} is in use by another fastrl tune (wait for it or use another --out)") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    for key in ("algo", "env_id", "preset", "space", "seeds", "objective", "pruner", "threshold", "search_seed"):
        if old.get(key) != new.get(key):
            return f"its {key} is {json.dumps(old.get(key))}, this search's {json.dumps(new.get(key))}"
    for k in sorted(set(old["base"]) | set(new["base"])):
        if old["base"].get(k) != new["base"].get(k):
            return f"its runs have {k}={old['base'].get(k)!r}, this search's {new['base'].get(k)!r}"
    return "its search differs"


def prepare_tune_dir(plan: TunePlan) -> None:
    """Write ``tune.json``, or check that the one there is this same search."""
    path, new = plan.out / MANIFEST, plan.manifest()
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}: unreadable ({e})") from None
        if not isinstance(old, dict) or old.get("format") != FORMAT:
            raise ConfigError(f"{path}: not a fastrl tune manifest")
        if old != new:
            raise ConfigError(
                f"{plan.out} holds a different search ({_difference(old, new)}); use another --out or delete that directory"
            )
        return
    if plan.out.exists() and any(plan.out.iterdir()):
        raise ConfigError(f"{plan.out} exists and is not a tune directory; use another --out")
    plan.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(new, indent=1))


def open_study(plan: TunePlan, load_only: bool = False) -> Any:
    """The plan's study (created if new), its fingerprint checked, its sampler seeded by the search
    seed and the number of trials so far (a resumed search does not redraw the first points)."""
    optuna = optuna_module()
    storage = open_storage(plan.storage_url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if load_only:
            study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
        else:
            study = optuna.create_study(
                storage=storage,
                study_name=STUDY_NAME,
                direction=OBJECTIVES[plan.objective],
                pruner=make_pruner(plan.pruner, plan.base.total_steps, plan.base.eval_every),
                load_if_exists=True,
            )
        found = study.user_attrs.get("fingerprint")
        if found is None and not load_only:
            study.set_user_attr("fingerprint", plan.fingerprint())
        elif found is not None and found != plan.fingerprint():
            raise ConfigError(f"{plan.out / STUDY_FILE} holds another search's study; use another --out")
        seed = int(np.random.SeedSequence([plan.search_seed, len(study.trials)]).generate_state(1)[0])
        study.sampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=STARTUP_TRIALS, multivariate=True, constant_liar=True
        )
    return study


# ---------------------------------------------------------------------------- running
def _settled(trial: Any) -> bool:
    """Counts toward ``--trials``: complete, pruned, or failed and not retried."""
    state = trial.state.name
    return state in ("COMPLETE", "PRUNED") or (state == "FAIL" and not trial.user_attrs.get("retried"))


def _suggest(trial: Any, space: Mapping[str, Dimension]) -> dict[str, Any]:
    """The trial's point: Optuna's suggestions, tuple choices (hidden_sizes) passed as their labels."""
    point: dict[str, Any] = {}
    for key, d in space.items():
        if isinstance(d, Range):
            if d.integer:
                point[key] = trial.suggest_int(key, math.ceil(d.low), math.floor(d.high), log=d.log)
            else:
                point[key] = trial.suggest_float(key, d.low, d.high, log=d.log)
        else:
            labels = [fmt_value(v) if isinstance(v, tuple) else v for v in d]
            point[key] = d[labels.index(trial.suggest_categorical(key, labels))]
    return point


class _Search:
    """The executor's task source and result sink, both in the tuner's thread: asks the study for
    a trial when a worker is free, tells it each result."""

    def __init__(self, plan: TunePlan, study: Any, tensorboard: bool, log: Callable[[str], None]) -> None:
        self.plan, self.study, self.tensorboard, self.log = plan, study, tensorboard, log
        self.settled = sum(_settled(t) for t in study.trials)
        self.inflight: dict[int, Any] = {}
        self.asked = 0

    def tasks(self) -> Iterator[Task]:
        optuna = optuna_module()
        plan = self.plan
        while self.settled + len(self.inflight) < plan.trials:
            trial = self.study.ask()
            self.asked += 1
            try:
                point = _suggest(trial, plan.space)
                cfg = dataclasses.replace(plan.base, **point)
                cfg.check()
            except (ConfigError, TypeError, ValueError) as e:  # a combination the ends did not show
                trial.set_user_attr("error", f"ConfigError: {e}")
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                self.settled += 1
                self.log(f"[{self.settled}/{plan.trials}] trial {trial.number}: FAILED: {e}")
                continue
            runs = trial.user_attrs.get("runs") or f"trials/{trial.number:04d}"
            trial.set_user_attr("runs", runs)
            run_dir = (plan.out / runs).resolve()
            self.inflight[trial.number] = trial
            yield {
                "id": f"trial {trial.number}",
                "number": trial.number,
                "algo": plan.algo,
                "configs": [to_dict(dataclasses.replace(cfg, seed=s)) for s in plan.seeds],
                "run_dirs": [str(run_dir / f"seed{s}") for s in plan.seeds],
                "run_dir": str(run_dir),
                "storage": plan.storage_url,
                "study": STUDY_NAME,
                "trial_id": trial._trial_id,  # Optuna has no public accessor for it
                "pruner": plan.pruner,
                "objective": plan.objective,
                "threshold": plan.threshold,
                "budget": plan.base.total_steps,
                "eval_every": plan.base.eval_every,
                "tensorboard": self.tensorboard,
            }

    def on_result(self, task: Task, result: Result) -> None:
        optuna = optuna_module()
        states = optuna.trial.TrialState
        trial = self.inflight.pop(task["number"])
        trial.set_user_attr("env_steps", int(result.get("env_steps") or 0))
        trial.set_user_attr("wall_seconds", float(result.get("wall_seconds") or 0.0))
        if result["status"] == "ok":
            self.study.tell(trial, result["value"])
            what = f"{self.plan.objective} {result['value']:.4g}"
        elif result["status"] == "pruned":
            self.study.tell(trial, state=states.PRUNED)
            what = f"pruned at step {result['pruned_at']}"
        else:
            trial.set_user_attr("error", result["error"])
            retry = result.get("lost") and "retry_of" not in trial.user_attrs
            if retry:  # the worker died: once more, resuming the runs from their checkpoints
                trial.set_user_attr("retried", True)
                self.study.enqueue_trial(
                    trial.params, user_attrs={"runs": trial.user_attrs["runs"], "retry_of": trial.number}
                )
            self.study.tell(trial, state=states.FAIL)
            what = f"FAILED: {result['error']}" + (" (retried once)" if retry else "")
            if retry:
                self.settled -= 1
        self.settled += 1
        params = " ".join(f"{k}={fmt_value(v)}" for k, v in trial.params.items())
        self.log(
            f"[{self.settled}/{self.plan.trials}] trial {trial.number} {params}: {what} "
            f"({result.get('env_steps', 0)} env steps, {result.get('wall_seconds', 0.0):.1f} s)"
        )


def _rerun_interrupted(study: Any) -> int:
    """Trials left running by a tuner that was killed: marked failed, re-run with the same
    parameters in the same run directories (their runs resume from checkpoints)."""
    optuna = optuna_module()
    stale = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for t in stale:
        attrs = {"runs": t.user_attrs.get("runs") or f"trials/{t.number:04d}", "rerun_of": t.number}
        if "retry_of" in t.user_attrs:
            attrs["retry_of"] = t.user_attrs["retry_of"]
        study._storage.set_trial_user_attr(t._trial_id, "retried", True)
        study._storage.set_trial_user_attr(t._trial_id, "error", "interrupted (the tuner was stopped)")
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs=attrs)
    return len(stale)


def run_tune(
    plan: TunePlan,
    *,
    executor: Literal["local", "ray"] = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    tensorboard: bool = True,
    log: Callable[[str], None] = print,
) -> TuneReport:
    """Run the trials the study still needs, then write the report and return it."""
    if executor not in ("local", "ray"):
        raise ConfigError(f"unknown executor {executor!r}; use local or ray")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    prepare_tune_dir(plan)
    with _dir_lock(plan.out):
        study = open_study(plan)
        rerun = _rerun_interrupted(study)
        search = _Search(plan, study, tensorboard, log)
        n_workers, where = worker_plan(executor, workers, plan.trials - search.settled, ray_address)
        log(
            f"tune {plan.out}: {plan.trials} trials x {len(plan.seeds)} seeds of {plan.base.total_steps} steps; "
            f"{search.settled} finished (kept), {rerun} interrupted (re-run); pruner {plan.pruner}; {where}"
        )
        log(f"objective: {objective_text(plan.objective, len(plan.seeds), plan.base.total_steps, plan.threshold)}")
        while search.settled < plan.trials:
            asked = search.asked
            if executor == "ray":
                run_ray(search.tasks(), workers, ray_address, search.on_result, fn=run_trial)
            else:
                run_local(search.tasks(), n_workers, search.on_result, fn=run_trial)
            if search.asked == asked:
                break
        return write_tune_report(plan, study)


__all__ = ["MANIFEST", "STUDY_FILE", "TunePlan", "open_study", "plan_tune", "prepare_tune_dir", "run_tune"]
