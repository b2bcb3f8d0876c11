"""Arcade games: the ALE's Atari 2600 games (``ALE/<Game>-v5``, the ``atari`` extra) and MinAtar
(``MinAtar/<Game>-v1``, the ``minatar`` extra), with the standard DQN preprocessing built from
gymnasium's and ale-py's own wrappers plus three small ones gymnasium does not have.

ALE chain (:func:`make_ale`), innermost first:

* ``gym.make(id, frameskip=1, repeat_action_probability=0.0, max_num_frames_per_episode=108_000)``:
  the Nature / RL-Zoo setup (``<Game>NoFrameskip-v4``: no sticky actions; v5's default is 0.25),
  full games truncated (not terminated) by the ALE after 108,000 frames (30 minutes of play);
* ``gymnasium.wrappers.AtariPreprocessing``: 1-30 no-op starts, frame skip 4 with max-pooling of the
  last two frames, 84x84 grayscale ``uint8``; ``terminal_on_life_loss=False``;
* :class:`SeedEveryReset`: every game starts from a seed (drawn from the env's generator when the
  caller gives none), so a game is a function of its seed and actions (exact resume);
* ``TimeLimit(max_episode_steps)`` when one is set (agent steps per game);
* :class:`LifeLossTerminal` (training, ``atari_life_loss_terminal``): a lost life ends the learner's
  episode (``terminated``, ``info["life_lost"]``); the next ``reset`` continues the same game;
* :class:`FireOnReset` where the game's actions include FIRE (Breakout, ...);
* :class:`GameScore`: ``info["score"]`` = the game's reward, ``info["game_over"]`` = the step ended
  the game; the reward returned is clipped to its sign with ``clip_rewards`` (training).

How "for the learning target only" reaches the learner. The env's reward and ``terminated`` are the
learner's: the buffer stores them, so targets use clipped rewards and stop bootstrapping at a lost
life, and the frame stack restarts at a lost life both in the env (its ``reset``) and in the buffer
(which starts a stack after every terminated step), so the agent acts and learns on the same stacks.
The run's books (episodic return and length, episodes, rolling "solved") read ``info["score"]`` and
``info["game_over"]`` instead (:func:`fastrl.training.rollout.game_books`), so they count full
games and the game's score. Evaluation envs are made without life-loss terminals or clipping: an
evaluation episode is a full game and its return the score. Rewards earned inside a reset (the FIRE
steps) are not counted; they are zero in the games that need FIRE.

``vector_mode="ale"`` steps ALE games in ale-py's native vector env instead (C++ threads, its own
preprocessing), with the learning signals and books above: :mod:`fastrl.training.ale_vector` (its
docstring lists how it differs from this chain: FIRE once at a reset and none after a lost life,
among others).

MinAtar (:func:`make_minatar`): ``gym.make``, :class:`FreshStickyAction` (a game's first sticky
action repeats NOOP, not the last game's last action) and :class:`SeedEveryReset` (MinAtar keeps
its own ``RandomState``, seeded only when ``reset`` is given a seed). Observations are
``bool[10, 10, C]``, channels last.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from fastrl.config import ConfigError

ALE_MAX_FRAMES = 108_000
"""Emulator frames after which the ALE truncates a game (30 minutes at 60 Hz)."""
EXTRAS = {"ALE/": "atari", "MinAtar/": "minatar"}
"""Env id prefix -> the pyproject extra that installs its games."""


def family(env_id: str) -> str | None:
    """``"atari"``, ``"minatar"`` or None (another gymnasium env)."""
    return next((extra for prefix, extra in EXTRAS.items() if env_id.startswith(prefix)), None)


def register(env_id: str) -> None:
    """Register the family's envs with gymnasium (the optional package is imported here);
    ConfigError naming the extra when it is not installed."""
    fam = family(env_id)
    try:
        if fam == "atari":
            import ale_py

            gym.register_envs(ale_py)
        elif fam == "minatar" and env_id not in gym.registry:
            import minatar.gym

            minatar.gym.register_envs()
    except ImportError:
        raise ConfigError(f'env {env_id!r} needs the {fam} extra: pip install "fastrl[{fam}]"') from None


class SeedEveryReset(gym.Wrapper):
    """Reset the wrapped env with a seed every time: the given one, else one drawn from the
    unwrapped env's ``np_random``, which is then reseeded from it. A game is then a function of its
    seed and its actions, and the seeds of a stream of games a function of the first: what
    :class:`fastrl.training.envs.Replayable` needs (it saves ``np_random`` before each reset).

    An ALE game without sticky actions is not reset with its seed: ale-py would then reload the ROM
    (130-250 ms a game, about 10% of early Breakout training). Only ale-py's generator is seeded, as
    ``reset(seed)`` would seed it (the no-op starts are drawn from it), and the ALE restarts the game
    with ``reset_game``. Without sticky actions the ALE's own generator is not used, so the game is
    the same, frame for frame, whatever games came before (measured on 10 games; three in
    ``tests/test_pixels.py: test_ale_games_restart_without_a_rom_reload...``)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        ale = getattr(env.unwrapped, "ale", None)
        self.reseed_only = ale is not None and float(ale.getFloat("repeat_action_probability")) == 0.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if seed is None:
            seed = int(self.unwrapped.np_random.integers(2**31))
        self.unwrapped.np_random = np.random.Generator(np.random.PCG64(seed))
        if self.reseed_only:
            self.unwrapped.seed_game(seed)  # type: ignore[attr-defined]
            return self.env.reset(options=options)
        return self.env.reset(seed=seed, options=options)


