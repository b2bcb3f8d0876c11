"""SAIL-DQN: the self-imitation advantage bonus on tiny hand-built batches, against explicit references,
with Double DQN, n-step targets and PER; the trainer's buffer keeps the episode returns."""

import numpy as np
import pytest
import torch
from test_dqn import Table, batch

from fastrl.agents import ALGOS, algo_of, default_config
from fastrl.agents.dqn import DQN, DQNConfig
from fastrl.config import ConfigError, with_overrides
from fastrl.agents.presets import PRESETS, preset
from fastrl.training.trainer import Trainer

# states 0, 1, 2; actions 0, 1, 2
ONLINE = [[1.0, 2.0, 0.0], [5.0, 3.0, 1.0], [0.0, 0.0, 9.0]]
TARGET = [[0.5, 3.0, 1.0], [4.0, 7.0, 2.0], [1.0, -1.0, 0.0]]


def sail_agent(alpha=0.9, **cfg):
    cfg = {"gamma": 0.9, "double_dqn": False, "sail": True, "sail_alpha": alpha, **cfg}
    a = DQN((1,), 3, DQNConfig(**cfg), network=Table(ONLINE), seed=0)
    with torch.no_grad():
        a.q_target.table.copy_(torch.tensor(TARGET))
    return a


def sail_batch(obs, actions, rewards, next_obs, terminated, returns, has_return, discounts=None,
               weights=None):
    """test_dqn's batch with the buffer's episode-return extras."""
    n = len(rewards)
    b = batch(obs, actions, rewards, next_obs, terminated, [False] * n, discounts, weights)
    return b._replace(extras={"returns": torch.tensor(returns, dtype=torch.float32),
                              "has_return": torch.tensor(has_return, dtype=torch.bool)})


def reference_target(b, alpha, gamma, double):
    """The SAIL target written out with numpy, one transition at a time."""
    online, target = np.array(ONLINE), np.array(TARGET)
    out = []
    for i in range(len(b.rewards)):
        s, a, s2 = int(b.observations[i, 0]), int(b.actions[i]), int(b.next_observations[i, 0])
        a_star = np.argmax(online[s2]) if double else np.argmax(target[s2])
        disc = gamma if b.discounts is None else float(b.discounts[i])
        y = float(b.rewards[i]) + disc * (1.0 - float(b.terminated[i])) * target[s2, a_star]
        if bool(b.extras["has_return"][i]):
            g = float(b.extras["returns"][i])
            y += alpha * (max(g, target[s, a]) - target[s].max())
        out.append(y)
    return torch.tensor(out, dtype=torch.float32)


def test_bonus_with_return_below_and_above_q_and_without_return():
    a = sail_agent(alpha=0.5)
    # s=0, a=0: Q_target(s, a) = 0.5, max_b Q_target(s, b) = 3.0
    b = sail_batch(
        obs=[0, 0, 0, 1],
        actions=[0, 0, 0, 1],
        rewards=[1.0, 1.0, 1.0, 0.0],
        next_obs=[1, 1, 1, 2],
        terminated=[False, False, False, True],
        returns=[-4.0, 10.0, 99.0, 8.0],  # G < Q, G > Q, (no G: ignored), G > Q = max
        has_return=[True, True, False, True],
    )
    plain = 1.0 + 0.9 * 7.0
    expected = torch.tensor(
        [
            plain + 0.5 * (0.5 - 3.0),  # G below Q_target(s, a): advantage-learning term
            plain + 0.5 * (10.0 - 3.0),  # G above: the observed return replaces the stale value
            plain,  # episode not ended: the plain DQN target
            0.0 + 0.5 * (8.0 - 7.0),  # terminated: no bootstrap, bonus still there
        ]
    )
    torch.testing.assert_close(a.td_target(b), expected)
    torch.testing.assert_close(a.td_target(b), reference_target(b, 0.5, 0.9, double=False))


def test_alpha_zero_and_sail_off_are_plain_dqn():
    b = sail_batch([0, 1], [1, 0], [0.5, 0.5], [1, 2], [False, False], [30.0, -3.0], [True, True])
    plain = DQN((1,), 3, DQNConfig(gamma=0.9, double_dqn=False), network=Table(ONLINE))
    with torch.no_grad():
        plain.q_target.table.copy_(torch.tensor(TARGET))
    torch.testing.assert_close(sail_agent(alpha=0.0).td_target(b), plain.td_target(b))
    assert not torch.equal(sail_agent(alpha=0.9).td_target(b), plain.td_target(b))


def test_bonus_uses_the_target_network_not_the_online_one():
    a = sail_agent(alpha=1.0)
    b = sail_batch([1], [0], [0.0], [1], [True], [-100.0], [True])
    # online: Q(1, 0) = 5 = max; target: Q_target(1, 0) = 4, max 7 -> bonus 4 - 7
    torch.testing.assert_close(a.td_target(b), torch.tensor([-3.0]))


