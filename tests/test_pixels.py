"""Pixel envs end to end: the ALE's preprocessing chain against ale-py run by hand, the learning
signals (clipped rewards, lost lives) kept apart from the run's books, fire on reset, MinAtar's
observations and network, short training runs and bit-identical resumes. Skipped without the
``atari`` / ``minatar`` extras (the missing-extra messages are tested without them)."""

import math
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_trainer import check_exact_resume

from fastrl.agents.dqn import DQN, DQNConfig
from fastrl.agents.nets import MinAtarCNN, NatureCNN, QNetwork, is_small_grid
from fastrl.agents.presets import MINATAR_PAPER, preset, preset_names
from fastrl.config import ConfigError, with_overrides
from fastrl.training import arcade
from fastrl.training.envs import Replayable, make_env, make_vec_env
from fastrl.training.rollout import game_books
from fastrl.training.trainer import Trainer


def needs_ale():
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")


def needs_minatar():
    pytest.importorskip("minatar")


def quiet(**kw):
    return {"progress": False, "tensorboard": False, **kw}


# ---------------------------------------------------------------------------- missing extras
def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # `import ale_py` raises ImportError
    with pytest.raises(ConfigError) as e:
        make_env("ALE/Breakout-v5")
    assert str(e.value) == "env 'ALE/Breakout-v5' needs the atari extra: pip install \"fastrl[atari]\""
    monkeypatch.setitem(sys.modules, "minatar", None)
    monkeypatch.setitem(sys.modules, "minatar.gym", None)
    monkeypatch.delitem(gym.registry, "MinAtar/Breakout-v1", raising=False)
    with pytest.raises(ConfigError) as e:
        make_vec_env("MinAtar/Breakout-v1")
    assert "\n" not in str(e.value) and 'pip install "fastrl[minatar]"' in str(e.value)
    # and the trainer says the same
    with pytest.raises(ConfigError, match=r"fastrl\[atari\]"):
        Trainer(DQNConfig(env_id="ALE/Pong-v5"), **quiet())


def test_learning_signal_options():
    assert DQNConfig(env_id="ALE/Breakout-v5").env_options() == {"life_loss_terminal": True, "clip_rewards": True}
    off = DQNConfig(env_id="ALE/Breakout-v5", atari_life_loss_terminal=False, clip_rewards=False)
    assert off.env_options() == {"life_loss_terminal": False, "clip_rewards": False}
    assert DQNConfig().env_options() == {"life_loss_terminal": False, "clip_rewards": False}
    assert DQNConfig(clip_rewards=True).env_options()["clip_rewards"]
    assert with_overrides(DQNConfig(), {"clip_rewards": "none"}).clip_rewards is None


def test_presets_for_pixel_envs():
    atari = preset("dqn", "ALE/SpaceInvaders-v5")
    assert (atari.frame_stack, atari.learning_rate, atari.buffer_size, atari.learning_starts) == (4, 1e-4, 100_000, 100_000)
    assert atari.target_update_interval * atari.train_freq == 1_000 and atari.epsilon_end == 0.01
    assert atari.sync_every == 8 and preset("dqn", "MinAtar/Breakout-v1").sync_every == 1
    for game in ("Breakout", "Freeway", "SpaceInvaders", "Asterix", "Seaquest"):
        c = preset("dqn", f"MinAtar/{game}-v1")
        assert (c.network, c.batch_size, c.target_update_interval) == ("minatar", 32, 1_000)
        assert (c.epsilon_end, c.epsilon_duration, c.learning_starts, c.train_freq) == (0.01, 100_000, 5_000, 1)
        if game == "Freeway":  # Munchausen-DQN, 1-step, Adam 1e-4 with eps 1.5e-4 (see presets.py)
            assert (c.munchausen, c.n_step, c.learning_rate, c.adam_eps) == (True, 1, 1e-4, 1.5e-4)
            c.check()  # Munchausen with 1-step targets is a valid config
        else:
            assert (c.double_dqn, c.n_step, c.learning_rate, c.munchausen) == (True, 3, 2.5e-4, False)
        paper = with_overrides(DQNConfig(), MINATAR_PAPER)  # the paper's settings, kept for the baseline
        assert (paper.double_dqn, paper.n_step, paper.epsilon_end) == (False, 1, 0.1)
    assert preset("dqn", "CartPole-v1").frame_stack == 1


