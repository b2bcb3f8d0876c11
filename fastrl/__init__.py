"""fastrl: fast, correct replay buffers and DQN-family / DDPG agents for PyTorch."""

from fastrl.buffer import Batch, ReplayBuffer
from fastrl.spaces import final_observations
from fastrl.agents import DQN, DQNConfig
from fastrl.presets import preset
from fastrl.schedules import Schedule
from fastrl.trainer import Trainer, TrainResult, train

__all__ = ["Batch", "DQN", "DQNConfig", "ReplayBuffer", "Schedule", "TrainResult", "Trainer",
           "final_observations", "preset", "train"]
__version__ = "0.1.0"
