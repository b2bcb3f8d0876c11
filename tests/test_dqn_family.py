"""C51, QR-DQN, noisy nets, Munchausen-DQN and Rainbow: each target and loss against the slow
models of tests/reference.py, the agents' updates against the same models, noise statistics and
determinism, configuration errors, and exact resume for every new option."""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from fastrl.agents import DQN, DQNConfig, algo_of, default_config, preset
from fastrl.agents.losses import categorical_projection, munchausen_target, quantile_huber_loss
from fastrl.agents.nets import NoisyLinear, QNetwork
from fastrl.config import ConfigError, with_overrides
from fastrl.replay.batch import Batch
from fastrl.training.trainer import Trainer
from test_trainer import TINY, assert_same_state, check_exact_resume

# ---------------------------------------------------------------- the categorical projection


@settings(max_examples=60, deadline=None)
@given(
    b=st.integers(1, 6),
    n=st.integers(2, 13),
    v_min=st.floats(-50, 10),
    width=st.floats(0.5, 80),
    seed=st.integers(0, 2**31),
    per_sample_discount=st.booleans(),
)
def test_projection_matches_reference(b, n, v_min, width, seed, per_sample_discount):
    rng = np.random.default_rng(seed)
    v_max = v_min + width
    probs = rng.dirichlet(np.ones(n), size=b).astype(np.float32)
    # rewards well inside, beyond either end of the support, and on atoms
    rewards = rng.choice([-2 * width, 2 * width, 0.0, v_min, v_max, rng.uniform(v_min, v_max)], size=b)
    discounts = rng.choice([0.99, 0.5, 0.99**3, 1.0], size=b) if per_sample_discount else np.full(b, 0.9)
    terminated = rng.random(b) < 0.3
    got = categorical_projection(
        torch.as_tensor(probs),
        torch.as_tensor(rewards, dtype=torch.float32),
        torch.as_tensor(discounts, dtype=torch.float32) if per_sample_discount else 0.9,
        torch.as_tensor(terminated),
        v_min,
        v_max,
    )
    want = ref.categorical_projection(probs, rewards, discounts, terminated, v_min, v_max)
    np.testing.assert_allclose(got.numpy(), want, atol=2e-5)
    np.testing.assert_allclose(got.sum(1).numpy(), probs.sum(1), rtol=1e-5)  # no mass lost


def test_projection_matches_reference_on_the_lunarlander_support():
    # 51 atoms from -100 to 100 (dz 4), n-step discounts: shifted atoms exactly on atoms (r 0, gamma 0.5:
    # every even atom lands on one, every odd one halfway), exactly at v_min / v_max, beyond either end,
    # terminated rows (a point mass at r), and rewards between atoms
    n, v_min, v_max = 51, -100.0, 100.0
    rng = np.random.default_rng(3)
    rewards = np.array([0.0, 0.0, 100.0, -100.0, 250.0, -250.0, 8.0, 1.3, 99.9, -37.0, 4.0, 0.0], np.float32)
    discounts = np.array([0.5, 1.0, 0.99, 0.99**3, 0.99, 0.97, 0.5, 0.99**2, 0.99**3, 1.0, 0.25, 0.99], np.float32)
    terminated = np.array([False, False, False, False, False, False, True, True, False, False, False, True])
    probs = rng.dirichlet(np.ones(n), size=len(rewards)).astype(np.float32)
    tensors = (torch.as_tensor(x) for x in (probs, rewards, discounts, terminated))
    got = categorical_projection(*tensors, v_min, v_max).numpy()
    want = ref.categorical_projection(probs, rewards, discounts, terminated, v_min, v_max)
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(got.sum(1), probs.sum(1), rtol=1e-6)
    np.testing.assert_allclose(got[1], probs[1], atol=1e-7)  # gamma 1, r 0: unchanged
    assert not got[2, :25].any() and not got[3, 26:].any()  # r +- v_max shifts everything past the middle
    np.testing.assert_allclose(got[4], np.eye(n)[-1] * probs[4].sum(), atol=1e-6)  # beyond v_max: all at v_max
    np.testing.assert_allclose(got[5], np.eye(n)[0] * probs[5].sum(), atol=1e-6)  # beyond v_min: all at v_min
    np.testing.assert_allclose(got[6], np.eye(n)[27] * probs[6].sum(), atol=1e-6)  # terminated at r 8 = atom 27
    # terminated at r 1.3: between atoms 25 (0) and 26 (4), 0.325 of the way
    np.testing.assert_allclose(got[7, 25:27], [0.675 * probs[7].sum(), 0.325 * probs[7].sum()], atol=1e-6)