def test_munchausen_atari_preset():
    base, mdqn = preset("dqn", "ALE/Pong-v5"), preset("dqn", "ALE/Pong-v5", "m-dqn")
    assert preset_names("dqn", "ALE/Pong-v5") == ["default", "m-dqn"] and preset_names("dqn", "CartPole-v1") == ["default"]
    assert (mdqn.munchausen, mdqn.n_step, mdqn.learning_rate, mdqn.adam_eps) == (True, 1, 5e-5, 3.125e-4)
    assert (mdqn.m_alpha, mdqn.m_tau, mdqn.m_clip) == (0.9, 0.03, -1.0)
    assert (mdqn.buffer_size, mdqn.learning_starts, mdqn.epsilon_duration) == (1_000_000, 20_000, 250_000)
    assert mdqn.target_update_interval * mdqn.train_freq == 8_000
    mdqn.check()
    # the rest is the baseline's: the same env handling, network, batch, schedule and evaluation
    same = ("frame_stack", "network", "batch_size", "train_freq", "gamma", "loss", "eval_epsilon", "total_steps")
    assert all(getattr(mdqn, f) == getattr(base, f) for f in same)
    assert not base.munchausen and base.learning_rate == 1e-4  # "default" is still the RL-Zoo baseline
    assert preset("dqn", "ALE/Pong-v5", "default") == base
    for algo, env_id in (("dqn", "CartPole-v1"), ("c51", "ALE/Pong-v5")):
        with pytest.raises(ConfigError, match=f"no 'm-dqn' preset for {algo} on {env_id}; its presets: default"):
            preset(algo, env_id, "m-dqn")


def test_game_books_read_scores_and_game_ends():
    rewards, done = np.array([1.0, 0.0, 1.0]), np.array([False, True, True])
    assert game_books(rewards, done, {}) == (rewards, done)
    infos = {
        "score": np.array([4.0, 0.0, 0.0]),
        "_score": np.array([True, False, False]),
        "game_over": np.array([False, False, False]),
        "_game_over": np.array([True, False, False]),
        "final_info": {
            "score": np.array([0.0, 0.0, 7.0]),
            "_score": np.array([False, True, True]),
            "game_over": np.array([False, False, True]),  # env 1 lost a life, env 2 ended its game
            "_game_over": np.array([False, True, True]),
        },
    }
    scores, over = game_books(rewards, done, infos)
    np.testing.assert_array_equal(scores, [4.0, 0.0, 7.0])
    np.testing.assert_array_equal(over, [False, False, True])


