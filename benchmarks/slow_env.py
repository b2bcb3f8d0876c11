"""A slow simulator for the collector benchmarks: CartPole-v1 that sleeps a fixed time per step.

``gymnasium.make("slow_env:SlowCartPole-v1", delay=0.002)`` (the ``module:id`` form imports this
module, which registers the id, in whichever process makes the env: collectors included, as long as
``benchmarks/`` is on ``sys.path`` or ``PYTHONPATH``). The sleep stands for an expensive simulator
that is not CPU-bound, so collectors scale on a machine with few cores.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym


class SleepPerStep(gym.Wrapper):
    def __init__(self, env: gym.Env, delay: float = 0.002) -> None:
        super().__init__(env)
        self.delay = delay

    def step(self, action: Any) -> Any:
        time.sleep(self.delay)
        return self.env.step(action)


def _make(delay: float = 0.002, **kwargs: Any) -> gym.Env:
    return SleepPerStep(gym.make("CartPole-v1", **kwargs).unwrapped, delay)


if "SlowCartPole-v1" not in gym.registry:
    gym.register("SlowCartPole-v1", entry_point=_make, max_episode_steps=500)
