"""Buffer schemas from gymnasium spaces, and the true final observations of vector envs.

gymnasium is never imported here (its top-level import pulls its vector code): an env, space or
wrapper passed in was made by a caller who imported gymnasium already, so its classes are looked
up in ``sys.modules``; without gymnasium loaded no object can be one of them.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

SAME_STEP_FIX = (
    'gym.make_vec(..., vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}) '
    "or SyncVectorEnv / AsyncVectorEnv(..., autoreset_mode=AutoresetMode.SAME_STEP)"
)
_MODES = {"NextStep": "NEXT_STEP", "SameStep": "SAME_STEP", "Disabled": "DISABLED"}


def _gym_class(module: str, name: str) -> Any:
    """``module.name`` if gymnasium is loaded (the caller's objects come from it), else None."""
    mod = sys.modules.get(module)
    return None if mod is None else getattr(mod, name, None)


def _space_spec(space: Any, what: str) -> tuple[tuple[int, ...], Any]:
    for name, dtype in (("Box", None), ("Discrete", np.int64), ("MultiDiscrete", np.int64), ("MultiBinary", np.int64)):
        cls = _gym_class("gymnasium.spaces", name)
        if cls is not None and isinstance(space, cls):
            return (() if name == "Discrete" else tuple(space.shape)), (space.dtype if dtype is None else dtype)
    raise TypeError(
        f"{what}: fastrl buffers store Box, Discrete, MultiDiscrete and MultiBinary spaces, "
        f"got {type(space).__name__} (flatten it, e.g. with gymnasium.wrappers.FlattenObservation)"
    )


def mode_name(mode: Any) -> str:
    """``"NEXT_STEP"``, ``"SAME_STEP"`` or ``"DISABLED"`` for a gymnasium ``AutoresetMode``, its
    value (``"SameStep"``) or its name; ValueError for anything else."""
    name = getattr(mode, "name", None)
    if name in _MODES.values():
        return str(name)
    if isinstance(mode, str) and (mode in _MODES or mode in _MODES.values()):
        return _MODES.get(mode, mode)
    raise ValueError(f"autoreset_mode must be a gymnasium.vector.AutoresetMode, got {mode!r}")


def _check_vector_autoreset(env: Any) -> None:
    """Refuse a vector env whose steps cannot be stored as returned (NEXT_STEP autoreset)."""
    meta = getattr(env, "metadata", None)
    mode = meta.get("autoreset_mode") if isinstance(meta, dict) else None
    if mode is None:
        raise ValueError(
            "from_env: this vector env does not say its autoreset mode (metadata['autoreset_mode'], "
            "gymnasium >= 1.1; older vector envs autoreset on the next step, whose rows a buffer "
            f"must not store): make it with {SAME_STEP_FIX}"
        )
    if mode_name(mode) == "NEXT_STEP":
        raise ValueError(
            "from_env: the vector env autoresets on the next step (AutoresetMode.NEXT_STEP, "
            "gymnasium's default): the step after an episode end returns the reset observation "
            "and storing it adds a fake 'final observation -> reset observation' transition. "
            f"Make it with {SAME_STEP_FIX} and store next observations with "
            "fastrl.final_observations"
        )


def schema_from_env(env: Any) -> dict[str, Any]:
    """Constructor arguments of a replay buffer matching ``env`` (a gymnasium Env or VectorEnv).
    A vector env must autoreset in the same step (``AutoresetMode.SAME_STEP``) or not at all
    (``DISABLED``); ``NEXT_STEP`` raises ValueError (its reset steps are not transitions)."""
    num_envs = getattr(env, "num_envs", None)
    if num_envs is not None and hasattr(env, "single_observation_space"):
        obs_space, act_space = env.single_observation_space, env.single_action_space
        _check_vector_autoreset(env)
    elif hasattr(env, "observation_space") and hasattr(env, "action_space"):
        obs_space, act_space, num_envs = env.observation_space, env.action_space, 1
    else:
        raise TypeError(f"env must be a gymnasium Env or VectorEnv, got {type(env).__name__}")
    obs_shape, obs_dtype = _space_spec(obs_space, "observation space")
    act_shape, act_dtype = _space_spec(act_space, "action space")
    return {
        "observation_shape": obs_shape,
        "observation_dtype": obs_dtype,
        "action_shape": act_shape,
        "action_dtype": act_dtype,
        "num_envs": int(num_envs),
    }


def frame_stack_of(env: Any) -> tuple[int, str] | None:
    """``(stack_size, padding_type)`` of the ``FrameStackObservation`` wrapping ``env`` (or the first
    sub-env of a ``SyncVectorEnv``), None when there is none to be found. An env that stacks frames
    itself as that wrapper does says so in its attribute ``fastrl_frame_stack`` (the same pair, e.g.
    ale-py's native vector env in :mod:`fastrl.training.ale_vector`)."""
    own = getattr(env, "fastrl_frame_stack", None)
    if own is not None:
        return int(own[0]), str(own[1])
    frame_stack = _gym_class("gymnasium.wrappers", "FrameStackObservation")
    if frame_stack is None:
        return None
    e, seen = env, 0
    if getattr(e, "envs", None):
        e = e.envs[0]
    while e is not None and seen < 100:
        if isinstance(e, frame_stack):
            return int(e.stack_size), str(e.padding_type)
        e, seen = getattr(e, "env", None), seen + 1
    return None


def final_observations(
    next_obs: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    infos: dict[str, Any],
    autoreset_mode: Any = None,
) -> np.ndarray:
    """The observations to store as ``next_observations`` for one vector-env step.

    ``autoreset_mode``: the env's ``envs.metadata["autoreset_mode"]`` (gymnasium >= 1.1);
    None (the default) works out SAME_STEP from ``infos``.

    * ``SAME_STEP`` (what fastrl's training loop uses): ``step`` returns the *reset* observation
      of an env whose episode just ended and puts the true final observation in
      ``infos["final_obs"]``; this returns ``next_obs`` with those rows replaced, so the buffer
      never stores a reset observation as the successor of a terminal or truncated step.
    * ``DISABLED``: ``next_obs`` already is the true final observation; returned as it is.
    * ``NEXT_STEP`` (gymnasium's default): raises ValueError. Its step after an episode end is
      no transition ("final observation -> reset observation") and a buffer cannot skip one
      env's row of a vector step; make the env with ``AutoresetMode.SAME_STEP``.

    ``next_obs`` is not modified.
    """
    mode = None if autoreset_mode is None else mode_name(autoreset_mode)
    if mode == "NEXT_STEP":
        raise ValueError(
            "final_observations: a vector env in AutoresetMode.NEXT_STEP returns a reset step "
            f"after every episode end, which must not be stored; make it with {SAME_STEP_FIX}"
        )
    if mode == "DISABLED":
        return next_obs
    done = np.logical_or(terminated, truncated)
    if not done.any():
        return next_obs
    if "final_obs" not in infos:
        raise ValueError(
            "an episode ended but infos has no 'final_obs': create the vector env with "
            f"autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP ({SAME_STEP_FIX}), or pass "
            "autoreset_mode=AutoresetMode.DISABLED if you reset the envs yourself"
        )
    out = np.array(next_obs, copy=True)
    finals = infos["final_obs"]
    for i in np.flatnonzero(done):
        out[i] = finals[i]
    return out
