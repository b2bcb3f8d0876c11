from typing import Any

import numpy as np
import numpy.typing as npt

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
