"""The counters and episode books of a run, the clock of its training time, and their state_dict."""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


class RunState:
    """Where a run stands: env steps, vector steps (``iterations``), finished episodes, training
    seconds (evaluations and checkpoints excluded), the evaluations so far, the last 100 episode
    returns, and the running return and the first vector step of each env's current episode."""

    def __init__(self, num_envs: int) -> None:
        self.env_steps = self.iterations = self.episodes = 0
        self.train_seconds = 0.0
        self.solved = False
        self.best_eval = -math.inf
        self.evals: list[dict[str, float]] = []
        self.recent_returns: deque[float] = deque(maxlen=100)
        self.recent_lengths: deque[int] = deque(maxlen=10)  # shown on the progress bar; not saved
        self.ep_return = np.zeros(num_envs)
        self.ep_start = np.zeros(num_envs, dtype=np.int64)  # ``iterations`` when each episode began
        self._tic = time.perf_counter()

    def advance(self, num_envs: int, rewards: np.ndarray, done: np.ndarray) -> list[tuple[float, int]]:
        """Count one vector step and add its rewards; returns ``(return, length)`` of each episode
        that ``done`` ended (their books are reset)."""
        self.env_steps += num_envs
        self.iterations += 1
        self.ep_return += rewards
        if not done.any():
            return []
        ended = np.flatnonzero(done)
        finished = [(float(self.ep_return[i]), int(self.iterations - self.ep_start[i])) for i in ended]
        for ret, length in finished:
            self.recent_returns.append(ret)
            self.recent_lengths.append(length)
        self.episodes += len(ended)
        self.ep_return[done] = 0.0
        self.ep_start[done] = self.iterations
        return finished

    @property
    def ep_len(self) -> np.ndarray:
        """The length so far of each env's current episode, ``int64[num_envs]``."""
        return self.iterations - self.ep_start

    def rolling_mean_reaches(self, threshold: float | None) -> bool:
        """The last 100 training episodes' mean return is >= ``threshold``."""
        return (
            threshold is not None
            and len(self.recent_returns) == self.recent_returns.maxlen
            and float(np.mean(self.recent_returns)) >= threshold
        )

    # ------------------------------------------------------------------ the clock
    def start_clock(self) -> None:
        self._tic = time.perf_counter()

    def stop_clock(self) -> None:
        self.train_seconds += time.perf_counter() - self._tic
        self._tic = time.perf_counter()

    @contextlib.contextmanager
    def untimed(self) -> Iterator[None]:
        """A block whose time is not training time (evaluation, checkpoint)."""
        self.stop_clock()
        try:
            yield
        finally:
            self.start_clock()

    def exclude(self, seconds: float) -> None:
        """Leave ``seconds`` already spent since the clock started out of the training time."""
        self._tic += seconds

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "env_steps": self.env_steps,
            "iterations": self.iterations,
            "episodes": self.episodes,
            "train_seconds": self.train_seconds,
            "solved": self.solved,
            "best_eval": self.best_eval,
            "evals": self.evals,
            "recent_returns": list(self.recent_returns),
            "ep_return": torch.from_numpy(self.ep_return.copy()),
            "ep_len": torch.from_numpy(self.ep_len),
        }

    def load_state_dict(self, t: dict[str, Any]) -> None:
        self.env_steps, self.iterations = int(t["env_steps"]), int(t["iterations"])
        self.episodes, self.train_seconds = int(t["episodes"]), float(t["train_seconds"])
        self.solved, self.best_eval = bool(t["solved"]), float(t["best_eval"])
        self.evals = [dict(e) for e in t["evals"]]
        self.recent_returns.clear()
        self.recent_returns.extend(float(r) for r in t["recent_returns"])
        self.ep_return = t["ep_return"].numpy().copy()
        self.ep_start = self.iterations - t["ep_len"].numpy()