def test_projection_edge_cases():
    n, v_min, v_max = 5, -2.0, 2.0  # atoms -2 -1 0 1 2
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.25, 0.15]] * 4)
    rewards = torch.tensor([0.0, 1.0, 10.0, 0.5])
    terminated = torch.tensor([False, False, False, True])
    m = categorical_projection(probs, rewards, 1.0, terminated, v_min, v_max)
    # gamma 1, r 0: every atom lands on itself
    torch.testing.assert_close(m[0], probs[0])
    # r = 1 shifts by one atom; the top atom's mass and the shifted one pile up at v_max
    torch.testing.assert_close(m[1], torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4]))
    # far beyond the support: everything at v_max
    torch.testing.assert_close(m[2], torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0]))
    # terminated: all the mass at r = 0.5, halfway between atoms 0 and 1 (no bootstrap)
    torch.testing.assert_close(m[3], torch.tensor([0.0, 0.0, 0.5, 0.5, 0.0]))
    with pytest.raises(ValueError, match="v_min must be < v_max"):
        categorical_projection(probs, rewards, 1.0, terminated, 1.0, 1.0)
    with pytest.raises(ConfigError, match="v_min must be < v_max"):
        with_overrides(default_config("c51"), {"v_min": 3.0, "v_max": 3.0}).check()
    with pytest.raises(ConfigError, match="v_min must be < v_max"):
        DQN((4,), 2, DQNConfig(distributional="c51", v_min=3.0, v_max=3.0))


# ---------------------------------------------------------------- the quantile Huber loss


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 4), n=st.integers(1, 9), m=st.integers(1, 9), kappa=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
       seed=st.integers(0, 2**31))
def test_quantile_huber_matches_reference(b, n, m, kappa, seed):
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 2, size=(b, n)).astype(np.float32)
    target = rng.normal(0, 2, size=(b, m)).astype(np.float32)
    got = quantile_huber_loss(torch.as_tensor(theta), torch.as_tensor(target), kappa)
    np.testing.assert_allclose(got.numpy(), ref.quantile_huber_loss(theta, target, kappa), rtol=1e-5, atol=1e-6)


def test_quantile_loss_is_minimised_by_the_target_quantiles():
    """Gradient descent on the loss moves theta to the tau_i-quantiles of the target samples."""
    targets = torch.linspace(0.0, 99.0, 100).view(1, -1)
    theta = torch.zeros(1, 4, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=0.5)
    for _ in range(3000):
        opt.zero_grad()
        quantile_huber_loss(theta, targets, 0.0).sum().backward()
        opt.step()
    # tau = 1/8, 3/8, 5/8, 7/8 of 0..99: 12.5, 37.5, 62.5, 87.5 up to a sample's width
    np.testing.assert_allclose(theta.detach().numpy()[0], [12.5, 37.5, 62.5, 87.5], atol=1.0)


# ---------------------------------------------------------------- the Munchausen target


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 6), a=st.integers(2, 6), tau=st.sampled_from([0.03, 0.3, 1.0]),
       clip=st.sampled_from([-1.0, -0.1, 0.0]), seed=st.integers(0, 2**31))
def test_munchausen_target_matches_reference(b, a, tau, clip, seed):
    rng = np.random.default_rng(seed)
    q_obs = rng.normal(0, 3, size=(b, a)).astype(np.float32)
    q_next = rng.normal(0, 3, size=(b, a)).astype(np.float32)
    actions = rng.integers(a, size=b)
    rewards = rng.normal(size=b).astype(np.float32)
    discounts = np.full(b, 0.99)
    terminated = rng.random(b) < 0.3
    got = munchausen_target(
        torch.as_tensor(q_obs), torch.as_tensor(q_next), torch.as_tensor(actions), torch.as_tensor(rewards),
        0.99, torch.as_tensor(terminated), 0.9, tau, clip,
    )
    want = ref.munchausen_targets(q_obs, q_next, actions, rewards, discounts, terminated, 0.9, tau, clip)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- the agents' updates


def make_batch(rng, b=16, obs_dim=4, n_actions=3, discounts=True):
    obs = rng.normal(size=(b, obs_dim)).astype(np.float32)
    nxt = rng.normal(size=(b, obs_dim)).astype(np.float32)
    terminated = rng.random(b) < 0.25
    return Batch(
        torch.as_tensor(obs),
        torch.as_tensor(rng.integers(n_actions, size=b)),
        torch.as_tensor(rng.normal(size=b).astype(np.float32)),
        torch.as_tensor(nxt),
        torch.as_tensor(terminated),
        torch.as_tensor(~terminated & (rng.random(b) < 0.3)),  # truncated: bootstraps like any other
        torch.arange(b),
        {},
        None,
        torch.as_tensor(rng.choice([0.99, 0.99**2, 0.99**3], size=b).astype(np.float32)) if discounts else None,
    )


