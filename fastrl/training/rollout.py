"""One vector-env step, taken the same way by the training loop and by a collector process:
act (uniformly at random during burn-in, the agent's exploration after), step the envs, keep the
true final observations where episodes ended, tell the agent which envs finished, and read what the
run's books count (the game's score and full games, see :func:`game_books`)."""

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


class Books(NamedTuple):
    """What the run's books count of one vector step (``[num_envs]`` arrays)."""

    scores: np.ndarray
    """float64: the game's rewards (the env's, or ``info["score"]`` where the env clips)."""
    game_over: np.ndarray
    """bool: the step ended a game (``terminated | truncated``, less lost lives)."""


def game_books(rewards: np.ndarray, done: np.ndarray, infos: dict[str, Any]) -> Books:
    """The rewards and episode ends the run's books count. The transition's rewards and
    ``terminated`` are the learning target's; an env whose target differs from the game
    (:class:`fastrl.training.arcade.GameScore`: clipped rewards, lost lives as terminals) puts the
    game's reward in ``info["score"]`` and the game's end in ``info["game_over"]``. With
    ``AutoresetMode.SAME_STEP`` an ended episode's step info is ``infos["final_info"]``."""
    if "score" not in infos and "final_info" not in infos:
        return Books(rewards, done)
    scores, over = np.array(rewards, dtype=np.float64), np.array(done, dtype=bool)
    for src in (infos, infos.get("final_info")):
        if src and "score" in src:
            m = src["_score"]
            scores[m] = src["score"][m]
            over[m] = src["game_over"][m]
    return Books(scores, over)


def env_step(agent: Any, envs: Any, obs: Any, env_steps: int, learning_starts: int) -> tuple[Transition, Any, Books]:
    """Act on ``obs`` and step ``envs`` once. Returns ``(transition, next obs to act on, books)``;
    the envs have autoreset where ``terminated | truncated``. The agent's ``after_env_step`` gets
    the ends of games (its per-episode schedules count games)."""
    if env_steps < learning_starts:
        actions = agent.random_actions(envs.num_envs)
    else:
        actions = agent.act(obs, explore=True)
    next_obs, rewards, terminated, truncated, infos = envs.step(actions)
    final = final_observations(next_obs, terminated, truncated, infos)
    books = game_books(rewards, np.logical_or(terminated, truncated), infos)
    agent.after_env_step(books.game_over)
    return Transition(obs, actions, rewards, final, terminated, truncated), next_obs, books
