"""fastrl: fast, correct replay buffers and DQN-family / DDPG agents for PyTorch.

The names below load on first use (``import fastrl`` stays cheap: ``fastrl.ReplayBuffer`` does
not import the agents or the trainer). Layers, lowest first: ``fastrl.replay`` (the C++ core's
Python face), ``fastrl.agents``, ``fastrl.training``, ``fastrl.experiments``; see
docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "Batch": "fastrl.replay.batch",
    "ReplayBuffer": "fastrl.replay.buffer",
    "PrioritizedReplayBuffer": "fastrl.replay.prioritized",
    "final_observations": "fastrl.replay.spaces",
    "BetaSchedule": "fastrl.schedules",
    "LinearSchedule": "fastrl.schedules",
    "Schedule": "fastrl.schedules",
    "discounted_returns": "fastrl.returns",
    "gae": "fastrl.returns",
    "lambda_returns": "fastrl.returns",
    "ALGOS": "fastrl.agents.registry",
    "DQN": "fastrl.agents.dqn",
    "DQNConfig": "fastrl.agents.dqn",
    "DDPG": "fastrl.agents.ddpg",
    "DDPGConfig": "fastrl.agents.ddpg",
    "preset": "fastrl.agents.presets",
    "Trainer": "fastrl.training.trainer",
    "TrainResult": "fastrl.training.trainer",
    "train": "fastrl.training.trainer",
}

__all__ = [
    "ALGOS",
    "Batch",
    "BetaSchedule",
    "DDPG",
    "DDPGConfig",
    "DQN",
    "DQNConfig",
    "LinearSchedule",
    "PrioritizedReplayBuffer",
    "ReplayBuffer",
    "Schedule",
    "TrainResult",
    "Trainer",
    "discounted_returns",
    "final_observations",
    "gae",
    "lambda_returns",
    "preset",
    "train",
]


def __getattr__(name: str) -> Any:
    if name == "_core":  # `from fastrl import _core` asks here first
        try:
            return importlib.import_module("fastrl._core")
        except ImportError as e:
            raise ImportError(
                "fastrl's compiled core (fastrl._core) is missing or does not load: build it with "
                "`pip install .` (or, for development, `pip install --no-build-isolation -ve . "
                "-Ceditable.rebuild=true`) from the repository root; `pytest` must import the installed "
                f"package, not the source folder ({e})"
            ) from e
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'fastrl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from fastrl.agents.ddpg import DDPG, DDPGConfig
    from fastrl.agents.dqn import DQN, DQNConfig
    from fastrl.agents.presets import preset
    from fastrl.agents.registry import ALGOS
    from fastrl.replay.batch import Batch
    from fastrl.replay.buffer import ReplayBuffer
    from fastrl.replay.prioritized import PrioritizedReplayBuffer
    from fastrl.replay.spaces import final_observations
    from fastrl.returns import discounted_returns, gae, lambda_returns
    from fastrl.schedules import BetaSchedule, LinearSchedule, Schedule
    from fastrl.training.trainer import Trainer, TrainResult, train
