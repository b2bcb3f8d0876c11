"""Agents, one file per algorithm (``dqn.py``: DQN, Double, dueling, n-step, PER, SAIL;
``ddpg.py``: DDPG and TD3), their networks and optimizer helpers (``nets.py``), exploration
noise and schedules, the registry of algorithm names (``registry.py``) and the per-environment
presets (``presets.py``). Imports the replay layer only for :class:`fastrl.replay.Batch`."""

from fastrl.agents.ddpg import DDPG, DDPGConfig
from fastrl.agents.dqn import DQN, DQNConfig
from fastrl.agents.presets import preset
from fastrl.agents.registry import ALGOS, Agent, Algo, algo_of, default_config, get_algo

__all__ = [
    "ALGOS",
    "DDPG",
    "DDPGConfig",
    "DQN",
    "DQNConfig",
    "Agent",
    "Algo",
    "algo_of",
    "default_config",
    "get_algo",
    "preset",
]