@pytest.mark.parametrize("double", [False, True])
@pytest.mark.parametrize("n_step", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_target_matches_reference_with_double_and_n_step(double, n_step, seed):
    rng = np.random.default_rng(seed)
    n = 32
    b = sail_batch(
        obs=rng.integers(0, 3, n),
        actions=rng.integers(0, 3, n),
        rewards=rng.normal(size=n),
        next_obs=rng.integers(0, 3, n),
        terminated=rng.random(n) < 0.3,
        returns=rng.normal(3.0, 4.0, n),
        has_return=rng.random(n) < 0.6,
        discounts=0.9 ** rng.integers(1, 4, n) if n_step else None,
    )
    a = sail_agent(alpha=0.8, double_dqn=double)
    torch.testing.assert_close(a.td_target(b), reference_target(b, 0.8, 0.9, double))
    # update() (the online net at s with autograd, at s' without) uses the same target
    y = a.td_target(b)
    q = a.q(b.observations).gather(1, b.actions.view(-1, 1)).squeeze(1).detach()
    a.update(b)
    torch.testing.assert_close(a.td_abs, (q - y).abs())


def test_importance_weights_scale_the_sail_loss():
    a = sail_agent(alpha=0.9, loss="mse", max_grad_norm=0.0)
    b = sail_batch([0, 1], [0, 1], [0.0, 1.0], [0, 1], [True, True], [5.0, 0.0], [True, False],
                   weights=[0.5, 0.0])
    y = reference_target(b, 0.9, 0.9, double=False).numpy()
    q = np.array([ONLINE[0][0], ONLINE[1][1]])
    m = a.update(b)
    assert float(m["losses/td_loss"]) == pytest.approx(np.mean((q - y) ** 2 * [0.5, 0.0]), rel=1e-6)


def test_batch_without_returns_is_a_clear_error():
    a = sail_agent()
    b = sail_batch([0], [0], [0.0], [1], [False], [0.0], [True])._replace(extras={})
    with pytest.raises(ValueError, match="episode_returns_gamma"):
        a.td_target(b)


def test_algo_name_defaults_and_presets():
    assert ALGOS["sail-dqn"].config is DQNConfig and default_config("sail-dqn").sail
    assert not default_config("dqn").sail
    assert default_config("sail-dqn").sail_alpha == 0.9
    for env_id in ("CartPole-v1", "LunarLander-v3"):
        cfg = preset("sail-dqn", env_id)
        assert cfg.sail and ("sail-dqn", env_id) in PRESETS
        assert algo_of(cfg) == "sail-dqn"
    assert preset("sail-dqn", "Acrobot-v1").sail  # no preset: still SAIL
    assert algo_of(preset("dqn", "CartPole-v1")) == "dqn"
    with pytest.raises(ConfigError, match="sail_alpha"):
        with_overrides(preset("sail-dqn", "CartPole-v1"), {"sail_alpha": 1.5}).check()


TINY = {"learning_starts": 100, "eval_every": 0, "eval_episodes": 2, "log_every": 50, "batch_size": 32,
            "total_steps": 300, "max_episode_steps": 60}


@pytest.mark.parametrize("extra", [{}, {"prioritized": True, "n_step": 3, "num_envs": 2}])
def test_trainer_buffer_keeps_returns_with_gamma(tmp_path, extra):
    cfg = with_overrides(preset("sail-dqn", "CartPole-v1"), {**TINY, **extra})
    t = Trainer(cfg, run_dir=tmp_path / "run", progress=False, tensorboard=False)
    try:
        t.train()
        assert t.algo == "sail-dqn" and t.buffer.episode_returns_gamma == cfg.gamma
        rows = t.buffer.get(np.arange(t.buffer.total_added - len(t.buffer), t.buffer.total_added))
        assert rows["has_return"].sum() > 100  # the finished episodes
        # the returns are the discounted returns-to-go of CartPole's +1 rewards (stream 0)
        stream = rows["has_return"][:: cfg.num_envs]
        g = rows["returns"][:: cfg.num_envs][stream]
        ends = (rows["terminated"] | rows["truncated"])[:: cfg.num_envs][stream]
        end = np.flatnonzero(ends)[0]
        k = np.arange(end + 1)[::-1]  # steps to the end of the first stored episode
        np.testing.assert_allclose(g[: end + 1], (1 - cfg.gamma ** (k + 1)) / (1 - cfg.gamma), rtol=1e-5)
    finally:
        t.close()


@pytest.mark.parametrize("env_id", sorted(e for a, e in PRESETS if a == "sail-dqn"))
def test_preset_smoke_run(tmp_path, env_id):
    cfg = with_overrides(preset("sail-dqn", env_id), TINY)
    t = Trainer(cfg, run_dir=tmp_path / "run", progress=False, tensorboard=False)
    try:
        r = t.train()
        assert r.env_steps == 300 and len(r.evals) == 1 and t.agent.updates > 0
        assert all(torch.isfinite(p).all() for p in t.agent.q.parameters())
    finally:
        t.close()
