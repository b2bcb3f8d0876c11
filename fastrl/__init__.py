"""fastrl: fast, correct replay buffers and DQN-family / DDPG agents for PyTorch."""

from fastrl.buffer import Batch, ReplayBuffer
from fastrl.prioritized import BetaSchedule, LinearSchedule, PrioritizedReplayBuffer
from fastrl.returns import discounted_returns, gae, lambda_returns
from fastrl.spaces import final_observations
from fastrl.agents import ALGOS, DDPG, DQN, DDPGConfig, DQNConfig
from fastrl.presets import preset
from fastrl.schedules import Schedule
from fastrl.trainer import Trainer, TrainResult, train

__all__ = ["ALGOS", "Batch", "BetaSchedule", "DDPG", "DDPGConfig", "DQN", "DQNConfig", "LinearSchedule", "PrioritizedReplayBuffer", "ReplayBuffer",
           "Schedule", "TrainResult", "Trainer", "discounted_returns", "final_observations", "gae", "lambda_returns",
           "preset", "train"]
__version__ = "0.1.0"
