"""Exploration noise for continuous actions: Gaussian, or Ornstein-Uhlenbeck (temporally correlated).

Both draw from a numpy generator they are given (seeded by the agent) and act on actions in the
agent's [-1, 1] scale, one row per env of a vector env. ``sample(n, sigma)`` returns
``float32[n, action_dim]``; ``reset(mask)`` restarts the process of the envs whose episode ended;
``state_dict`` / ``load_state_dict`` hold everything needed to continue exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class GaussianNoise:
    """Independent N(0, sigma^2) per step and action dimension (what TD3 and RL-Zoo's DDPG use)."""

    def __init__(self, action_dim: int, rng: np.random.Generator) -> None:
        self.action_dim = int(action_dim)
        self.rng = rng

    def sample(self, n: int, sigma: float) -> np.ndarray:
        return (sigma * self.rng.standard_normal((n, self.action_dim))).astype(np.float32)

    def reset(self, mask: np.ndarray | None = None) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class OUNoise:
    """Ornstein-Uhlenbeck process per env, one Euler step of ``dt`` per env step:

        x <- x + theta * (mu - x) * dt + sigma * sqrt(dt) * N(0, 1)

    It reverts to ``mu`` (0) at rate ``theta``; with ``dt = 1`` its stationary standard deviation
    is ``sigma / sqrt(1 - (1 - theta)^2)``. Each env's state starts at ``mu`` and is set back to it by
    :meth:`reset` when that env's episode ends (Lillicrap et al., 2015).
    """

    def __init__(
        self,
        action_dim: int,
        rng: np.random.Generator,
        theta: float = 0.15,
        dt: float = 1.0,
        mu: float = 0.0,
    ) -> None:
        self.action_dim = int(action_dim)
        self.rng = rng
        self.theta, self.dt, self.mu = float(theta), float(dt), float(mu)
        self.x: np.ndarray | None = None  # float64[n, action_dim], created at the first sample

    def sample(self, n: int, sigma: float) -> np.ndarray:
        if self.x is None or self.x.shape[0] != n:
            self.x = np.full((n, self.action_dim), self.mu)
        noise = self.rng.standard_normal((n, self.action_dim))
        self.x = self.x + self.theta * (self.mu - self.x) * self.dt + sigma * np.sqrt(self.dt) * noise
        return self.x.astype(np.float32)

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Back to ``mu`` for every env (``mask`` None) or the envs where ``mask`` is true."""
        if self.x is None:
            return
        if mask is None:
            self.x[:] = self.mu
        else:
            self.x[np.asarray(mask, dtype=bool)] = self.mu

    def state_dict(self) -> dict[str, Any]:
        return {"x": None if self.x is None else self.x.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x = None if state["x"] is None else np.asarray(state["x"], dtype=np.float64)