def agent(**kw):
    torch.manual_seed(0)
    cfg = DQNConfig(hidden_sizes=(16, 16), batch_size=16, **kw)
    return DQN((4,), 3, cfg, seed=0)


@pytest.mark.parametrize("double", [True, False])
@pytest.mark.parametrize("dueling", [True, False])
def test_c51_update_matches_reference(double, dueling):
    ag = agent(distributional="c51", atoms=11, v_min=-5.0, v_max=5.0, double_dqn=double, dueling=dueling)
    batch = make_batch(np.random.default_rng(1))
    with torch.no_grad():
        z = np.linspace(-5.0, 5.0, 11)
        p_next_t = torch.softmax(ag.q_target(batch.next_observations), 2).double().numpy()
        p_next_o = torch.softmax(ag.q(batch.next_observations), 2).double().numpy()
        logits = ag.q(batch.observations).double().numpy()
    chooser = p_next_o if double else p_next_t
    a_star = (chooser @ z).argmax(1)  # the mean of the online (Double) or target distribution
    probs = p_next_t[np.arange(16), a_star]
    m = ref.categorical_projection(probs, batch.rewards.numpy(), batch.discounts.numpy(), batch.terminated.numpy(),
                                   -5.0, 5.0)
    lp = logits[np.arange(16), batch.actions.numpy()]
    lp = lp - lp.max(1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(1, keepdims=True))
    cross_entropy = -(m * lp).sum(1)
    out = ag.update(batch)
    np.testing.assert_allclose(float(out["losses/td_loss"]), cross_entropy.mean(), rtol=1e-5)
    np.testing.assert_allclose(ag.td_abs.numpy(), cross_entropy, rtol=1e-4)  # PER priorities


def test_qr_update_matches_reference():
    ag = agent(distributional="qr", quantiles=8, double_dqn=True)
    batch = make_batch(np.random.default_rng(2))
    with torch.no_grad():
        th_next_t = ag.q_target(batch.next_observations).double().numpy()
        a_star = ag.q(batch.next_observations).mean(2).argmax(1).numpy()
        theta = ag.q(batch.observations).double().numpy()[np.arange(16), batch.actions.numpy()]
    boot = np.where(batch.terminated.numpy(), 0.0, batch.discounts.numpy())
    targets = batch.rewards.numpy()[:, None] + boot[:, None] * th_next_t[np.arange(16), a_star]
    want = ref.quantile_huber_loss(theta, targets, 1.0)
    out = ag.update(batch)
    np.testing.assert_allclose(float(out["losses/td_loss"]), want.mean(), rtol=1e-5)
    np.testing.assert_allclose(ag.td_abs.numpy(), want, rtol=1e-4)


def test_munchausen_update_matches_reference():
    ag = agent(munchausen=True, loss="mse")
    batch = make_batch(np.random.default_rng(3), discounts=False)
    with torch.no_grad():
        q_obs_t = ag.q_target(batch.observations).numpy()
        q_next_t = ag.q_target(batch.next_observations).numpy()
        q = ag.q(batch.observations).numpy()[np.arange(16), batch.actions.numpy()]
    y = ref.munchausen_targets(q_obs_t, q_next_t, batch.actions.numpy(), batch.rewards.numpy(), np.full(16, 0.99),
                               batch.terminated.numpy(), 0.9, 0.03, -1.0)
    out = ag.update(batch)
    np.testing.assert_allclose(float(out["losses/td_loss"]), np.mean((q - y) ** 2), rtol=1e-4)


# ---------------------------------------------------------------- noisy nets