# ---------------------------------------------------------------------------- ALE by hand
def _by_hand(env_id, seed, actions, max_frames=108_000, fire=True):
    """The standard preprocessing written out on ale-py's ALEInterface: 1-30 no-ops (drawn as
    AtariPreprocessing draws them), FIRE then UP after a reset, 4 frames per action with the
    reward summed and the last two grayscale screens max-pooled, resized to 84x84 (INTER_AREA)."""
    import cv2

    raw = gym.make(env_id, frameskip=1, repeat_action_probability=0.0, max_num_frames_per_episode=max_frames)
    ale = raw.unwrapped.ale
    action_set = raw.unwrapped._action_set
    buf = np.zeros((2, 210, 160), np.uint8)

    def frames(a):
        reward, term, trunc = 0.0, False, False
        for t in range(4):
            reward += ale.act(action_set[a])
            term, trunc = ale.game_over(with_truncation=False), ale.game_truncated()
            if term or trunc:
                break
            if t >= 2:
                ale.getScreenGrayscale(buf[3 - t])  # t = 2 -> buf[1], t = 3 -> buf[0]
        obs = cv2.resize(np.maximum(buf[0], buf[1]), (84, 84), interpolation=cv2.INTER_AREA)
        return obs, reward, term, trunc

    def reset(seed):
        raw.reset(seed=seed)
        for _ in range(raw.unwrapped.np_random.integers(1, 31)):
            ale.act(action_set[0])
            if ale.game_over():
                raw.reset()
        ale.getScreenGrayscale(buf[0])
        buf[1].fill(0)
        obs = cv2.resize(buf[0], (84, 84), interpolation=cv2.INTER_AREA)
        if fire:
            for a in (1, 2):
                obs, _, term, trunc = frames(a)
                assert not (term or trunc)
        return obs

    out = [(reset(seed), 0.0, False, False, ale.lives())]
    for a in actions:
        obs, r, term, trunc = frames(a)
        out.append((obs, r, term, trunc, ale.lives()))
        if term or trunc:  # the next game's seed: drawn from the env's generator (SeedEveryReset)
            out.append((reset(int(raw.unwrapped.np_random.integers(2**31))), 0.0, False, False, ale.lives()))
    raw.close()
    return out


def _ours(env_id, seed, actions, max_frames=108_000):
    old, arcade.ALE_MAX_FRAMES = arcade.ALE_MAX_FRAMES, max_frames
    try:
        env = make_env(env_id)  # an evaluation env: full games, the game's rewards
    finally:
        arcade.ALE_MAX_FRAMES = old
    obs, info = env.reset(seed=seed)
    out = [(obs, 0.0, False, False, info["lives"])]
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        assert info["score"] == r and info["game_over"] == (term or trunc)
        out.append((obs, r, term, trunc, info["lives"]))
        if term or trunc:
            obs, info = env.reset()
            out.append((obs, 0.0, False, False, info["lives"]))
    env.close()
    return out


@pytest.mark.parametrize("max_frames", [108_000, 240])
def test_ale_chain_matches_ale_py_by_hand(max_frames):
    needs_ale()
    actions = np.random.default_rng(3).integers(4, size=300)
    ours = _ours("ALE/Breakout-v5", 11, actions, max_frames)
    ref = _by_hand("ALE/Breakout-v5", 11, actions, max_frames)
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a[0].shape == (84, 84) and a[0].dtype == np.uint8
        np.testing.assert_array_equal(a[0], b[0], err_msg=f"step {i}")
        assert a[1:] == b[1:], f"step {i}"
    ends = [(o[2], o[3]) for o in ours if o[2] or o[3]]
    if max_frames == 240:  # 240 frames: every game is truncated by the ALE, none terminated
        assert ends and all(trunc and not term for term, trunc in ends)
    else:  # random play loses all five lives within 300 steps: a real game over, not truncated
        assert ends and all(term and not trunc for term, trunc in ends)
        assert {o[4] for o in ours} == {0, 1, 2, 3, 4, 5}
    assert any(o[1] > 0 for o in ours)


