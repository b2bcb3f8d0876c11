from typing import Any

import numpy as np
import numpy.typing as npt

SUM_TREE_FANOUT: int

class ReplayBuffer:
    """Circular replay buffer core (use fastrl.ReplayBuffer)."""

    def __init__(
        self,
        fields: list[tuple[str, list[int], str]],
        capacity: int,
        num_envs: int,
        seed: int,
        episode_returns_gamma: float = -1.0,
    ) -> None: ...
    @property
    def capacity(self) -> int: ...
    @property
    def num_envs(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def total(self) -> int: ...
    def add(self, values: tuple[Any, ...]) -> None: ...
    def extend(self, values: tuple[Any, ...]) -> None: ...
    def sample(self, batch_size: int, replace: bool) -> tuple[npt.NDArray[Any], ...]: ...
    def sample_into(
        self, batch_size: int, replace: bool, indices_out: Any, outs: tuple[Any, ...]
    ) -> None: ...
    def gather(self, field: int, ids: npt.ArrayLike) -> npt.NDArray[Any]: ...
    def field_view(self, field: int, writable: bool = False) -> npt.NDArray[Any]: ...
    def rng_state(self) -> tuple[int, int, int, int]: ...
    def set_state(self, total: int, rng: tuple[int, int, int, int] | list[int]) -> None: ...
    def seed(self, seed: int) -> None: ...
    def clear(self) -> None: ...
    @property
    def num_written_fields(self) -> int: ...
    @property
    def episode_returns_gamma(self) -> float: ...
    def episode_starts(self) -> list[int]: ...
    def set_full_state(
        self, total: int, rng: tuple[int, int, int, int] | list[int], episode_starts: list[int]
    ) -> None: ...
    def sample_ex(
        self, batch_size: int, replace: bool, require_return: bool, n_step: int, gamma: float | None
    ) -> tuple[Any, ...]: ...
    def sample_into_ex(
        self,
        batch_size: int,
        replace: bool,
        require_return: bool,
        n_step: int,
        gamma: float | None,
        indices_out: Any,
        outs: tuple[Any, ...],
        discounts_out: Any,
    ) -> None: ...
    def gather_nstep(self, ids: npt.ArrayLike, n_step: int, gamma: float) -> tuple[npt.NDArray[Any], ...]: ...

def discounted_returns(
    rewards: npt.NDArray[Any],
    terminated: npt.NDArray[np.bool_],
    truncated: npt.NDArray[np.bool_],
    gamma: float,
    bootstrap: npt.NDArray[Any] | None,
    out: npt.NDArray[Any],
) -> None: ...
def gae(
    rewards: npt.NDArray[Any],
    values: npt.NDArray[Any],
    next_values: npt.NDArray[Any],
    terminated: npt.NDArray[np.bool_],
    truncated: npt.NDArray[np.bool_],
    gamma: float,
    lam: float,
    advantages_out: npt.NDArray[Any],
    returns_out: npt.NDArray[Any],
) -> None: ...
def lambda_returns(
    rewards: npt.NDArray[Any],
    next_values: npt.NDArray[Any],
    terminated: npt.NDArray[np.bool_],
    truncated: npt.NDArray[np.bool_],
    gamma: float,
    lam: float,
    out: npt.NDArray[Any],
) -> None: ...

class PrioritizedReplayBuffer:
    """Prioritized replay core: a ReplayBuffer plus float64 sum / min trees over its slots."""

    def __init__(
        self,
        fields: list[tuple[str, list[int], str]],
        capacity: int,
        num_envs: int,
        seed: int,
        alpha: float,
        eps: float,
    ) -> None: ...
    @property
    def base(self) -> ReplayBuffer: ...
    @property
    def alpha(self) -> float: ...
    @property
    def eps(self) -> float: ...
    @property
    def max_priority(self) -> float: ...
    @property
    def min_mass(self) -> float: ...
    @property
    def total_mass(self) -> float: ...
    def masses(self) -> npt.NDArray[np.float64]: ...
    def priorities(self, ids: npt.ArrayLike) -> npt.NDArray[np.float64]: ...
    def priorities_view(self, writable: bool = False) -> npt.NDArray[Any]: ...
    def sample(
        self, batch_size: int, beta: float, n_step: int = 1, gamma: float | None = None
    ) -> tuple[Any, ...]: ...
    def sample_ids(
        self, batch_size: int, beta: float
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]: ...
    def sample_into(
        self,
        batch_size: int,
        beta: float,
        indices_out: Any,
        weights_out: Any,
        outs: tuple[Any, ...],
        n_step: int = 1,
        gamma: float | None = None,
        discounts_out: Any = None,
    ) -> None: ...
    def set_alpha(self, alpha: float) -> None: ...
    def set_max_priority(self, max_priority: float) -> None: ...
    def update_priorities(self, ids: npt.NDArray[Any], priorities: npt.NDArray[Any]) -> int: ...