class LifeLossTerminal(gym.Wrapper):
    """A lost life (the ALE's ``lives()`` drops, the game goes on) is ``terminated`` with
    ``info["life_lost"] = True``; the ``reset`` that follows continues the game from where it is
    (no env step; the observation is the last one) and sets ``fastrl_game_continues`` for it. A
    real reset happens after a real game end. Stable-Baselines3's ``EpisodicLifeEnv``, less its
    no-op step after a lost life."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives = 0
        self.fastrl_game_continues = False
        """True between a lost life and the reset that continues the game."""
        self._last: tuple[Any, dict[str, Any]] | None = None

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = int(self.unwrapped.ale.lives())  # type: ignore[attr-defined]
        if not (terminated or truncated) and 0 < lives < self.lives:
            terminated, info = True, {**info, "life_lost": True}
            self.fastrl_game_continues = True
            self._last = (obs, info)
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if self.fastrl_game_continues and seed is None and self._last is not None:
            self.fastrl_game_continues = False
            obs, info = self._last
            return obs, {k: v for k, v in info.items() if k != "life_lost"}
        self.fastrl_game_continues = False
        obs, info = self.env.reset(seed=seed, options=options)
        self.lives = int(self.unwrapped.ale.lives())  # type: ignore[attr-defined]
        return obs, info


class FireOnReset(gym.Wrapper):
    """After each reset, press FIRE then UP (action 2) as Stable-Baselines3's ``FireResetEnv``
    does, for games that wait for FIRE to start (a reset again if either ends the game)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()  # type: ignore[attr-defined]
        if len(meanings) < 3 or meanings[1] != "FIRE":
            raise ValueError(f"FireOnReset: action 1 is not FIRE ({meanings})")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        obs, info = self.env.reset(seed=seed, options=options)
        for action in (1, 2):
            obs, _, terminated, truncated, _ = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        return obs, info


def needs_fire(env: gym.Env) -> bool:
    """The game's minimal action set has FIRE as action 1 (what :class:`FireOnReset` presses)."""
    meanings = env.unwrapped.get_action_meanings()  # type: ignore[attr-defined]
    return len(meanings) >= 3 and meanings[1] == "FIRE"


class GameScore(gym.Wrapper):
    """Puts the game's reward in ``info["score"]`` and whether the step ended the game (not just a
    life) in ``info["game_over"]``; returns the reward clipped to {-1, 0, 1} with ``clip``."""

    def __init__(self, env: gym.Env, clip: bool) -> None:
        super().__init__(env)
        self.clip = bool(clip)

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        score = float(reward)
        info = {**info, "score": score, "game_over": bool(terminated or truncated) and not info.get("life_lost")}
        return obs, float(np.sign(score)) if self.clip else reward, terminated, truncated, info


class FreshStickyAction(gym.Wrapper):
    """MinAtar's sticky actions repeat the previous action with probability 0.1, and that previous
    action survives a reset: a game's first step may repeat the last game's last action. This resets
    it to NOOP (0, as in a new env) at every reset, so that a game depends on its seed and its own
    actions only (exact resume replays a game alone)."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        self.unwrapped.game.last_action = 0  # type: ignore[attr-defined]
        return self.env.reset(seed=seed, options=options)


def make_ale(
    env_id: str, max_episode_steps: int, render_mode: str | None, life_loss_terminal: bool, clip_rewards: bool
) -> gym.Env:
    """An ALE game with the standard DQN preprocessing (see the module docstring); observations
    ``uint8[84, 84]`` (stack them with ``frame_stack=4``)."""
    kwargs: dict[str, Any] = {
        "frameskip": 1,
        "repeat_action_probability": 0.0,
        "max_num_frames_per_episode": ALE_MAX_FRAMES,
    }
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    env: gym.Env = gym.make(env_id, **kwargs)
    env = gym.wrappers.AtariPreprocessing(
        env, noop_max=30, frame_skip=4, screen_size=84, terminal_on_life_loss=False, grayscale_obs=True
    )
    env = SeedEveryReset(env)
    if max_episode_steps > 0:  # agent steps per game (gym.make's limit would count emulator frames)
        env = gym.wrappers.TimeLimit(env, max_episode_steps)
    if life_loss_terminal:
        env = LifeLossTerminal(env)
    if needs_fire(env):
        env = FireOnReset(env)
    return GameScore(env, clip_rewards)


def make_minatar(env_id: str, max_episode_steps: int, render_mode: str | None) -> gym.Env:
    """A MinAtar game (sticky actions 0.1 and difficulty ramping, MinAtar's defaults); observations
    ``bool[10, 10, C]``, channels last."""
    kwargs: dict[str, Any] = {}
    if max_episode_steps > 0:
        kwargs["max_episode_steps"] = max_episode_steps
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    return SeedEveryReset(FreshStickyAction(gym.make(env_id, **kwargs)))
