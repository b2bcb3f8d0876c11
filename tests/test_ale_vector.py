"""vector_mode="ale": ale-py's native vector env behind fastrl's interface (fastrl/training/ale_vector.py),
step by step against the ALE run by hand with fastrl's semantics written out (frame stacks that
restart at an episode's first frame, lost lives as terminals while the game goes on, the score kept
apart from the clipped reward, true final observations), then in the trainer: training, evaluation,
checkpoints and the resume that starts new games. Skipped without the ``atari`` extra."""

import gymnasium as gym
import numpy as np
import pytest

from fastrl.agents.dqn import DQNConfig
from fastrl.config import ConfigError, with_overrides
from fastrl.training import arcade
from fastrl.training.ale_vector import AleVectorEnv, ale_game
from fastrl.training.envs import env_states, make_vec_env, replays_exactly, resolve_vector_mode, restore_env_states
from fastrl.training.rollout import game_books
from fastrl.training.trainer import Trainer

ale_py = pytest.importorskip("ale_py")
cv2 = pytest.importorskip("cv2")


class ByHand:
    """One game of ale-py's ALEInterface with the adapter's semantics written out: at a reset
    ``reset_game`` then FIRE where the minimal action set has it (no no-ops: ``noop_max=1``); a step
    is 4 frames with the reward summed and the last two grayscale screens max-pooled, resized to
    84x84 (INTER_AREA), cut short by a game over or the frame cap (counted from the reset; the
    pooled frame stays in the newer screen's buffer, so a cut step pools with it); a lost
    life (lives drop, some left) is terminal with ``life_loss``, the game going on and the stack
    restarting from the last frame; a game over or the cap starts a new game."""

    def __init__(self, game, seed, frame_stack, life_loss, clip, max_frames):
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self.ale = ale_py.ALEInterface()
        self.ale.setInt("random_seed", seed)
        self.ale.setFloat("repeat_action_probability", 0.0)
        self.ale.loadROM(ale_py.roms.get_rom_path(game))
        self.actions = self.ale.getMinimalActionSet()
        self.k, self.life_loss, self.clip, self.max_frames = frame_stack, life_loss, clip, max_frames
        self.buf = np.zeros((2, 210, 160), np.uint8)

    def _frame(self):  # pooled in place, as ale-py does: a step cut short keeps it as its older frame
        np.maximum(self.buf[0], self.buf[1], out=self.buf[0])
        return cv2.resize(self.buf[0], (84, 84), interpolation=cv2.INTER_AREA)

    def _stack(self):
        ep = self.episode[-self.k :]
        ep = [ep[0]] * (self.k - len(ep)) + ep
        return ep[0].copy() if self.k == 1 else np.stack(ep)

    def reset(self):
        self.ale.reset_game()
        if ale_py.Action.FIRE in self.actions:
            self.ale.act(ale_py.Action.FIRE)
        self.ale.getScreenGrayscale(self.buf[0])
        self.buf[1].fill(0)
        self.episode, self.elapsed, self.lives = [self._frame()], 0, self.ale.lives()
        return self._stack()

    def step(self, a):
        reward, over = 0, False
        for t in range(4):
            reward += self.ale.act(self.actions[a])
            over, self.elapsed = self.ale.game_over(), self.elapsed + 1
            if over or self.elapsed >= self.max_frames:
                break
            if t >= 2:
                self.ale.getScreenGrayscale(self.buf[3 - t])
        self.episode.append(self._frame())
        lives, capped = self.ale.lives(), self.elapsed >= self.max_frames
        lost = self.life_loss and 0 < lives < self.lives
        self.lives = lives
        term, game_over = over or lost, over or capped
        final = self._stack()
        if game_over:
            obs = self.reset()
        elif lost:
            self.episode = [self.episode[-1]]
            obs = self._stack()
        else:
            obs = final
        info = {"score": float(reward), "game_over": game_over, "life_lost": term and not game_over, "lives": lives}
        return obs, float(np.sign(reward)) if self.clip else float(reward), term, capped, info, final


CASES = {  # game, frame_stack, life_loss_terminal, clip_rewards, max_episode_steps
    "breakout": ("Breakout", 4, True, True, 0),  # FIRE, lives: lost lives and game overs within 350 steps
    "breakout-capped": ("Breakout", 4, True, True, 40),  # 160 frames: every game truncated
    "asterix": ("Asterix", 1, False, False, 0),  # no FIRE; rewards of 50: the score unclipped
    "asterix-lives": ("Asterix", 3, True, True, 90),
}