def _play(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, r, term, trunc, _ = env.step(a)
        out.append((obs, r, term, trunc))
        if term or trunc:
            break
    return out


@pytest.mark.parametrize("env_id", ["ALE/Breakout-v5", "ALE/Pong-v5", "ALE/Seaquest-v5"])
def test_ale_games_restart_without_a_rom_reload_and_do_not_depend_on_earlier_games(env_id):
    """SeedEveryReset restarts an ALE game with ale-py's generator seeded and no ROM reload: the
    same frames, rewards and ends as a fresh env reset with the seed (which reloads the ROM), after
    other games with other seeds were played."""
    needs_ale()
    actions = np.random.default_rng(5).integers(4, size=400) % gym.make(env_id).action_space.n
    fresh = make_env(env_id)
    seeder = fresh
    while not isinstance(seeder, arcade.SeedEveryReset):
        seeder = seeder.env
    assert seeder.reseed_only  # the chain has no sticky actions
    seeder.reseed_only = False  # ale-py's reset(seed): the ROM reloaded, the ALE's own seed set
    reloads = [_play(fresh, seed, actions) for seed in (7, 8)]
    used = make_env(env_id)
    _play(used, 123, np.random.default_rng(6).integers(2, size=3000))  # another game first
    for seed, ref in zip((7, 8), reloads):
        ours = _play(used, seed, actions)
        assert len(ours) == len(ref) > 1
        np.testing.assert_array_equal(ours[0], ref[0])
        for a, b in zip(ours[1:], ref[1:]):
            np.testing.assert_array_equal(a[0], b[0])
            assert a[1:] == b[1:]
    fresh.close()
    used.close()


def test_fire_on_reset_where_the_game_needs_it():
    needs_ale()

    def chain(env):
        names = []
        while isinstance(env, gym.Wrapper):
            names.append(type(env).__name__)
            env = env.env
        return names

    breakout = make_env("ALE/Breakout-v5", frame_stack=4, life_loss_terminal=True, clip_rewards=True)
    assert chain(breakout)[:5] == ["FrameStackObservation", "GameScore", "FireOnReset", "LifeLossTerminal", "SeedEveryReset"]
    assert "AtariPreprocessing" in chain(breakout)
    pacman = make_env("ALE/MsPacman-v5", life_loss_terminal=True)
    assert "FireOnReset" not in chain(pacman) and "LifeLossTerminal" in chain(pacman)
    pacman.close()
    # after a lost life the reset continues the game and presses FIRE and UP (8 frames)
    ale = breakout.unwrapped.ale
    breakout.reset(seed=0)
    lives = ale.lives()
    for _ in range(1000):
        obs, r, term, trunc, info = breakout.step(0)  # never fire: the ball is served once per life
        if term:
            break
    assert term and info["life_lost"] and not info["game_over"] and ale.lives() == lives - 1
    frame = ale.getEpisodeFrameNumber()
    obs2, _ = breakout.reset()
    assert ale.getEpisodeFrameNumber() == frame + 8 and ale.lives() == lives - 1
    assert obs2.shape == (4, 84, 84) and all(np.array_equal(obs2[0], obs2[k]) for k in range(3))  # new stack
    breakout.close()


def _books_run(tmp_path, name, life_loss):
    cfg = DQNConfig(
        env_id="ALE/Asterix-v5",  # lives and no FIRE: the same game with or without lost-life terminals
        frame_stack=4,
        atari_life_loss_terminal=life_loss,
        total_steps=400,
        learning_starts=10_000,  # random actions only: the same actions in both runs
        buffer_size=400,
        max_episode_steps=300,
        eval_every=0,
        eval_episodes=1,
        checkpoint_every=0,
        save_buffer=False,
        device="cpu",
    )
    t = Trainer(cfg, run_dir=tmp_path / name, **quiet())
    t.train()
    t.close()
    return t


def test_life_loss_terminals_change_targets_not_returns(tmp_path):
    needs_ale()
    on, off = _books_run(tmp_path, "on", True), _books_run(tmp_path, "off", False)
    a, b = on.buffer.state_dict()["arrays"], off.buffer.state_dict()["arrays"]
    np.testing.assert_array_equal(a["actions"], b["actions"])
    np.testing.assert_array_equal(a["rewards"], b["rewards"])
    assert set(np.unique(a["rewards"])) <= {0.0, 1.0} and a["rewards"].sum() > 0  # clipped for the target
    assert a["terminated"].sum() > b["terminated"].sum()  # lost lives are terminal for the target
    np.testing.assert_array_equal(a["truncated"], b["truncated"])
    # the books count full games and the game's score (Asterix's objects are worth 50 and more)
    assert on.state.episodes == off.state.episodes > 0
    assert list(on.state.recent_returns) == list(off.state.recent_returns)
    assert max(on.state.recent_returns) >= 50
    np.testing.assert_array_equal(on.state.ep_return, off.state.ep_return)
    assert on.state.evals[0]["mean"] == off.state.evals[0]["mean"]  # evaluation: full games, the score
    # terminated_next_observations="auto": with lost-life terminals the final frames are not kept
    assert on.buffer.terminated_next_observations == "zero" and off.buffer.terminated_next_observations == "keep"
    live = np.arange(on.buffer.total_added - len(on.buffer), on.buffer.total_added - 1)
    rows = on.buffer.get(live)
    assert not rows["next_observations"][rows["terminated"], -1].any()
    assert on.buffer._impl.side_rows == rows["truncated"].sum() < off.buffer._impl.side_rows


# ---------------------------------------------------------------------------- MinAtar
def test_minatar_observations_and_network():
    needs_minatar()
    env = make_env("MinAtar/Breakout-v1")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (10, 10, 4) and obs.dtype == np.bool_
    assert is_small_grid(obs.shape, obs.dtype) and not is_small_grid((4, 84, 84), np.uint8)
    agent = DQN.from_spaces(env.observation_space, env.action_space, DQNConfig(env_id="MinAtar/Breakout-v1"), "cpu", 0)
    assert isinstance(agent.q.torso, MinAtarCNN)
    x = torch.from_numpy(np.stack([obs, obs, obs]))
    q = agent.q(x)
    assert q.shape == (3, env.action_space.n) and q.dtype == torch.float32
    torch.testing.assert_close(agent.q(x.to(torch.uint8)), q, rtol=0, atol=0)
    assert agent.act(np.stack([obs, obs]), explore=False).shape == (2,)
    # the paper's layers: 3x3 conv with 16 channels, 128 hidden units
    conv, fc = agent.q.torso.conv, agent.q.torso.fc
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (4, 16, (3, 3), (1, 1))
    assert (fc.in_features, fc.out_features) == (16 * 8 * 8, 128)
    dueling = QNetwork((10, 10, 7), 6, dueling=True, pixels="minatar", atoms=5)
    assert dueling(torch.zeros(2, 10, 10, 7, dtype=torch.bool)).shape == (2, 6, 5)
    nature = QNetwork((4, 84, 84), 4, pixels=True)
    assert isinstance(nature.torso, NatureCNN)
    assert nature(torch.zeros(2, 4, 84, 84, dtype=torch.uint8)).shape == (2, 4)
    # a game is a function of its seed: resets without one draw it from the env's generator
    env2 = make_env("MinAtar/Breakout-v1")
    for e in (env, env2):
        e.reset(seed=5)
    for _ in range(3):
        a, b = env.reset()[0], env2.reset()[0]
        np.testing.assert_array_equal(a, b)
        for _ in range(20):
            np.testing.assert_array_equal(env.step(1)[0], env2.step(1)[0])
    env.close()
    env2.close()


def _tiny_pixels(env_id, **kw):
    settings = dict(
        env_id=env_id,
        total_steps=300,
        learning_starts=100,
        buffer_size=300,
        batch_size=8,
        train_freq=1,
        target_update_interval=50,
        eval_every=0,
        eval_episodes=1,
        max_episode_steps=120,
        checkpoint_every=0,
        device="cpu",
    )
    return DQNConfig(**{**settings, **kw})


def test_trainer_runs_minatar_and_ale(tmp_path):
    needs_minatar()
    needs_ale()
    t = Trainer(_tiny_pixels("MinAtar/Breakout-v1"), run_dir=tmp_path / "minatar", **quiet())
    r = t.train()
    assert r.env_steps == 300 and t.agent.updates == 201 and r.episodes > 0 and len(r.evals) == 1
    assert isinstance(t.agent.q.torso, MinAtarCNN)
    t.close()
    t = Trainer(_tiny_pixels("ALE/Breakout-v5", frame_stack=4, buffer_size=200), run_dir=tmp_path / "ale", **quiet())
    r = t.train()
    assert r.env_steps == 300 and t.agent.updates == 201 and len(r.evals) == 1
    assert t.buffer.frame_stack == 4 and t.buffer.state_dict()["arrays"]["observations"].shape == (200, 84, 84)  # frames stored once
    assert t.buffer.capacity == 200 and isinstance(t.agent.q.torso, NatureCNN)
    t.close()


@pytest.mark.parametrize("env_id", ["ALE/Breakout-v5", "MinAtar/Breakout-v1"])
def test_pixel_resume_is_bit_identical(tmp_path, env_id):
    needs_ale() if env_id.startswith("ALE") else needs_minatar()
    cfg = _tiny_pixels(env_id, total_steps=400, eval_every=200, frame_stack=4 if env_id.startswith("ALE") else 1)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="resumed envs did not reproduce")
        check_exact_resume(tmp_path, cfg, "dqn")


