"""Agents, one file each. ``ALGOS`` maps a CLI name to (config class, agent class)."""

from fastrl.agents.dqn import DQN, DQNConfig

ALGOS = {"dqn": (DQNConfig, DQN)}

__all__ = ["ALGOS", "DQN", "DQNConfig"]
