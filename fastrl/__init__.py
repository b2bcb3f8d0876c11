"""fastrl: fast, correct replay buffers and DQN-family / DDPG agents for PyTorch."""

from fastrl.buffer import Batch, ReplayBuffer
from fastrl.prioritized import BetaSchedule, LinearSchedule, PrioritizedReplayBuffer
from fastrl.spaces import final_observations

__all__ = ["Batch", "BetaSchedule", "LinearSchedule", "PrioritizedReplayBuffer", "ReplayBuffer",
           "final_observations"]
__version__ = "0.1.0"