def test_replayable_records_lost_life_resets():
    needs_ale()
    env = Replayable(make_env("ALE/Breakout-v5", frame_stack=4, life_loss_terminal=True, clip_rewards=True))
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    while "reset" not in env.fastrl_state()["actions"]:
        _, _, term, trunc, _ = env.step(int(rng.integers(4)))
        if term or trunc:
            env.reset()
    for _ in range(5):
        env.step(int(rng.integers(4)))
    state = env.fastrl_state()
    assert state["actions"][-6] == "reset" and state["rng"] is None and state["seed"] == 3  # the whole game
    other = Replayable(make_env("ALE/Breakout-v5", frame_stack=4, life_loss_terminal=True, clip_rewards=True))
    other.fastrl_pending = state
    obs = other.fastrl_restore()
    for _ in range(50):
        a = int(rng.integers(4))
        o1, r1, t1, u1, _ = env.step(a)
        o2, r2, t2, u2, _ = other.step(a)
        assert (r1, t1, u1) == (r2, t2, u2)
        np.testing.assert_array_equal(o1, o2)
        if t1 or u1:
            env.reset()
            obs = other.reset()[0]
    assert obs is not None
    env.close()
    other.close()


@pytest.mark.parametrize("max_steps,vector_mode", [(1, "sync"), (3, "sync"), (1, "ale"), (3, "ale")])
def test_ale_episodes_ending_inside_the_stack_are_stored_apart(tmp_path, max_steps, vector_mode):
    """ALE Asterix (no FIRE; things move at every step, so frames tell steps and games apart)
    through the trainer's rollout with 1- and 3-step games (frame_stack=4, two streams), from the
    gymnasium chain and from ale-py's native vector env: the buffer's stacks are the env's, and a
    stack at step t of an episode holds only that episode's frames (positions before its first
    frame repeat it)."""
    needs_ale()
    cfg = _tiny_pixels("ALE/Asterix-v5", frame_stack=4, num_envs=2, total_steps=60, learning_starts=20,
                       buffer_size=40, max_episode_steps=max_steps, vector_mode=vector_mode)
    t = Trainer(cfg, run_dir=tmp_path / "run", **quiet())
    seen = []  # per vector step: (obs stacks, next obs stacks, done), as the rollout gave them
    extend = t.buffer.extend

    def spy(obs, actions, rewards, next_obs, term, trunc, **kw):
        seen.append((np.array(obs), np.array(next_obs), np.logical_or(term, trunc)))
        return extend(obs, actions, rewards, next_obs, term, trunc, **kw)

    t.buffer.extend = spy  # type: ignore[method-assign]
    t.train()
    assert t.agent.updates > 0 and len(seen) == 60 // 2
    obs = np.concatenate([s[0] for s in seen])
    nxt = np.concatenate([s[1] for s in seen])
    done = np.concatenate([s[2] for s in seen])
    assert obs.shape == (60, 4, 84, 84) and done.sum() >= 60 // max_steps - 2
    step_in_episode, age = [], [0, 0]
    for i, d in enumerate(done):
        step_in_episode.append(age[i % 2])
        age[i % 2] = 0 if d else age[i % 2] + 1
    starts = [i for i in range(2, 60) if step_in_episode[i] == 0]
    assert any(not np.array_equal(obs[i][-1], nxt[i - 2][-1]) for i in starts)  # a mixed stack would show
    live = np.arange(t.buffer.total_added - len(t.buffer), t.buffer.total_added)
    got = t.buffer.get(live)
    batch = t.buffer.sample(64)
    for stacks, nexts, ids in ((got["observations"], got["next_observations"], live),
                               (batch.observations.numpy(), batch.next_observations.numpy(), batch.indices.tolist())):
        for j, i in enumerate(ids):
            np.testing.assert_array_equal(stacks[j], obs[i], err_msg=f"observation stack of id {i}")
            np.testing.assert_array_equal(nexts[j], nxt[i], err_msg=f"next observation stack of id {i}")
            first = 3 - min(step_in_episode[i], 3)  # the episode's first frame in the stack
            for p in range(first):
                np.testing.assert_array_equal(stacks[j][p], stacks[j][first], err_msg=f"padding of id {i}")
    t.close()


