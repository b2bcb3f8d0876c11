"""DDPG / TD3: targets and losses on tiny hand-built batches, Polyak updates, noise processes, action
scaling, state round trips, presets and bad configurations."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from fastrl.replay.batch import Batch as B

from fastrl.agents import ALGOS, algo_of, default_config
from fastrl.agents.ddpg import DDPG, DDPGConfig
from fastrl.config import ConfigError, with_overrides
from fastrl.agents.nets import Actor, Critic, polyak_
from fastrl.agents.noise import GaussianNoise, OUNoise
from fastrl.agents.presets import PRESETS, preset
from fastrl.training.trainer import Trainer


def random_batch(n=8, obs_dim=3, act_dim=2, seed=0, low=-2.0, high=2.0, **kw):
    g = torch.Generator().manual_seed(seed)
    return B(
        torch.randn(n, obs_dim, generator=g),
        low + (high - low) * torch.rand(n, act_dim, generator=g),
        torch.randn(n, generator=g),
        torch.randn(n, obs_dim, generator=g),
        torch.rand(n, generator=g) < 0.3,
        torch.zeros(n, dtype=torch.bool),
        torch.arange(n),
        {},
        **kw,
    )


def agent(act_dim=2, low=-2.0, high=2.0, **cfg):
    cfg = {"actor_hidden_sizes": (16,), "critic_hidden_sizes": (16,), "gamma": 0.9, **cfg}
    return DDPG((3,), [low] * act_dim, [high] * act_dim, DDPGConfig(**cfg), seed=0)


# ---------------------------------------------------------------------------- targets and losses
class ConstActor(torch.nn.Module):
    """a(s) = the fixed action ``value`` for every observation."""

    def __init__(self, value):
        super().__init__()
        self.value = torch.nn.Parameter(torch.tensor(value, dtype=torch.float32))

    def forward(self, obs):
        return self.value.expand(obs.shape[0], -1)


class LinearQ(torch.nn.Module):
    """Critic stand-in: Q_i(s, a) = w_i . a + c_i (returns [n, B])."""

    def __init__(self, w, c):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w, dtype=torch.float32))
        self.c = torch.nn.Parameter(torch.tensor(c, dtype=torch.float32))

    def forward(self, obs, action):
        return self.w @ action.T + self.c[:, None]

    def q1(self, obs, action):
        return self.forward(obs, action)[0]


def test_td3_clipped_double_q_target():
    a = agent(act_dim=2, twin_critics=True, target_policy_noise=0.0)
    a.actor_target = ConstActor([0.5, -0.5])
    a.critic_target = LinearQ([[1.0, 0.0], [0.0, 1.0]], [3.0, 1.0])  # Q1 = 0.5 + 3, Q2 = -0.5 + 1
    b = random_batch(4, act_dim=2)
    q_min = min(0.5 + 3.0, -0.5 + 1.0)
    expected = b.rewards + 0.9 * (~b.terminated).float() * q_min
    torch.testing.assert_close(a.td_target(b), expected)
    # one critic (DDPG): no minimum
    a.critic_target = LinearQ([[1.0, 0.0]], [3.0])
    torch.testing.assert_close(a.td_target(b), b.rewards + 0.9 * (~b.terminated).float() * 3.5)
    # n-step discounts replace gamma
    b = random_batch(4, act_dim=2, discounts=torch.tensor([0.9, 0.81, 0.729, 1.0]))
    torch.testing.assert_close(a.td_target(b), b.rewards + b.discounts * (~b.terminated).float() * 3.5)


def test_target_policy_smoothing_noise_is_clipped():
    torch.manual_seed(0)
    a = agent(act_dim=1, target_policy_noise=10.0, target_noise_clip=0.3)
    a.actor_target = ConstActor([0.2])
    a.critic_target = LinearQ([[1.0]], [0.0])  # Q = the smoothed target action itself
    b = random_batch(4000, act_dim=1)._replace(
        rewards=torch.zeros(4000), terminated=torch.zeros(4000, dtype=torch.bool)
    )
    smoothed = a.td_target(b) / 0.9
    # noise of std 10 clipped to [-0.3, 0.3]: almost every draw sits on a clip bound
    assert smoothed.min() >= 0.2 - 0.3 - 1e-6 and smoothed.max() <= 0.2 + 0.3 + 1e-6
    assert (smoothed - 0.5).abs().lt(1e-6).float().mean() > 0.45
    assert (smoothed + 0.1).abs().lt(1e-6).float().mean() > 0.45
    # then clipped to the action range [-1, 1]
    a.actor_target = ConstActor([0.9])
    assert float((a.td_target(b) / 0.9).max()) == pytest.approx(1.0)
    # no smoothing: exactly the target actor's action
    a = agent(act_dim=1, target_policy_noise=0.0)
    a.actor_target, a.critic_target = ConstActor([0.2]), LinearQ([[1.0]], [0.0])
    torch.testing.assert_close(a.td_target(b) / 0.9, torch.full((4000,), 0.2))


def test_critic_loss_uses_actions_scaled_to_minus_one_one_and_sums_twin_critics():
    a = agent(act_dim=1, low=0.0, high=4.0, twin_critics=True, max_grad_norm=0.0)
    a.critic = LinearQ([[1.0], [2.0]], [0.0, 1.0])
    a.critic_optimizer = torch.optim.SGD(a.critic.parameters(), lr=0.0)
    a.actor_target, a.critic_target = ConstActor([0.0]), LinearQ([[0.0], [0.0]], [0.0, 0.0])
    b = B(torch.zeros(2, 3), torch.tensor([[3.0], [0.0]]), torch.tensor([1.0, -1.0]), torch.zeros(2, 3),
          torch.ones(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool), torch.arange(2), {},
          weights=torch.tensor([1.0, 0.5]))
    a._critic_params = list(a.critic.parameters())
    # env actions 3 and 0 in [0, 4] are 0.5 and -1 in [-1, 1]; targets are the rewards
    q1, q2 = np.array([0.5, -1.0]), np.array([2.0, -1.0])
    y = np.array([1.0, -1.0])
    m = a.update(b)
    expected = np.mean(((q1 - y) ** 2 + (q2 - y) ** 2) * [1.0, 0.5])
    assert float(m["losses/td_loss"]) == pytest.approx(expected)
    torch.testing.assert_close(a.td_abs, torch.tensor(np.abs(q1 - y), dtype=torch.float32))


def test_delayed_actor_and_target_updates():
    a = agent(policy_delay=3, tau=0.5)
    b = random_batch(16)
    actor0 = copy.deepcopy(a.actor.state_dict())
    target0 = [p.clone() for p in a.actor_target.parameters()]
    critic0 = copy.deepcopy(a.critic.state_dict())
    keys = []
    for i in range(3):
        m = a.update(b)
        keys.append("losses/actor_loss" in m)
        if i < 2:  # critic moved, actor and targets did not
            assert all(torch.equal(v, a.actor.state_dict()[k]) for k, v in actor0.items())
            assert all(torch.equal(p, q) for p, q in zip(target0, a.actor_target.parameters()))
    assert keys == [False, False, True]
    assert not all(torch.equal(v, a.critic.state_dict()[k]) for k, v in critic0.items())
    assert not all(torch.equal(v, a.actor.state_dict()[k]) for k, v in actor0.items())
    assert not all(torch.equal(p, q) for p, q in zip(target0, a.actor_target.parameters()))


def test_actor_step_climbs_the_critic_and_leaves_it_alone():
    a = agent(act_dim=1, policy_delay=1)
    a.critic = LinearQ([[1.0]], [0.0])  # Q = a: the actor should push its output up
    a._critic_params = list(a.critic.parameters())
    a.critic_optimizer = torch.optim.SGD(a._critic_params, lr=0.0)
    obs = torch.randn(64, 3)
    before = a.actor(obs).mean()
    for _ in range(20):
        m = a.update(random_batch(64, act_dim=1))
    assert a.actor(obs).mean() > before
    assert float(m["losses/actor_loss"]) < 0  # -Q(s, actor(s)) with Q = a > 0 by now
    torch.testing.assert_close(a.critic.w, torch.tensor([[1.0]]))  # SGD lr 0 and no actor leak


def test_polyak_update_matches_reference():
    target = [torch.tensor([1.0, 2.0]), torch.tensor([[0.0]])]
    online = [torch.tensor([3.0, -2.0]), torch.tensor([[4.0]])]
    polyak_(target, online, 0.25)
    torch.testing.assert_close(target[0], torch.tensor([1.5, 1.0]))
    torch.testing.assert_close(target[1], torch.tensor([[1.0]]))
    polyak_(target, online, 1.0)
    assert torch.equal(target[0], online[0]) and torch.equal(target[1], online[1])
    # the agent's step over both networks
    a = agent(tau=0.1)
    with torch.no_grad():
        for p in a.actor.parameters():
            p.add_(1.0)
    t_before = [p.clone() for p in a.actor_target.parameters()]
    a.update(random_batch(8))
    online_after = [p.detach() for p in a.actor.parameters()]
    for t0, t1, o in zip(t_before, a.actor_target.parameters(), online_after):
        torch.testing.assert_close(t1, t0 + 0.1 * (o - t0))


def test_final_layers_start_small():
    actor, critic = Actor((3,), 2, (32, 32), 3e-3), Critic((3,), 2, (32, 32), 2, 3e-3)
    for layer in (actor.net[-1][-1], critic.qs[0][-1], critic.qs[1][-1]):
        assert layer.weight.abs().max() <= 3e-3 and layer.bias.abs().max() <= 3e-3
    assert actor.net[-1][0].weight.abs().max() > 3e-3  # hidden layers keep torch's init
    out = actor(torch.randn(100, 3))
    assert out.shape == (100, 2) and out.abs().max() < 0.1
    assert critic(torch.randn(5, 3), torch.randn(5, 2)).shape == (2, 5)


# ---------------------------------------------------------------------------- noise
def test_ou_noise_reverts_to_the_mean_and_has_the_stationary_spread():
    theta, sigma = 0.15, 0.2
    ou = OUNoise(1, np.random.default_rng(0), theta=theta)
    ou.sample(20_000, 0.0)
    ou.x[:] = 2.0  # start every process far from the mean
    means = [float(ou.sample(20_000, sigma).mean()) for _ in range(60)]
    expected = 2.0 * (1 - theta) ** np.arange(1, 61)
    np.testing.assert_allclose(means, expected, atol=0.02)
    x = ou.sample(20_000, sigma)
    assert float(x.std()) == pytest.approx(sigma / np.sqrt(1 - (1 - theta) ** 2), rel=0.05)
    # temporally correlated: lag-1 correlation 1 - theta
    y = ou.sample(20_000, sigma)
    assert float(np.corrcoef(x[:, 0], y[:, 0])[0, 1]) == pytest.approx(1 - theta, abs=0.03)


def test_ou_noise_seeded_reset_and_state_round_trip():
    a, b = OUNoise(2, np.random.default_rng(5)), OUNoise(2, np.random.default_rng(5))
    np.testing.assert_array_equal(a.sample(3, 0.3), b.sample(3, 0.3))
    c = OUNoise(2, np.random.default_rng(6))
    assert not np.array_equal(a.sample(3, 0.3), c.sample(3, 0.3))
    a.reset(np.array([True, False, False]))
    assert (a.x[0] == 0).all() and (a.x[1] != 0).all()
    state, rng_state = a.state_dict(), a.rng.bit_generator.state
    d = OUNoise(2, np.random.default_rng(0))
    d.load_state_dict(state)
    d.rng.bit_generator.state = rng_state
    np.testing.assert_array_equal(a.sample(3, 0.3), d.sample(3, 0.3))


def test_gaussian_noise_scale():
    g = GaussianNoise(3, np.random.default_rng(0))
    x = g.sample(50_000, 0.1)
    assert x.shape == (50_000, 3) and x.dtype == np.float32
    assert float(x.std()) == pytest.approx(0.1, rel=0.02) and abs(float(x.mean())) < 2e-3


def test_noise_scale_schedule_and_ou_reset_at_episode_end():
    a = agent(noise="ou", noise_sigma=0.5, noise_sigma_end=0.1, noise_decay_steps=100)
    assert a.progress() == {"charts/noise_scale": 0.5}
    a.act(np.zeros((2, 3), np.float32))
    a.after_env_step(np.array([True, False]))
    assert (a.noise.x[0] == 0).all() and (a.noise.x[1] != 0).all()
    for _ in range(49):
        a.after_env_step(np.array([False, False]))
    assert a.progress()["charts/noise_scale"] == pytest.approx(0.1 + 0.4 * (1 - 100 / 100))
    assert a.exploration.t == 100


# ---------------------------------------------------------------------------- acting and scaling
def test_action_scaling_round_trip():
    low, high = np.array([-2.0, 0.0, 10.0]), np.array([2.0, 1.0, 30.0])
    a = DDPG((3,), low, high, DDPGConfig(actor_hidden_sizes=(8,), critic_hidden_sizes=(8,)))
    u = np.random.default_rng(0).uniform(-1, 1, (100, 3))
    env = a.to_env(u)
    assert env.dtype == np.float32 and (env >= low).all() and (env <= high).all()
    np.testing.assert_allclose(a.to_env(np.array([[-1, -1, -1], [1, 1, 1], [0, 0, 0]])),
                               [low, high, (low + high) / 2])
    back = a.from_env(torch.from_numpy(env)).numpy()
    np.testing.assert_allclose(back, u, atol=1e-6)


def test_act_explores_within_bounds_and_greedy_is_deterministic():
    a = agent(act_dim=1, low=-2.0, high=2.0, noise_sigma=1.0)
    obs = np.random.default_rng(1).normal(size=(500, 3)).astype(np.float32)
    explore = a.act(obs, explore=True)
    assert explore.shape == (500, 1) and explore.dtype == np.float32
    assert explore.min() >= -2.0 and explore.max() <= 2.0 and explore.std() > 0.5
    np.testing.assert_array_equal(a.greedy(obs), a.greedy(obs))
    np.testing.assert_array_equal(a.greedy(obs), a.act(obs, explore=False))
    r = a.random_actions(1000)
    assert r.shape == (1000, 1) and r.min() >= -2.0 and r.max() <= 2.0 and r.std() > 1.0


def test_state_dict_round_trip_continues_exactly():
    a = agent(noise="ou", twin_critics=True, policy_delay=2)
    b = agent(noise="ou", twin_critics=True, policy_delay=2)
    obs = np.zeros((2, 3), np.float32)
    for i in range(3):
        a.update(random_batch(8, seed=i))
        a.act(obs)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    torch.manual_seed(1)
    ma = a.update(random_batch(8, seed=9))
    torch.manual_seed(1)
    mb = b.update(random_batch(8, seed=9))
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    for net in ("actor", "critic", "actor_target", "critic_target"):
        for p, q in zip(getattr(a, net).parameters(), getattr(b, net).parameters()):
            assert torch.equal(p, q)
    np.testing.assert_array_equal(a.act(obs), b.act(obs))


# ---------------------------------------------------------------------------- configs and spaces
def test_algos_and_presets():
    assert ALGOS["ddpg"].config is DDPGConfig and ALGOS["td3"].agent is DDPG
    td3 = default_config("td3")
    assert td3.twin_critics and td3.policy_delay == 2 and td3.target_policy_noise == 0.2
    ddpg = default_config("ddpg")
    assert not ddpg.twin_critics and ddpg.policy_delay == 1 and ddpg.target_policy_noise == 0
    for algo in ("ddpg", "td3"):
        for env_id in ("Pendulum-v1", "LunarLanderContinuous-v3"):
            assert (algo, env_id) in PRESETS
            assert algo_of(preset(algo, env_id)) == algo
    assert preset("td3", "Pendulum-v1").twin_critics


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"tau": 0.0}, "tau"),
        ({"policy_delay": 0}, "policy_delay"),
        ({"noise": "pink"}, "bad value for noise"),
        ({"noise_sigma": 2.0}, "noise schedule"),
        ({"actor_learning_rate": 0.0}, "actor_learning_rate"),
        ({"target_noise_clip": -1.0}, "target_noise_clip"),
        ({"ou_theta": 0.0}, "ou_theta"),
    ],
)
def test_bad_config_is_a_config_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        with_overrides(preset("ddpg", "Pendulum-v1"), overrides).check()


def test_wrong_action_space_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="continuous \\(Box\\) action space but CartPole-v1"):
        Trainer(with_overrides(preset("ddpg", "CartPole-v1"), {}), run_dir=tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="discrete action space but Pendulum-v1"):
        Trainer(preset("sail-dqn", "Pendulum-v1"), run_dir=tmp_path / "b", progress=False)
    unbounded = gym.spaces.Box(-np.inf, np.inf, (2,))
    with pytest.raises(ConfigError, match="finite bounds"):
        DDPG.from_spaces(gym.spaces.Box(-1, 1, (3,)), unbounded, DDPGConfig(), "cpu", 0)


def test_replay_buffer_from_env_stores_box_actions():
    from fastrl import ReplayBuffer
    from fastrl.training.envs import make_vec_env

    envs = make_vec_env("LunarLanderContinuous-v3", 2)
    try:
        buf = ReplayBuffer.from_env(envs, 64, seed=0)
        assert buf.fields[1].shape == (2,) and buf.fields[1].dtype == "float32"
        obs, _ = envs.reset(seed=0)
        actions = np.array([[0.25, -0.5], [1.0, -1.0]], np.float32)
        nxt, r, term, trunc, _ = envs.step(actions)
        buf.extend(obs, actions, r, nxt, term, trunc)
        got = buf.get(np.arange(2))["actions"]
        np.testing.assert_array_equal(got, actions)
    finally:
        envs.close()


TINY = {"learning_starts": 100, "eval_every": 0, "eval_episodes": 2, "log_every": 50, "batch_size": 32,
            "total_steps": 300, "max_episode_steps": 100}


@pytest.mark.parametrize("algo,env_id", sorted(k for k in PRESETS if k[0] in ("ddpg", "td3")))
def test_preset_smoke_run(tmp_path, algo, env_id):
    cfg = with_overrides(preset(algo, env_id), TINY)
    t = Trainer(cfg, run_dir=tmp_path / "run", progress=False)
    try:
        r = t.train()
        assert t.algo == algo and r.env_steps == 300 and len(r.evals) == 1
        assert t.agent.updates == 200 // cfg.train_freq * cfg.gradient_steps + 1  # from step 100 on
        keys = {ln.split(",")[2] for ln in (t.run_dir / "metrics.csv").read_text().splitlines()[1:]}
        assert {"losses/td_loss", "losses/actor_loss", "charts/noise_scale", "perf/sps",
                "eval/mean_return", "charts/episodic_return"} <= keys
        for name in ("config.json", "training.png", "checkpoints/last.pt", "checkpoints/best.pt"):
            assert (t.run_dir / name).is_file(), name
        assert list(t.run_dir.glob("events.out.tfevents.*"))
    finally:
        t.close()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_update_matches_cpu():
    a = agent(twin_critics=True, target_policy_noise=0.0)
    g = DDPG((3,), [-2.0] * 2, [2.0] * 2, a.config, device="cuda", seed=0)
    g.load_state_dict(copy.deepcopy(a.state_dict()))
    b = random_batch(64)
    cuda_b = B(*(x.cuda() if isinstance(x, torch.Tensor) else x for x in b))
    ma, mg = a.update(b), g.update(cuda_b)
    for k in ma:
        torch.testing.assert_close(ma[k], mg[k].cpu(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.greedy(np.zeros((4, 3), np.float32)),
                               g.greedy(np.zeros((4, 3), np.float32)), atol=1e-5)
