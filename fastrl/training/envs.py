"""Environment construction (single envs; gymnasium's vector envs, or ale-py's native one for ALE games),
exact env-state capture for resume, and parallel greedy evaluation."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from fastrl.config import ConfigError
from fastrl.training import arcade
from fastrl.training.ale_vector import AleVectorEnv


def make_env(
    env_id: str,
    max_episode_steps: int = 0,
    frame_stack: int = 1,
    render_mode: str | None = None,
    *,
    life_loss_terminal: bool = False,
    clip_rewards: bool = False,
) -> gym.Env:
    """``gym.make`` with fastrl's options; ConfigError (one line, what to do) for an unknown id or a
    missing extra. ``ALE/...`` and ``MinAtar/...`` ids get their family's wrappers
    (:mod:`fastrl.training.arcade`). A training env's learning signals: ``life_loss_terminal`` (ALE
    games only) and ``clip_rewards`` (any env: :class:`fastrl.training.arcade.GameScore` keeps the
    env's reward in ``info["score"]``); evaluation envs go without, for full games and the score."""
    fam = arcade.family(env_id)
    if fam is not None:
        arcade.register(env_id)
    kwargs: dict[str, Any] = {}
    if max_episode_steps > 0:
        kwargs["max_episode_steps"] = max_episode_steps
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    try:
        if fam == "atari":
            env = arcade.make_ale(env_id, max_episode_steps, render_mode, life_loss_terminal, clip_rewards)
        elif fam == "minatar":
            env = arcade.make_minatar(env_id, max_episode_steps, render_mode)
        else:
            env = gym.make(env_id, **kwargs)
            if clip_rewards:
                env = arcade.GameScore(env, clip=True)
    except gym.error.DependencyNotInstalled as e:
        if fam is None:
            raise ConfigError(f"env {env_id!r} needs a missing package: {str(e).splitlines()[0]}") from None
        raise ConfigError(f'env {env_id!r} needs the {fam} extra: pip install "fastrl[{fam}]"') from None
    except gym.error.Error as e:
        msg = str(e).splitlines()[0]
        raise ConfigError(
            f"cannot make env {env_id!r}: {msg} (list ids with "
            '`python -c "import gymnasium; gymnasium.pprint_registry()"`)'
        ) from None
    except ImportError as e:
        raise ConfigError(f"env {env_id!r} needs a missing package: {e}") from None
    if frame_stack > 1:
        env = gym.wrappers.FrameStackObservation(env, frame_stack)
    return env


class Replayable(gym.Wrapper):
    """Records what is needed to rebuild the env's exact state: how the current episode was reset
    (its seed, or the env's generator state just before the reset) and the actions since.

    :meth:`fastrl_state` returns that record; :meth:`fastrl_restore` resets a fresh env the same way
    and replays the actions, which reproduces the state of any env that is deterministic given its
    generator (all of gymnasium's classic-control and Box2D envs; ALE and MinAtar games, which
    :class:`fastrl.training.arcade.SeedEveryReset` seeds at every reset). It returns the last
    observation. A reset that continues a game after a lost life
    (:class:`fastrl.training.arcade.LifeLossTerminal`) is recorded among the actions as ``"reset"``:
    a record spans a whole game.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._record: dict[str, Any] = {"seed": None, "rng": None, "actions": [], "dtype": None}
        self.fastrl_pending: dict[str, Any] | None = None
        self._lives: Any = None  # the LifeLossTerminal wrapper in the chain, if any
        e: Any = env
        while e is not None and self._lives is None:
            self._lives = e if hasattr(e, "fastrl_game_continues") else None
            e = getattr(e, "env", None)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if seed is None and self._lives is not None and self._lives.fastrl_game_continues:
            self._record["actions"].append("reset")
            return self.env.reset(options=options)
        rng = None
        if seed is None and self.unwrapped._np_random is not None:
            rng = self.unwrapped.np_random.bit_generator.state
        self._record = {"seed": seed, "rng": rng, "actions": [], "dtype": None}
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> Any:
        a = np.asarray(action)
        self._record["actions"].append(a.tolist())
        if a.ndim:  # array actions are replayed with their dtype: float32 and float64 torques
            self._record["dtype"] = a.dtype.str  # give different Pendulum states (NumPy 2)
        return self.env.step(action)

    def fastrl_state(self) -> dict[str, Any]:
        return {
            "seed": self._record["seed"],
            "rng": self._record["rng"],
            "actions": list(self._record["actions"]),
            "dtype": self._record["dtype"],
        }

    def fastrl_restore(self) -> Any:
        """Apply ``fastrl_pending`` (set with ``set_attr``): reset as recorded, replay the actions."""
        rec, self.fastrl_pending = self.fastrl_pending, None
        if rec is None:
            raise RuntimeError("fastrl_restore: no pending state")
        if rec["rng"] is not None:
            if self.unwrapped._np_random is None:
                self.unwrapped.reset(seed=0)
            self.unwrapped.np_random.bit_generator.state = rec["rng"]
        obs, _ = self.reset(seed=rec["seed"])
        dtype = rec.get("dtype")
        for a in rec["actions"]:
            if isinstance(a, str):  # "reset": a lost life's reset, the game goes on
                obs, _ = self.reset()
            else:
                obs, *_ = self.step(np.asarray(a, dtype=dtype) if isinstance(a, list) else a)
        return obs


def resolve_vector_mode(mode: str, env_id: str, num_envs: int) -> str:
    """``vector_mode`` as built: ``"auto"`` is ale-py's native vector env for ALE games with more than
    one env (the fastest here), else ``"sync"``."""
    if mode != "auto":
        return mode
    return "ale" if arcade.family(env_id) == "atari" and num_envs > 1 else "sync"


def make_vec_env(
    env_id: str,
    num_envs: int = 1,
    mode: str = "auto",
    max_episode_steps: int = 0,
    frame_stack: int = 1,
    *,
    life_loss_terminal: bool = False,
    clip_rewards: bool = False,
) -> gym.vector.VectorEnv:
    """A vector env with ``AutoresetMode.SAME_STEP`` (so ``infos["final_obs"]`` holds true final
    observations). ``mode``: ``"sync"`` (``SyncVectorEnv``) or ``"async"`` (``AsyncVectorEnv``, a
    subprocess per env) of :class:`Replayable` sub-envs (see :func:`make_env` for the options), or
    ``"ale"`` for ALE games: ale-py's native vector env behind the same interface
    (:class:`fastrl.training.ale_vector.AleVectorEnv`; its games are not replayable, see
    :func:`restore_env_states`); ``"auto"``: ``"ale"`` for ALE games with ``num_envs > 1``, else ``"sync"``."""
    mode = resolve_vector_mode(mode, env_id, num_envs)
    if mode == "ale":
        return AleVectorEnv(
            env_id,
            num_envs,
            max_episode_steps,
            frame_stack,
            life_loss_terminal=life_loss_terminal,
            clip_rewards=clip_rewards,
        )

    def one() -> gym.Env:
        return make_env(
            env_id, max_episode_steps, frame_stack, life_loss_terminal=life_loss_terminal, clip_rewards=clip_rewards
        )

    one().close()  # fail early, in this process

    def thunk() -> gym.Env:
        return Replayable(one())

    cls = gym.vector.AsyncVectorEnv if mode == "async" else gym.vector.SyncVectorEnv
    return cls([thunk] * num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


FRESH_GAMES = (
    "the saved env states cannot be replayed (a vector_mode=ale run: ale-py's games are not saved), "
    "so the resumed envs start new games (seeded from the checkpoint): each env stream's last stored "
    "step is followed in the replay by a new game's first step with no episode end between them, so "
    "the next frame_stack - 1 stacks and n_step - 1 n-step sums of that stream mix the two games"
)


def env_states(envs: Any) -> list[dict[str, Any]]:
    """Each sub-env's record for :func:`restore_env_states` (:meth:`Replayable.fastrl_state`; for
    :class:`~fastrl.training.ale_vector.AleVectorEnv`, records that restart fresh games)."""
    if isinstance(envs, AleVectorEnv):
        return envs.fastrl_states()
    return list(envs.call("fastrl_state"))


def replays_exactly(envs: Any, states: list[dict[str, Any]]) -> bool:
    """:func:`restore_env_states` rebuilds the saved states (not: a native ALE vector env, or
    records of one, which start new games)."""
    return not isinstance(envs, AleVectorEnv) and not any(s.get("fresh") for s in states)


def restore_env_states(envs: Any, states: list[dict[str, Any]]) -> np.ndarray:
    """Rebuild every sub-env's state; returns the stacked current observations. Where that cannot
    be done (:func:`replays_exactly` is False) the envs start new games, with a warning."""
    if not replays_exactly(envs, states):
        warnings.warn(FRESH_GAMES, stacklevel=2)
    if isinstance(envs, AleVectorEnv):
        return envs.fastrl_restore(states)
    envs.set_attr("fastrl_pending", list(states))
    return np.stack(envs.call("fastrl_restore"))


def evaluate(
    policy: Callable[[np.ndarray], np.ndarray],
    env_fn: Callable[[], gym.Env] | None,
    episodes: int,
    seed: int,
    envs: list[gym.Env] | None = None,
    epsilon: float = 0.0,
) -> np.ndarray:
    """Returns ``float64[episodes]``: one episode on each of ``episodes`` envs, stepped in lockstep.

    ``policy`` maps a batch of observations ``[k, *obs_shape]`` to actions ``[k]``; only envs still
    running are stepped and passed to it. Env ``i`` is reset with seed ``seed + i``. With
    ``epsilon`` each env's action is, with that probability, a draw from its action space instead
    (the spaces and the coin seeded from ``seed``: the same seed, the same episodes). Pass ``envs``
    to reuse environments between evaluations.
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"evaluate: epsilon must be in [0, 1], got {epsilon}")
    own = envs is None
    if envs is None:
        if env_fn is None:
            raise ValueError("evaluate: pass env_fn or envs")
        envs = [env_fn() for _ in range(episodes)]
    try:
        obs = [envs[i].reset(seed=seed + i)[0] for i in range(episodes)]
        coin = np.random.default_rng([seed, 1]) if epsilon > 0 else None
        if coin is not None:
            for i in range(episodes):
                envs[i].action_space.seed(seed + i)
        returns = np.zeros(episodes)
        active = list(range(episodes))
        while active:
            actions: Any = policy(np.stack([obs[i] for i in active]))
            if coin is not None:
                draws = coin.random(len(active)) < epsilon
                actions = [envs[i].action_space.sample() if d else a for i, a, d in zip(active, actions, draws)]
            still = []
            for i, a in zip(active, actions):
                obs[i], r, term, trunc, _ = envs[i].step(a)
                returns[i] += float(r)
                if not (term or trunc):
                    still.append(i)
            active = still
        return returns
    finally:
        if own:
            for e in envs:
                e.close()