@pytest.mark.slow
def test_atari_breakout_dqn_smoke(tmp_path, monkeypatch):
    """ALE/Breakout-v5 with the Atari preset, a few thousand steps with learning: finite losses,
    episodes logged as full games with the game's score (lost lives are terminals for the target
    only) and an evaluation (epsilon 0.05, the preset's) that plays full games (capped at 4,000 frames:
    1,000 agent steps)."""
    needs_ale()
    from fastrl.training.logger import read_metrics

    monkeypatch.setattr(arcade, "ALE_MAX_FRAMES", 4_000)  # a game ends truncated after 1,000 agent steps
    steps = 4_000
    cfg = with_overrides(preset("dqn", "ALE/Breakout-v5"), {
        "total_steps": steps, "learning_starts": 500, "buffer_size": steps, "epsilon_duration": 2_000,
        "eval_every": 0, "eval_episodes": 2, "checkpoint_every": 0, "log_every": 500, "device": "cpu",
    })
    t = Trainer(cfg, run_dir=tmp_path / "breakout", **quiet())
    r = t.train()
    assert r.env_steps == steps and t.agent.updates == (steps - 500) // 4 + 1
    m = read_metrics(t.run_dir)
    losses = m["losses/td_loss"][1]
    assert len(losses) >= 5 and np.isfinite(losses).all()
    games, lengths = m["charts/episodic_return"][1], m["charts/episodic_length"][1]
    assert len(games) == r.episodes >= 3 and max(games) >= 1
    terminated = t.buffer.state_dict()["arrays"]["terminated"]
    assert terminated.sum() >= 4 * len(games)  # five lives a game: lost lives end targets, not logged episodes
    assert min(lengths) > 100  # a game of five lives (random play loses a life in about 23 steps)
    assert len(r.evals) == 1 and np.isfinite(r.evals[0]["mean"]) and r.evals[0]["mean"] >= 0
    for env in t._eval_envs or []:  # each evaluation game ran to its end: no lives left, or the frame cap
        ale = env.unwrapped.ale
        assert ale.lives() == 0 or ale.getEpisodeFrameNumber() >= 4_000, (ale.lives(), ale.getEpisodeFrameNumber())
    t.close()


