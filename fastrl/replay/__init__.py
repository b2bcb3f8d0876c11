"""The replay layer: the Python face of the C++ core (``fastrl._core``).

Buffers (uniform, n-step, prioritized, episode returns), background prefetch, the sampled
:class:`Batch`, saving and loading (``files``), the on-disk format (``persistence``) and mmap
storage, and the mapping from gymnasium spaces to fields. Imports neither the agents, the
training loop nor gymnasium (tests/test_buffer.py checks it).
"""

from fastrl.replay.batch import Batch
from fastrl.replay.buffer import ReplayBuffer
from fastrl.replay.prefetch import Prefetcher
from fastrl.replay.prioritized import PrioritizedReplayBuffer
from fastrl.replay.spaces import final_observations

__all__ = ["Batch", "Prefetcher", "PrioritizedReplayBuffer", "ReplayBuffer", "final_observations"]
