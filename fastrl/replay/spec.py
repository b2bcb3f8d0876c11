"""What replay an agent's update needs, declared by its config (``config.replay()``): the training
loop builds the buffer and draws batches from this alone, without knowing the algorithm."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastrl.replay.buffer import ReplayBuffer
from fastrl.replay.prioritized import PrioritizedReplayBuffer


@dataclass(frozen=True)
class ReplaySpec:
    """A replay mode. ``n_step > 1``: batches hold n-step sums discounted by ``gamma`` (and
    ``discounts = gamma ** k``); ``prioritized``: proportional prioritized replay with ``alpha``,
    ``eps`` and a beta annealed linearly from ``beta_start`` to 1 over the run, the update's
    ``|td|`` fed back as priorities; ``episode_returns_gamma``: the buffer keeps each transition's
    discounted return to the end of its episode (``extras["returns"]``, SAIL);
    ``terminated_next_observations``: as :class:`ReplayBuffer`'s ("zero": not stored; a target masked
    by ``1 - terminated`` never reads them)."""

    capacity: int
    n_step: int = 1
    gamma: float | None = None
    """The discount of n-step sums (None: one-step batches)."""
    prioritized: bool = False
    alpha: float = 0.6
    eps: float = 1e-6
    beta_start: float = 0.4
    episode_returns_gamma: float | None = None
    terminated_next_observations: str = "keep"

    def make_buffer(self, env: Any, seed: int) -> ReplayBuffer:
        """The buffer for a (vector) env's steps (see :meth:`ReplayBuffer.from_env`); ``capacity``
        rounded down to a multiple of the env count (each env's stream gets an equal share)."""
        n = int(getattr(env, "num_envs", 1))
        capacity = max(n, self.capacity // n * n)
        kwargs: dict[str, Any] = {"seed": seed, "terminated_next_observations": self.terminated_next_observations}
        if self.episode_returns_gamma is not None:
            kwargs["episode_returns_gamma"] = self.episode_returns_gamma
        if self.prioritized:
            return PrioritizedReplayBuffer.from_env(env, capacity, alpha=self.alpha, eps=self.eps, **kwargs)
        return ReplayBuffer.from_env(env, capacity, **kwargs)

    def sample_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``buffer.sample`` for this mode (beta excluded: it changes per draw)."""
        return {"n_step": self.n_step, "gamma": self.gamma} if self.n_step > 1 else {}