@pytest.mark.parametrize("distributional", ["none", "c51"])
def test_bf16_autocast_update_is_close_to_float32(distributional):
    """amp=bf16: the Nature-CNN update under bfloat16 autocast gives the float32 update's loss, Q
    and target within bfloat16's precision, keeps float32 weights and Adam state, and trains."""
    from fastrl.replay.batch import Batch

    g = torch.Generator().manual_seed(0)
    obs = torch.randint(0, 256, (32, 4, 84, 84), dtype=torch.uint8, generator=g)
    nxt = torch.randint(0, 256, (32, 4, 84, 84), dtype=torch.uint8, generator=g)
    b = Batch(obs, torch.randint(0, 4, (32,), generator=g), torch.randn(32, generator=g), nxt,
              torch.rand(32, generator=g) < 0.1, torch.zeros(32, dtype=torch.bool), torch.arange(32), {})
    agents = []
    for amp in ("none", "bf16"):
        torch.manual_seed(0)  # the same initial weights: only the precision differs
        agents.append(DQN((4, 84, 84), 4, DQNConfig(amp=amp, distributional=distributional, network="cnn"), seed=0,
                          pixels=True))
    out = [a.update(b) for a in agents]
    loss32, loss16 = (float(o["losses/td_loss"]) for o in out)
    assert math.isfinite(loss16) and abs(loss16 - loss32) <= 0.03 * abs(loss32)
    q32, q16 = (float(o["losses/q_values"]) for o in out)
    assert abs(q16 - q32) <= 0.05  # mean Q of order 0.1 at initialisation; bf16 keeps ~3 digits
    assert all(p.dtype == torch.float32 for p in agents[1].q.parameters())
    assert torch.allclose(agents[0].td_abs, agents[1].td_abs, atol=0.15)  # |TD| up to ~2.6 here
    first = loss16
    for _ in range(20):
        last = float(agents[1].update(b)["losses/td_loss"])
    assert last < first  # it fits the batch
    with pytest.raises(ConfigError, match="amp=bf16 is not captured in CUDA graphs"):
        DQNConfig(amp="bf16", cuda_graph=True).check()


