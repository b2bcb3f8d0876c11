"""One vector-env step, taken the same way by the training loop and by a collector process:
act (uniformly at random during burn-in, the agent's exploration after), step the envs, keep the
true final observations where episodes ended, and tell the agent which envs finished."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from fastrl.replay.spaces import final_observations


class Transition(NamedTuple):
    """One vector step, in the order of ``ReplayBuffer.extend``: arrays with a leading ``num_envs``
    axis; ``next_observations`` holds the true final observation where an episode ended."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray


def env_step(
    agent: Any, envs: Any, obs: Any, env_steps: int, learning_starts: int
) -> tuple[Transition, Any, np.ndarray]:
    """Act on ``obs`` and step ``envs`` once. Returns ``(transition, next obs to act on, done)``,
    ``done = terminated | truncated`` (the envs have autoreset those)."""
    if env_steps < learning_starts:
        actions = agent.random_actions(envs.num_envs)
    else:
        actions = agent.act(obs, explore=True)
    next_obs, rewards, terminated, truncated, infos = envs.step(actions)
    final = final_observations(next_obs, terminated, truncated, infos)
    done = np.logical_or(terminated, truncated)
    agent.after_env_step(done)
    return Transition(obs, actions, rewards, final, terminated, truncated), next_obs, done