def test_noisy_layer_noise_statistics_and_mean_weights():
    layer = NoisyLinear(400, 300, sigma0=0.5)
    g = torch.Generator().manual_seed(0)
    layer.reset_noise(g)
    eps = torch.outer(layer.eps_out, layer.eps_in)
    # f(e) = sign(e) sqrt|e|: mean 0, E f(e)^2 = E|e| = sqrt(2 / pi); the product's variance 2 / pi
    assert abs(float(layer.eps_in.mean())) < 0.1
    assert abs(float(layer.eps_in.square().mean()) - math.sqrt(2 / math.pi)) < 0.1
    assert abs(float(eps.var()) - 2 / math.pi) < 0.05
    assert torch.allclose(layer.weight_sigma, torch.full((300, 400), 0.5 / 20))
    x = torch.randn(5, 400)
    noisy = layer(x)
    layer.noise_on = False
    torch.testing.assert_close(layer(x), x @ layer.weight_mu.T + layer.bias_mu)
    assert not torch.allclose(noisy, layer(x))
    # determinism: the same generator seed gives the same noise, another seed other noise
    before = layer.eps_in.clone()
    layer.reset_noise(torch.Generator().manual_seed(0))
    assert torch.equal(layer.eps_in, before)
    layer.reset_noise(torch.Generator().manual_seed(1))
    assert not torch.equal(layer.eps_in, before)


def test_noisy_agent_explores_by_noise_and_evaluates_with_mean_weights():
    a, b = agent(noisy=True), agent(noisy=True)
    assert a.epsilon == 0.0  # epsilon off unless set
    assert agent(noisy=True, epsilon_start=0.5, epsilon_schedule="constant").epsilon == 0.5
    for x, y in zip(a.q.state_dict().values(), b.q.state_dict().values()):
        assert torch.equal(x, y)  # same seed, same weights and noise
    c = DQN((4,), 3, DQNConfig(hidden_sizes=(16, 16), noisy=True), seed=1)
    assert not torch.equal(a.q.head[0].eps_in, c.q.head[0].eps_in)
    obs = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
    with torch.no_grad():
        mean_q = QNetwork.forward(a.q, torch.as_tensor(obs))  # noise on
        a.q.set_noise(False)
        mean_actions = a.q(torch.as_tensor(obs)).argmax(1).numpy()
        a.q.set_noise(True)
    np.testing.assert_array_equal(a.greedy(obs), mean_actions)
    np.testing.assert_array_equal(a.act(obs), mean_q.argmax(1).numpy())  # exploring: the noisy net
    assert a.q.noisy_layers[0].noise_on  # greedy() put the noise back
    before = a.q.head[0].eps_in.clone()
    a.update(make_batch(np.random.default_rng(0)))
    assert not torch.equal(a.q.head[0].eps_in, before)  # new noise for every update


def test_noisy_state_restores_the_noise_generator():
    a = agent(noisy=True, distributional="c51")
    a.update(make_batch(np.random.default_rng(0)))
    state = copy.deepcopy(a.state_dict())  # torch's optimizer would share a live state's tensors
    b = agent(noisy=True, distributional="c51")
    b.load_state_dict(state)
    a.update(make_batch(np.random.default_rng(1)))
    b.update(make_batch(np.random.default_rng(1)))
    assert_same_state(a.state_dict(), b.state_dict())
    with pytest.raises(ValueError, match="noise_rng"):
        agent(noisy=True).load_state_dict(agent().state_dict())


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "over,match",
    [
        ({"distributional": "c51", "sail": True}, "sail adds a scalar bonus"),
        ({"distributional": "qr", "sail": True}, "sail adds a scalar bonus"),
        ({"munchausen": True, "n_step": 3}, "munchausen needs 1-step"),
        ({"munchausen": True, "distributional": "c51"}, "munchausen needs a scalar head"),
        ({"munchausen": True, "sail": True}, "munchausen needs sail off"),
        ({"m_clip": 0.5}, "m_clip must be <= 0"),
        ({"m_tau": 0.0}, "m_tau must be > 0"),
        ({"atoms": 1}, "atoms must be >= 2"),
        ({"quantiles": 0}, "quantiles must be >= 2"),
        ({"distributional": "c51", "v_min": 5.0, "v_max": -5.0}, "v_min must be < v_max"),
        ({"distributional": "c51", "v_max": float("nan")}, "v_min must be < v_max"),
        ({"noisy_sigma0": 0.0}, "noisy_sigma0 must be > 0"),
        ({"distributional": "iqn"}, "bad value for distributional"),
    ],
)
def test_bad_family_configs_are_refused(over, match):
    with pytest.raises(ConfigError, match=match):
        with_overrides(DQNConfig(), over).check()


