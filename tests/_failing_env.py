"""An env that raises on its 30th step (``gym.make("_failing_env:Failing-v0")`` imports this first)."""

import gymnasium as gym
from gymnasium.envs.classic_control import CartPoleEnv


class FailingEnv(CartPoleEnv):
    steps = 0

    def step(self, action):
        FailingEnv.steps += 1
        if FailingEnv.steps >= 30:
            raise RuntimeError("env exploded on purpose")
        return super().step(action)


if "Failing-v0" not in gym.registry:
    gym.register("Failing-v0", entry_point=FailingEnv, max_episode_steps=500)
