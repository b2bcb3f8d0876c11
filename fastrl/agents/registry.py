"""Agents, one file each. ``ALGOS`` maps a CLI name to its :class:`Algo`: the config class, the agent
class and the config defaults that make the name (``sail-dqn`` is DQN with ``sail=True``; ``c51`` and
``qr-dqn`` DQN with a distributional head; ``rainbow`` DQN with six options; ``td3`` DDPG with the
TD3 options on)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from fastrl.agents.ddpg import DDPG, DDPGConfig
from fastrl.agents.dqn import DQN, DQNConfig
from fastrl.config import ConfigError, with_overrides


class Agent(Protocol):
    """What the training loop, evaluation and checkpoints use of an agent."""

    config: Any
    rng: np.random.Generator
    updates: int
    td_abs: torch.Tensor | None

    def random_actions(self, n: int) -> np.ndarray: ...
    def act(self, obs: Any, explore: bool = True) -> np.ndarray: ...
    def greedy(self, obs: Any) -> np.ndarray: ...
    def after_env_step(self, done: np.ndarray) -> None: ...
    def progress(self) -> dict[str, float]: ...
    def update(self, batch: Any) -> dict[str, torch.Tensor]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Algo(NamedTuple):
    config: type[Any]
    """The config dataclass."""
    agent: Any
    """The agent class; ``agent.from_spaces(obs_space, action_space, config, device, seed)``."""
    defaults: Mapping[str, Any] = MappingProxyType({})
    """Config fields that differ from the config class's defaults for this name."""


ALGOS: dict[str, Algo] = {
    "dqn": Algo(DQNConfig, DQN),
    "sail-dqn": Algo(DQNConfig, DQN, {"sail": True}),
    "c51": Algo(DQNConfig, DQN, {"distributional": "c51"}),
    "qr-dqn": Algo(DQNConfig, DQN, {"distributional": "qr"}),
    # Rainbow (Hessel et al., 2018): C51 + noisy nets + dueling + Double DQN + 3-step + PER; the
    # paper's other settings (PER alpha 0.5, Adam's step and epsilon, the support) are adapted per
    # preset, so that changing one of them keeps the name.
    "rainbow": Algo(
        DQNConfig,
        DQN,
        {"distributional": "c51", "noisy": True, "dueling": True, "double_dqn": True, "n_step": 3, "prioritized": True},
    ),
    "ddpg": Algo(DDPGConfig, DDPG),
    "td3": Algo(
        DDPGConfig,
        DDPG,
        {"twin_critics": True, "policy_delay": 2, "target_policy_noise": 0.2, "target_noise_clip": 0.5},
    ),
}


def get_algo(algo: str) -> Algo:
    """The :class:`Algo` of a name (ConfigError listing the names for an unknown one)."""
    if algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
    return ALGOS[algo]


def algo_of(config: Any) -> str:
    """The name of ``config``'s algorithm: among the names whose config class it is an instance of
    and whose defaults it keeps, the one with the most defaults (a DDPGConfig with the TD3 options
    is td3). ConfigError when no name matches."""
    names = [
        name
        for name, a in ALGOS.items()
        if isinstance(config, a.config) and all(getattr(config, k) == v for k, v in a.defaults.items())
    ]
    if not names:
        raise ConfigError(f"no algorithm takes a {type(config).__name__}; pass one of {', '.join(ALGOS)}")
    return max(names, key=lambda n: len(ALGOS[n].defaults))


def default_config(algo: str) -> Any:
    """The config of ``algo`` with its defaults (no preset)."""
    a = get_algo(algo)
    return with_overrides(a.config(), a.defaults)


__all__ = [
    "ALGOS",
    "DDPG",
    "DQN",
    "Agent",
    "Algo",
    "DDPGConfig",
    "DQNConfig",
    "algo_of",
    "default_config",
    "get_algo",
]