def test_algorithm_names():
    cfg = default_config("rainbow")
    assert (cfg.distributional, cfg.noisy, cfg.dueling, cfg.double_dqn, cfg.n_step, cfg.prioritized) == (
        "c51", True, True, True, 3, True)
    assert algo_of(cfg) == "rainbow"
    assert algo_of(default_config("c51")) == "c51"
    assert algo_of(default_config("qr-dqn")) == "qr-dqn"
    assert preset("rainbow", "CartPole-v1").make_schedule().value == 0.0  # the noise explores
    assert preset("rainbow", "LunarLander-v3").make_schedule().value == 1.0  # its preset sets epsilon too
    out = subprocess.run([sys.executable, "-P", "-m", "fastrl", "train", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for name in ("rainbow", "c51", "qr-dqn"):
        assert name in out


# ---------------------------------------------------------------- exact resume


@pytest.mark.parametrize(
    "algo,extra",
    [
        # constant beta: the half run's annealing over its own total_steps would differ
        ("rainbow", {"per_beta_start": 1.0, "num_envs": 2}),
        ("c51", {"atoms": 21, "v_min": 0.0, "v_max": 100.0, "n_step": 2}),
        ("qr-dqn", {"quantiles": 16, "dueling": True}),
        ("dqn", {"munchausen": True, "n_step": 1}),
        ("dqn", {"noisy": True}),
    ],
)
def test_resume_is_exact_for_every_family_option(tmp_path, algo, extra):
    cfg = with_overrides(
        preset(algo, "CartPole-v1"),
        {**TINY, "hidden_sizes": (32, 32), "train_freq": 4, "gradient_steps": 2, **extra, "total_steps": 400,
         "eval_every": 200, "max_episode_steps": 60},
    )
    check_exact_resume(tmp_path, cfg, algo)


def test_rainbow_collects_concurrently_and_resumes(tmp_path):
    """concurrent=true: the collector process acts with the noisy C51 agent (the noise comes with
    the published weights); the run checkpoints and resumes concurrently."""
    cfg = with_overrides(
        preset("rainbow", "CartPole-v1"),
        {**TINY, "hidden_sizes": (32, 32), "train_freq": 4, "gradient_steps": 2, "concurrent": True,
         "total_steps": 400, "checkpoint_every": 200, "eval_every": 200, "max_episode_steps": 60},
    )
    t = Trainer(cfg, run_dir=tmp_path / "run", progress=False, tensorboard=False)
    r = t.train()
    t.close()
    assert r.env_steps == 400 and len(r.evals) == 2 and t.agent.updates > 0
    t2 = Trainer(with_overrides(cfg, {"total_steps": 600}), resume=tmp_path / "run", progress=False,
                 tensorboard=False)
    r2 = t2.train()
    t2.close()
    assert r2.env_steps == 600 and t2.agent.updates > t.agent.updates


def test_distributional_run_on_prefetched_batches(tmp_path):
    """Background prefetch feeds a QR-DQN (PER n-step) run like any other; it resumes from its checkpoint
    (prefetch samples ahead, so a resumed prefetch run is not bit-identical: see test_prefetch_run_resumes)."""
    cfg = with_overrides(
        preset("qr-dqn", "CartPole-v1"),
        {**TINY, "hidden_sizes": (32, 32), "quantiles": 16, "prioritized": True, "prefetch": True, "train_freq": 4,
         "gradient_steps": 2, "total_steps": 300, "checkpoint_every": 150},
    )
    t = Trainer(cfg, run_dir=tmp_path / "run", progress=False, tensorboard=False)
    r = t.train()
    t.close()
    assert r.env_steps == 300 and t.agent.updates > 0 and np.isfinite(r.evals[-1]["mean"])
    t2 = Trainer(with_overrides(cfg, {"total_steps": 450}), resume=tmp_path / "run", progress=False,
                 tensorboard=False)
    r2 = t2.train()
    t2.close()
    assert r2.env_steps == 450 and t2.agent.updates > t.agent.updates


@pytest.mark.parametrize("dueling,noisy,atoms", [(True, False, 1), (True, True, 5), (False, True, 1), (False, True, 5),
                                                 (True, False, 5)])
def test_layer_by_layer_forward_matches_the_containers(dueling, noisy, atoms):
    torch.manual_seed(0)
    net = QNetwork((2, 3), 4, (16, 16), dueling=dueling, atoms=atoms, noisy=noisy)
    net.reset_noise(torch.Generator().manual_seed(0))
    x = torch.randn(7, 2, 3)
    z = net.torso(x)
    if dueling:
        a, v = net.advantage(z).view(7, 4, atoms), net.value(z).view(7, 1, atoms)
        want = v + a - a.mean(dim=1, keepdim=True)
    else:
        want = net.head(z).view(7, 4, atoms)
    got = copy.deepcopy(net)(x)  # a copy's layer lists are its own layers
    assert torch.equal(got.view(7, 4, atoms), want.view(7, 4, atoms))