@pytest.mark.parametrize("case", list(CASES))
def test_adapter_matches_ale_py_by_hand(case, monkeypatch):
    game, k, life_loss, clip, max_steps = CASES[case]
    envs = AleVectorEnv(f"ALE/{game}-v5", 2, max_steps, k, life_loss_terminal=life_loss, clip_rewards=clip, noop_max=1)
    name = ale_game(f"ALE/{game}-v5")
    max_frames = 4 * max_steps if max_steps else arcade.ALE_MAX_FRAMES
    ref = [ByHand(name, 7 + i, k, life_loss, clip, max_frames) for i in range(2)]
    shape = (2, 84, 84) if k == 1 else (2, k, 84, 84)
    assert envs.single_observation_space == gym.spaces.Box(0, 255, shape[1:], np.uint8)
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    obs, info = envs.reset(seed=7)
    assert obs.shape == shape and obs.dtype == np.uint8
    for i in range(2):
        np.testing.assert_array_equal(obs[i], ref[i].reset(), err_msg=f"reset of env {i}")
    rng = np.random.default_rng(1)
    seen = {"life_lost": 0, "game_over": 0, "truncated": 0, "terminated": 0, "big": 0}
    lives_before = info["lives"].copy()
    for t in range(350):
        actions = rng.integers(envs.single_action_space.n, size=2)
        obs, rewards, term, trunc, info = envs.step(actions)
        assert obs.shape == shape and obs.dtype == np.uint8 and rewards.dtype == np.float64
        for i in range(2):
            o, r, te, tr, inf, final = ref[i].step(int(actions[i]))
            where = f"step {t}, env {i}"
            np.testing.assert_array_equal(obs[i], o, err_msg=where)
            assert (rewards[i], term[i], trunc[i]) == (r, te, tr), where
            assert (info["score"][i], info["game_over"][i], info["life_lost"][i]) == (
                inf["score"],
                inf["game_over"],
                inf["life_lost"],
            ), where
            if te or tr:  # the true final observation, not the next episode's first
                assert info["_final_obs"][i]
                np.testing.assert_array_equal(info["final_obs"][i], final, err_msg=where)
            if inf["life_lost"]:  # the game goes on: one life less, no reset
                assert info["lives"][i] == lives_before[i] - 1 and te and not tr
                assert o.ndim == 2 or all(np.array_equal(o[0], o[p]) for p in range(k))  # a new stack
            seen["big"] += inf["score"] > 1
        for key, mask in (
            ("life_lost", info["life_lost"]),
            ("game_over", info["game_over"]),
            ("truncated", trunc),
            ("terminated", term),
        ):
            seen[key] += int(mask.sum())
        lives_before = info["lives"].copy()
    envs.close()
    if life_loss:
        assert seen["life_lost"] >= (4 if game == "Breakout" else 1)
    if max_steps:
        assert seen["truncated"] >= 2
    else:
        assert seen["game_over"] >= 1 and seen["truncated"] == 0
    if game == "Asterix":
        assert seen["big"] > 0  # the score is the game's (50 a thing), the reward clipped only with clip


def test_books_read_the_adapter():
    envs = AleVectorEnv("ALE/Asterix-v5", 2, 30, 4, life_loss_terminal=True, clip_rewards=True)
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    total_score, total_reward, games = 0.0, 0.0, 0
    for _ in range(200):
        _, rewards, term, trunc, infos = envs.step(rng.integers(9, size=2))
        books = game_books(rewards, term | trunc, infos)
        np.testing.assert_array_equal(books.scores, infos["score"])
        np.testing.assert_array_equal(books.game_over, (term | trunc) & ~infos["life_lost"])
        total_score, total_reward, games = (
            total_score + books.scores.sum(),
            total_reward + rewards.sum(),
            games + books.game_over.sum(),
        )
    assert total_score >= 50 * total_reward > 0 and games >= 10
    envs.close()


def test_seeded_runs_repeat_and_checkpoint_records_restart_games():
    def run(seed):
        envs = make_vec_env("ALE/Breakout-v5", 2, "ale", 0, 4, life_loss_terminal=True, clip_rewards=True)
        out = [envs.reset(seed=seed)[0]]
        rng = np.random.default_rng(0)
        for _ in range(60):
            out.append(envs.step(rng.integers(4, size=2))[0])
        states = env_states(envs)
        assert not replays_exactly(envs, states) and all(s["fresh"] for s in states)
        with pytest.warns(UserWarning, match="start new games"):
            restarted = restore_env_states(envs, states)
        envs.close()
        return np.stack(out), states, restarted

    a, b, c = run(3), run(3), run(4)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1] and a[1] != c[1] and a[1][0]["seed"] != a[1][1]["seed"]
    np.testing.assert_array_equal(a[2], b[2])
    assert not np.array_equal(a[0], c[0])
    # a gymnasium chain restores such records as new games too (an ale run resumed with sync)
    sync = make_vec_env("ALE/Breakout-v5", 2, "sync", 0, 4)
    with pytest.warns(UserWarning, match="start new games"):
        obs = restore_env_states(sync, a[1])
    assert obs.shape == (2, 4, 84, 84)
    sync.close()


