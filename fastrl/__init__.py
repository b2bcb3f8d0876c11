"""fastrl: fast, correct replay buffers and DQN-family / DDPG agents for PyTorch."""

from fastrl.buffer import Batch, ReplayBuffer
from fastrl.spaces import final_observations

__all__ = ["Batch", "ReplayBuffer", "final_observations"]
__version__ = "0.1.0"
