"""Buffer schemas from gymnasium spaces, and the true final observations of vector envs."""

from __future__ import annotations

from typing import Any

import numpy as np


def _space_spec(space: Any, what: str) -> tuple[tuple[int, ...], Any]:
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        return tuple(space.shape), space.dtype
    if isinstance(space, spaces.Discrete):
        return (), np.int64
    if isinstance(space, spaces.MultiDiscrete):
        return tuple(space.shape), np.int64
    if isinstance(space, spaces.MultiBinary):
        return tuple(space.shape), np.int64
    raise TypeError(f"{what}: fastrl buffers store Box, Discrete, MultiDiscrete and MultiBinary spaces, "
                    f"got {type(space).__name__} (flatten it, e.g. with gymnasium.wrappers.FlattenObservation)")


def schema_from_env(env: Any) -> dict[str, Any]:
    """Constructor arguments of a replay buffer matching ``env`` (a gymnasium Env or VectorEnv)."""
    num_envs = getattr(env, "num_envs", None)
    if num_envs is not None and hasattr(env, "single_observation_space"):
        obs_space, act_space = env.single_observation_space, env.single_action_space
    elif hasattr(env, "observation_space") and hasattr(env, "action_space"):
        obs_space, act_space, num_envs = env.observation_space, env.action_space, 1
    else:
        raise TypeError(f"env must be a gymnasium Env or VectorEnv, got {type(env).__name__}")
    obs_shape, obs_dtype = _space_spec(obs_space, "observation space")
    act_shape, act_dtype = _space_spec(act_space, "action space")
    return {"observation_shape": obs_shape, "observation_dtype": obs_dtype, "action_shape": act_shape,
            "action_dtype": act_dtype, "num_envs": int(num_envs)}


def frame_stack_of(env: Any) -> tuple[int, str] | None:
    """``(stack_size, padding_type)`` of the ``FrameStackObservation`` wrapping ``env`` (or the first
    sub-env of a ``SyncVectorEnv``), None when there is none to be found."""
    from gymnasium.wrappers import FrameStackObservation

    e, seen = env, 0
    if getattr(e, "envs", None):
        e = e.envs[0]
    while e is not None and seen < 100:
        if isinstance(e, FrameStackObservation):
            return int(e.stack_size), str(e.padding_type)
        e, seen = getattr(e, "env", None), seen + 1
    return None


def final_observations(next_obs: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
                       infos: dict[str, Any]) -> np.ndarray:
    """The observations to store as ``next_observations`` for one vector-env step.

    gymnasium >= 1.0 vector envs autoreset. With ``autoreset_mode=AutoresetMode.SAME_STEP``
    (what fastrl's training loop uses) ``step`` returns the *reset* observation of an env whose
    episode just ended and puts the true final observation in ``infos["final_obs"]``; this
    returns ``next_obs`` with those rows replaced, so the buffer never stores a reset
    observation as the successor of a terminal or truncated step. ``next_obs`` is not modified.
    """
    done = np.logical_or(terminated, truncated)
    if not done.any():
        return next_obs
    if "final_obs" not in infos:
        raise ValueError("an episode ended but infos has no 'final_obs': create the vector env with "
                         "autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP")
    out = np.array(next_obs, copy=True)
    finals = infos["final_obs"]
    for i in np.flatnonzero(done):
        out[i] = finals[i]
    return out
