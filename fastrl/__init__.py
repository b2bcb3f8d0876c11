"""fastrl: fast, correct replay buffers and DQN-family / DDPG agents for PyTorch."""

from fastrl.buffer import Batch, ReplayBuffer
from fastrl.prioritized import BetaSchedule, LinearSchedule, PrioritizedReplayBuffer
from fastrl.returns import discounted_returns, gae, lambda_returns
from fastrl.spaces import final_observations

__all__ = ["Batch", "BetaSchedule", "LinearSchedule", "PrioritizedReplayBuffer", "ReplayBuffer",
           "discounted_returns", "final_observations", "gae", "lambda_returns"]
__version__ = "0.1.0"