def test_vector_mode_ale_needs_an_ale_game():
    with pytest.raises(ConfigError, match="vector_mode=ale is for ALE games"):
        with_overrides(DQNConfig(), {"vector_mode": "ale"}).check()
    with pytest.raises(ConfigError, match="vector_mode=ale is for ALE games"):
        make_vec_env("CartPole-v1", 2, "ale")
    with pytest.raises(ConfigError, match="cannot make env 'ALE/NoSuchGame-v5'"):
        make_vec_env("ALE/NoSuchGame-v5", 2, "ale")
    with pytest.raises(ConfigError, match="must be one of"):
        with_overrides(DQNConfig(), {"vector_mode": "native"})
    DQNConfig(env_id="ALE/Breakout-v5", vector_mode="ale").check()


def test_auto_vector_mode_is_ale_for_several_ale_games_only():
    assert DQNConfig().vector_mode == "auto"
    assert resolve_vector_mode("auto", "ALE/Breakout-v5", 2) == "ale"
    assert resolve_vector_mode("auto", "ALE/Breakout-v5", 1) == "sync"  # one game: the exactly resumable chain
    assert resolve_vector_mode("auto", "CartPole-v1", 4) == "sync"
    assert resolve_vector_mode("async", "ALE/Breakout-v5", 4) == "async"
    envs = make_vec_env("ALE/Pong-v5", 2, "auto", 0, 4)
    assert isinstance(envs, AleVectorEnv)
    envs.close()


def short_breakout_run(**over: object) -> DQNConfig:
    """200 steps of Breakout on 2 native-vector envs, learning from step 100, games capped at 60 steps."""
    return DQNConfig(**{
        "env_id": "ALE/Breakout-v5", "vector_mode": "ale", "num_envs": 2, "frame_stack": 4, "total_steps": 200,
        "learning_starts": 100, "buffer_size": 200, "batch_size": 8, "target_update_interval": 50,
        "eval_every": 0, "eval_episodes": 1, "max_episode_steps": 60, "checkpoint_every": 0, "device": "cpu",
        **over,
    })


def test_trainer_with_ale_vector_mode(tmp_path):
    cfg = short_breakout_run()
    t = Trainer(cfg, run_dir=tmp_path / "run", progress=False, tensorboard=False)
    assert isinstance(t.envs, AleVectorEnv)
    r = t.train()
    assert r.env_steps == 200 and t.agent.updates == 51 and r.episodes >= 1 and len(r.evals) == 1
    arrays = t.buffer.state_dict()["arrays"]
    assert t.buffer.frame_stack == 4 and arrays["observations"].shape == (200, 84, 84)  # frames stored once
    assert arrays["truncated"].any()
    assert set(np.unique(arrays["rewards"])) <= {0.0, 1.0}
    t.close()
    with pytest.warns(UserWarning, match="start new games"):  # the checkpoint's games are not saved
        t = Trainer(
            with_overrides(cfg, {"total_steps": 240}), resume=tmp_path / "run", progress=False, tensorboard=False
        )
    assert t.state.env_steps == 200 and t.obs.shape == (2, 4, 84, 84)
    r = t.train()
    assert r.env_steps == 240 and t.agent.updates == 71
    t.close()


def test_collector_process_steps_ale_games(tmp_path):
    """collectors=1 builds the native vector env in the collector process: its chunks land in the
    buffer as stacked frames stored once, with lost lives / capped games and clipped rewards."""
    cfg = short_breakout_run(collectors=1, collector_envs=2)
    t = Trainer(cfg, run_dir=tmp_path / "run", progress=False, tensorboard=False)
    try:
        r = t.train()
        assert r.env_steps == 200 and r.episodes >= 1 and t.concurrent_stats["restarts"] == 0
        arrays = t.buffer.state_dict()["arrays"]
        assert arrays["observations"].shape == (200, 84, 84)  # frames stored once
        assert arrays["truncated"].any() and set(np.unique(arrays["rewards"])) <= {0.0, 1.0}
        b = t.buffer.sample(16)  # frame windows over the collector's streams
        got = t.buffer.get(b.indices.numpy())
        assert np.array_equal(got["next_observations"], b.next_observations.numpy())
        assert b.observations.shape == (16, 4, 84, 84) and b.observations.any()
    finally:
        t.close()