def test_amp_auto_is_bf16_for_the_nature_cnn_on_a_bf16_cpu_only(monkeypatch):
    """amp="auto" (the default) resolves per agent: bf16 for the Nature CNN on a CPU with bf16
    kernels; float32 for MLPs, MinAtar's CNN, a user's network, cuda_graph and CPUs without them."""
    from fastrl.agents import dqn as dqn_mod

    assert DQNConfig().amp == "auto"
    monkeypatch.setattr(dqn_mod, "bf16_helps", lambda device: device.type == "cpu")
    nature = DQN((4, 84, 84), 4, DQNConfig(network="cnn"), pixels=True)
    assert nature.bf16
    assert not DQN((4, 84, 84), 4, DQNConfig(network="cnn", amp="none"), pixels=True).bf16
    assert not DQN((8,), 4, DQNConfig()).bf16
    assert not DQN((10, 10, 4), 3, DQNConfig(network="minatar"), pixels="minatar").bf16
    own = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 84 * 84, 4))
    assert not DQN((4, 84, 84), 4, DQNConfig(), pixels=True, network=own).bf16
    assert DQN((8,), 4, DQNConfig(amp="bf16")).bf16  # asked for: any network
    DQNConfig(cuda_graph=True).check()  # auto with cuda_graph is not an error: it resolves to float32
    monkeypatch.setattr(dqn_mod, "bf16_helps", lambda device: False)
    assert not DQN((4, 84, 84), 4, DQNConfig(network="cnn"), pixels=True).bf16
    # the update it resolves to is the amp="bf16" update, bit for bit
    monkeypatch.setattr(dqn_mod, "bf16_helps", lambda device: True)
    from fastrl.replay.batch import Batch

    g = torch.Generator().manual_seed(1)
    obs = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8, generator=g)
    b = Batch(obs, torch.randint(0, 4, (8,), generator=g), torch.randn(8, generator=g), obs.roll(1, 0),
              torch.zeros(8, dtype=torch.bool), torch.zeros(8, dtype=torch.bool), torch.arange(8), {})
    losses = []
    for amp in ("auto", "bf16"):
        torch.manual_seed(0)  # the same initial weights
        agent = DQN((4, 84, 84), 4, DQNConfig(network="cnn", amp=amp), pixels=True, seed=0)
        losses.append(float(agent.update(b)["losses/td_loss"]))
    assert losses[0] == losses[1]
