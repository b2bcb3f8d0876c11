"""Where sweep runs execute: worker processes on this machine, or tasks on a Ray cluster.

A task is a JSON-ready dict (``algo``, ``config``, ``run_dir``, ``tensorboard``, ``id``);
:func:`run_task` trains it into its run directory on one torch thread, resuming from the run's
checkpoint if it has one, writes ``result.json`` there and returns the same dict. An exception in a
run becomes ``status: "failed"`` with a one-line ``error`` (traceback in ``error.txt``), never an
exception in the sweep. Both executors call ``on_result(task, result)`` as runs end, in the order
they end; a run's result does not depend on the executor (CPU runs are deterministic given the seed).

The executors take any task function ``fn`` (``run_task`` for sweeps; ``fastrl tune`` passes its
trial function) and draw tasks from an iterable lazily, one as each slot frees up, so that a tuner
can choose the next configuration after the last results came in. A task whose worker died
(killed, out of memory, a Ray node lost) comes back failed with ``lost: True``.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import torch

from fastrl._util import first_line
from fastrl.agents.registry import ALGOS
from fastrl.config import ConfigError, from_dict
from fastrl.experiments.manifest import Result, write_result
from fastrl.training.checkpoint import CheckpointError
from fastrl.training.ray_collector import start_ray
from fastrl.training.trainer import Trainer

if sys.platform != "win32":
    import fcntl

Task = dict[str, Any]
OnResult = Callable[[Task, Result], None]
TaskFn = Callable[[Task], Result]

LOCK_WAIT_S = 60.0  # how long a run waits for its directory to be released by a dying worker


# ---------------------------------------------------------------------------- one run
def run_task(task: Task) -> Result:
    """Train one sweep run (resuming from its last good checkpoint) and return its result."""
    t0 = time.perf_counter()
    run_dir = Path(task["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    resumed_from = None
    try:
        with run_lock(run_dir):
            one_thread()
            if task["algo"] not in ALGOS:
                raise ConfigError(f"unknown algorithm {task['algo']!r} on this worker")
            cfg = from_dict(ALGOS[task["algo"]][0], task["config"])
            trainer, resumed_from = open_trainer(cfg, task["algo"], run_dir, task["tensorboard"])
            try:
                res = trainer.train()
            finally:
                trainer.close()
        result = {
            "status": "ok",
            "error": "",
            "env_steps": res.env_steps,
            "episodes": res.episodes,
            "solved": res.solved,
            "train_seconds": res.train_seconds,
            "evals": [dict(e) for e in res.evals],
        }
    except Exception as e:  # noqa: BLE001  a failed run is a result, not the end of the sweep
        with contextlib.suppress(OSError):
            (run_dir / "error.txt").write_text(traceback.format_exc())
        result = failed_result(f"{type(e).__name__}: {first_line(e)}")
    result.update(resumed_from=resumed_from, wall_seconds=time.perf_counter() - t0)
    write_result(run_dir, result)
    return result


def failed_result(error: str, lost: bool = False) -> Result:
    """The result of a run that did not finish; ``lost``: its worker died (not the run's fault)."""
    return {
        "status": "failed",
        "error": error,
        "env_steps": 0,
        "episodes": 0,
        "solved": False,
        "train_seconds": 0.0,
        "evals": [],
        "resumed_from": None,
        "wall_seconds": 0.0,
        "lost": lost,
    }


def open_trainer(cfg: Any, algo: str, run_dir: Path, tensorboard: bool) -> tuple[Trainer, int | None]:
    """A Trainer resumed from the newest readable checkpoint (last.pt, then step_*.pt), else new."""
    ckpt_dir = run_dir / "checkpoints"
    candidates = [ckpt_dir / "last.pt", *sorted(ckpt_dir.glob("step_*.pt"), reverse=True)]
    for path in candidates:
        if path.is_file():
            try:
                trainer = Trainer(cfg, resume=path, progress=False, tensorboard=tensorboard)
            except CheckpointError:
                continue  # damaged or its buffer is gone: try an older one
            return trainer, trainer.state.env_steps
    for old in run_dir.glob("events.out.tfevents.*"):  # a restart from scratch logs anew
        old.unlink()
    return Trainer(cfg, algo=algo, run_dir=run_dir, progress=False, tensorboard=tensorboard), None


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir`` so that two processes never write one run."""
    if sys.platform == "win32":  # not POSIX: no lock
        yield
        return
    with open(run_dir / ".lock", "w") as f:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{run_dir} is being written by another process (another sweep?)") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def one_thread() -> None:
    torch.set_num_threads(1)  # the config's torch_threads (default 1) may change it
    with contextlib.suppress(RuntimeError):  # allowed once per process, before parallel work
        torch.set_num_interop_threads(1)


# ---------------------------------------------------------------------------- local processes
def _init_worker(parent_pid: int) -> None:
    one_thread()

    def watch() -> None:  # a worker whose sweep was killed stops too (its run resumes later)
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def run_local(tasks: Iterable[Task], workers: int, on_result: OnResult, fn: TaskFn = run_task) -> None:
    """Run ``fn(task)`` for each of ``tasks`` in ``workers`` spawned processes, at most ``workers``
    at a time; the next task is drawn from ``tasks`` when a slot frees up.

    A worker that dies (killed, out of memory) fails the runs then in flight (``lost``); the pool
    is restarted for the rest.
    """
    ctx = mp.get_context("spawn")

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(),)
        )

    pending = iter(tasks)
    exhausted = False
    inflight: dict[Future[Result], Task] = {}
    pool = new_pool()
    try:
        while True:
            while not exhausted and len(inflight) < workers:
                task = next(pending, None)
                if task is None:
                    exhausted = True
                else:
                    inflight[pool.submit(fn, task)] = task
            if not inflight:
                break
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            broken = False
            for fut in done:
                task = inflight.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    broken = True
                    result = failed_result("worker process died during the run (killed or out of memory?)", lost=True)
                    write_result(Path(task["run_dir"]), result)
                except Exception as e:  # noqa: BLE001  e.g. a result that could not be sent back
                    result = failed_result(f"{type(e).__name__}: {first_line(e)}")
                    write_result(Path(task["run_dir"]), result)
                on_result(task, result)
            if broken:
                for task in inflight.values():
                    result = failed_result("stopped: another worker process died", lost=True)
                    write_result(Path(task["run_dir"]), result)
                    on_result(task, result)
                inflight.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
    except BaseException:  # Ctrl-C: stop the workers now; their runs resume from checkpoints
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------- Ray
def run_ray(
    tasks: Iterable[Task], workers: int | None, address: str | None, on_result: OnResult, fn: TaskFn = run_task
) -> None:
    """Run ``fn(task)`` for each of ``tasks`` as Ray tasks (one CPU each) on the cluster at
    ``address``, or on a new local Ray instance with ``workers`` CPUs when no address is given; at
    most ``workers`` (default: the cluster's CPUs) in flight, the next drawn as one ends."""
    ray, started = start_ray(
        address,
        num_cpus=workers,
        missing="--executor ray needs Ray: pip install 'fastrl[ray]' (or use --executor local)",
    )
    remote = ray.remote(num_cpus=1, max_retries=0)(fn)
    limit = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    pending = iter(tasks)
    exhausted = False
    refs: dict[Any, Task] = {}
    try:
        while True:
            while not exhausted and len(refs) < limit:
                task = next(pending, None)
                if task is None:
                    exhausted = True
                else:
                    refs[remote.remote(task)] = task
            if not refs:
                break
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                task = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as e:  # noqa: BLE001  the worker died, or the node went away
                    result = failed_result(f"Ray: {type(e).__name__}: {first_line(e)}", lost=True)
                write_result(Path(task["run_dir"]), result)  # the driver's copy (no shared disk?)
                on_result(task, result)
    except BaseException:
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


def worker_plan(executor: str, workers: int | None, n_tasks: int, ray_address: str | None) -> tuple[int, str]:
    """How many workers to run (``workers``, else one per CPU this process may use; local workers
    no more than the ``n_tasks`` waiting) and a phrase that says where, for the log."""
    n = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if executor == "local":
        n = max(1, min(n, n_tasks))
    if executor == "ray":
        return n, f"Ray at {ray_address}" if ray_address else f"local Ray, {n} CPUs"
    return n, f"{n} local worker{'s' * (n > 1)}"


__all__ = [
    "first_line",
    "failed_result",
    "one_thread",
    "open_trainer",
    "run_local",
    "run_lock",
    "run_ray",
    "run_task",
    "worker_plan",
]
