"""ale-py's native vector env behind the interface of fastrl's gymnasium chain (``vector_mode="ale"``).

ale-py's ``AtariVectorEnv`` steps its games in C++ threads with its own preprocessing (frame skip 4
with max-pooling of the last two frames, 84x84 grayscale with ``INTER_AREA``, 0-29 no-op starts,
the frame stack); :class:`AleVectorEnv` wraps it so that the trainer, a collector and the replay
buffer see what :func:`fastrl.training.envs.make_vec_env` gives them for an ``ALE/...`` id: SAME_STEP
autoreset with the true final observation in ``infos["final_obs"]``, ``uint8[N, k, 84, 84]``
observations for ``frame_stack=k > 1`` (``uint8[N, 84, 84]`` for ``k = 1``) whose positions before
an episode's first frame repeat that frame, no sticky actions, the ALE's 108,000-frame cap as a
truncation, a lost life as ``terminated`` for the learner with ``info["life_lost"]`` while the game
goes on (``life_loss_terminal``), ``info["score"]`` (the game's reward) and ``info["game_over"]``
(the step ended the game), and the reward clipped to its sign with ``clip_rewards``.

What is ale-py's and what is this adapter's:

* ale-py is made with ``repeat_action_probability=0``, ``noop_max=30``, ``use_fire_reset=True``,
  ``reward_clipping=False`` (the adapter clips, so the score stays), ``stack_num=frame_stack`` and
  ``life_loss_info=life_loss_terminal`` (``terminated`` at a lost life, the game goes on). Not its
  ``episodic_life``: in ale-py 0.12.1 that resets the emulator at a lost life (``reset_game``: a new
  game with all lives each time), not what the Nature DQN's lost-life terminals do.
* A step's game end (a new game was started: autoreset) is told apart from a lost life by the
  frame counters: without a reset the episode's frame number advances as much as the emulator's.
* The frame stack: ale-py starts a game's stack with zeros (``[0, 0, 0, f]``) and keeps stacking
  across a lost life; the adapter overwrites the positions before the episode's first frame with
  that frame, as ``FrameStackObservation`` and the replay buffer (which stacks at sample time) do,
  so that the agent acts on the stacks it learns from. After a lost life the next observation is
  the last frame repeated (the gymnasium chain's reset of the stack).
* Truncation: ``max_episode_steps=m > 0`` becomes ale-py's frame cap ``min(108000, 4 m)``.

Differences from the gymnasium chain (:func:`fastrl.training.arcade.make_ale`), all small:

* FIRE at a reset: ale-py presses FIRE once (for games whose minimal action set has FIRE), before
  its no-ops, and draws 0-29 no-ops less the FIRE frame; the gymnasium chain draws 1-30 no-ops,
  then presses FIRE and UP (``FireOnReset``). The games start from different frames, both random.
* No FIRE after a lost life: the gymnasium chain's ``FireOnReset`` presses FIRE and UP after each
  lost life too (its ``LifeLossTerminal`` reset); ale-py does not, so in Breakout the agent serves
  the ball itself (as it must in evaluation, which plays full games with FIRE only at the start).
* The 108,000-frame cap counts from the end of the reset's no-ops (the gymnasium chain's ALE
  counts them too): a capped game is up to 30 frames (8 agent steps) longer.
* A life lost on the very step that reaches the frame cap is reported ``terminated`` and
  ``truncated`` (the gymnasium chain: ``truncated`` only); a game over on that step is both in both.
* A lost life ends the frame skip in neither; a game over ends it in both.
* The infos are flat: the ended step's ``score``, ``game_over`` and ``life_lost`` are top-level
  arrays for every env (no ``final_info``); :func:`fastrl.training.rollout.game_books` reads both.
* Games are seeded by ale-py (``reset(seed=s)`` seeds env ``i`` with ``s + i``, and the next games
  follow from it): a run is a function of its seed, but not the same games as the gymnasium chain's
  for that seed, and the per-env state cannot be saved: :meth:`AleVectorEnv.fastrl_states` gives
  records that restart fresh games (see :func:`fastrl.training.envs.restore_env_states`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from fastrl.config import ConfigError
from fastrl.training import arcade

FRAME_SKIP = 4


def ale_game(env_id: str) -> str:
    """ale-py's ROM name of an ``ALE/<Game>-v5`` id (``"ALE/MsPacman-v5"`` -> ``"ms_pacman"``);
    ConfigError for another id or one ale-py cannot step natively."""
    if arcade.family(env_id) != "atari":
        raise ConfigError(f"vector_mode=ale is for ALE games (ALE/<Game>-v5), not {env_id!r}: use sync or async")
    arcade.register(env_id)
    try:
        kwargs = gym.spec(env_id).kwargs
    except gym.error.Error as e:
        raise ConfigError(f"cannot make env {env_id!r}: {str(e).splitlines()[0]}") from None
    game = kwargs.get("game")
    if not isinstance(game, str) or kwargs.get("obs_type", "rgb") != "rgb" or kwargs.get("mode") is not None:
        raise ConfigError(f"vector_mode=ale steps the ALE's screen games with their default mode, not {env_id!r}")
    return game


class AleVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` games of ``env_id`` in ale-py's ``AtariVectorEnv`` (C++ threads), stepped as
    fastrl's gymnasium chain steps them (see the module docstring). ``num_threads``: ale-py's worker
    threads (0: one per env, at most the CPU count); ``noop_max``: ale-py's no-op starts (tests)."""

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        max_episode_steps: int = 0,
        frame_stack: int = 1,
        *,
        life_loss_terminal: bool = False,
        clip_rewards: bool = False,
        num_threads: int = 0,
        noop_max: int = 30,
    ) -> None:
        game = ale_game(env_id)
        from ale_py.vector_env import AtariVectorEnv

        self.max_frames = arcade.ALE_MAX_FRAMES
        if max_episode_steps > 0:
            self.max_frames = min(self.max_frames, FRAME_SKIP * max_episode_steps)
        self._env: Any = AtariVectorEnv(
            game,
            num_envs,
            num_threads=num_threads,
            max_num_frames_per_episode=self.max_frames,
            repeat_action_probability=0.0,
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
            img_height=84,
            img_width=84,
            grayscale=True,
            stack_num=frame_stack,
            frameskip=FRAME_SKIP,
            maxpool=True,
            noop_max=noop_max,
            episodic_life=False,
            life_loss_info=life_loss_terminal,
            reward_clipping=False,
            use_fire_reset=True,
        )
        self.env_id, self.num_envs, self.frame_stack, self.clip = env_id, num_envs, frame_stack, bool(clip_rewards)
        shape = (84, 84) if frame_stack == 1 else (frame_stack, 84, 84)
        self.single_observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.single_action_space = self._env.single_action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.metadata = {**self.metadata, "autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        self.fastrl_frame_stack = (frame_stack, "reset") if frame_stack > 1 else None
        """What ``FrameStackObservation`` the stacks are built as: the replay buffer stores single
        frames and stacks them itself (:func:`fastrl.replay.spaces.frame_stack_of`)."""
        self._age = np.zeros(num_envs, np.int64)  # steps since the episode's first frame
        self._game_steps = np.zeros(num_envs, np.int64)  # steps since the game's reset
        self._frames = np.zeros(num_envs, np.int64)  # ale-py's frame number ...
        self._episode_frames = np.zeros(num_envs, np.int64)  # ... and the game's, at the last step
        self._seed_base = 0  # the last reset's seed: fastrl_states derives restart seeds from it
        self._steps = 0  # vector steps since that reset

    # ------------------------------------------------------------------ gymnasium's VectorEnv
    def reset(self, *, seed: int | np.ndarray | None = None, options: dict[str, Any] | None = None) -> Any:
        """Resets every env: an int seeds env ``i`` with ``seed + i``, an array gives one seed per env."""
        if isinstance(seed, np.ndarray):
            seed = seed.astype(np.int64)
            self._seed_base = int(np.random.SeedSequence([int(s) for s in seed]).generate_state(1)[0])
        elif seed is not None:
            seed = self._seed_base = int(seed)  # ale-py takes a Python int (or an array)
        else:
            self._seed_base = 0
        obs, info = self._env.reset(seed=seed)
        self._steps = 0
        self._age[:] = 0
        self._game_steps[:] = 0
        self._frames = info["frame_number"].astype(np.int64)
        self._episode_frames = info["episode_frame_number"].astype(np.int64)
        self._pad(obs, self._age)
        return self._out(obs), self._infos(info)

    def step(self, actions: Any) -> Any:
        a = np.asarray(actions)
        if a.dtype not in (np.int32, np.int64):
            a = a.astype(np.int64)
        obs, reward, terminated, truncated, info = self._env.step(a.reshape(self.num_envs))
        frames = info["frame_number"].astype(np.int64)
        episode_frames = info["episode_frame_number"].astype(np.int64)
        # a reset restarts the game's frame count: it no longer advances with the emulator's
        new_game = (episode_frames - self._episode_frames) != (frames - self._frames)
        self._frames, self._episode_frames = frames, episode_frames
        self._steps += 1
        self._game_steps += 1
        # the cap reached with a terminal: ale-py says terminated only (a step stops early only at a game over)
        truncated = truncated | (new_game & (self._game_steps * FRAME_SKIP >= self.max_frames))
        done = terminated | truncated
        life_lost = terminated & ~new_game  # terminated while the game goes on (life_loss_info)
        age = self._age + 1  # of the stacks ale-py returned, where the episode goes on
        infos = self._infos(info)
        if done.any():
            final = obs.copy()
            final[new_game] = info["final_obs"][new_game]
            self._pad(final, age)
            obs[life_lost] = obs[life_lost, -1:]  # the stack restarts from the last frame
            age[done] = 0
            self._game_steps[new_game] = 0
            infos["final_obs"], infos["_final_obs"] = self._out(final), done
        self._pad(obs, age)
        self._age = age
        score = reward.astype(np.float64)
        every = np.ones(self.num_envs, bool)
        infos.update(score=score, _score=every, game_over=new_game, _game_over=every)
        infos.update(life_lost=life_lost, _life_lost=every)
        rewards = np.sign(score) if self.clip else score
        return self._out(obs), rewards, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        self._env = None  # ale-py's threads stop when its vectorizer is freed

    # ------------------------------------------------------------------ helpers
    def _pad(self, stacks: np.ndarray, age: np.ndarray) -> None:
        """In place: the positions before each episode's first frame repeat that frame."""
        k = self.frame_stack
        for i in np.flatnonzero(age < k - 1):
            first = k - 1 - int(age[i])
            stacks[i, :first] = stacks[i, first]

    def _out(self, stacks: np.ndarray) -> np.ndarray:
        return stacks[:, 0] if self.frame_stack == 1 else stacks

    def _infos(self, info: dict[str, Any]) -> dict[str, Any]:
        every = np.ones(self.num_envs, bool)
        out: dict[str, Any] = {}
        for key in ("lives", "episode_frame_number", "frame_number"):
            out[key], out[f"_{key}"] = info[key], every
        return out

    # ------------------------------------------------------------------ checkpoints
    def fastrl_states(self) -> list[dict[str, Any]]:
        """One record per env in the format of :class:`fastrl.training.envs.Replayable` whose game
        cannot be replayed (ale-py's state is not saved): ``"fresh": True`` and the seed of a new
        game, a function of the last reset's seed and the steps since."""
        ss = np.random.SeedSequence([self._seed_base % 2**63, self._steps])
        seeds = ss.generate_state(self.num_envs, dtype=np.uint32) % 2**31
        return [{"seed": int(s), "rng": None, "actions": [], "dtype": None, "fresh": True} for s in seeds]

    def fastrl_restore(self, states: list[dict[str, Any]]) -> np.ndarray:
        """New games seeded from ``states`` (records of :meth:`fastrl_states`, or a gymnasium
        chain's :class:`fastrl.training.envs.Replayable` records, whose games are not replayed);
        returns the observations."""
        if len(states) != self.num_envs:
            raise ValueError(f"fastrl_restore: {len(states)} states for {self.num_envs} envs")
        seeds = np.array([restart_seed(s, i) for i, s in enumerate(states)], np.int64)
        return np.asarray(self.reset(seed=seeds)[0])


def restart_seed(state: dict[str, Any], i: int) -> int:
    """The seed of a fresh game in place of env ``i``'s saved one: the record's seed, else one
    drawn from what the record holds (its generator state and action count)."""
    if state.get("seed") is not None:
        return int(state["seed"]) % 2**31
    entropy = [i, len(state.get("actions") or [])]
    rng = state.get("rng")
    if isinstance(rng, dict) and isinstance(rng.get("state"), dict):
        entropy += [int(v) % 2**64 for v in rng["state"].values() if isinstance(v, int)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0]) % 2**31
