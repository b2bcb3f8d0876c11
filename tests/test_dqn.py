"""DQN loss math on tiny hand-built batches, target updates, acting, networks and schedules."""

import copy
from typing import NamedTuple

import numpy as np
import pytest
import torch

from fastrl.replay.batch import Batch

from fastrl.agents.dqn import DQN, DQNConfig
from fastrl.agents.nets import NatureCNN, QNetwork
from fastrl.schedules import Schedule


class Table(torch.nn.Module):
    """Q(s, .) = table[s]: observations are state ids of shape [B, 1]."""

    def __init__(self, values):
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(values, dtype=torch.float32))

    def forward(self, obs):
        return self.table[obs[:, 0].long()]


def batch(obs, actions, rewards, next_obs, terminated, truncated, discounts=None, weights=None):
    f = lambda x, dt=torch.float32: torch.tensor(x, dtype=dt)  # noqa: E731
    return Batch(
        f(obs).view(-1, 1),
        f(actions, torch.int64),
        f(rewards),
        f(next_obs).view(-1, 1),
        f(terminated, torch.bool),
        f(truncated, torch.bool),
        torch.arange(len(rewards)),
        {},
        weights=None if weights is None else f(weights),
        discounts=None if discounts is None else f(discounts),
    )


def agent_with(online, target, **cfg):
    a = DQN((1,), len(online[0]), DQNConfig(**cfg), network=Table(online), seed=0)
    with torch.no_grad():
        a.q_target.table.copy_(torch.tensor(target))
    return a


# states: 0, 1; actions: 0, 1
ONLINE = [[1.0, 2.0], [5.0, 3.0]]  # online argmax at s'=1 is action 0
TARGET = [[0.5, 0.0], [4.0, 7.0]]  # target argmax at s'=1 is action 1


def test_terminated_masks_bootstrap_truncated_does_not():
    a = agent_with(ONLINE, TARGET, gamma=0.9, double_dqn=False)
    b = batch(
        [0, 0, 0], [0, 0, 0], [1.0, 1.0, 1.0], [1, 1, 1], [True, False, False], [False, True, False]
    )
    y = a.td_target(b)
    torch.testing.assert_close(y, torch.tensor([1.0, 1.0 + 0.9 * 7.0, 1.0 + 0.9 * 7.0]))


def test_double_dqn_takes_argmax_from_online_network():
    b = batch([0], [1], [0.5], [1], [False], [False])
    double = agent_with(ONLINE, TARGET, gamma=0.5, double_dqn=True)
    single = agent_with(ONLINE, TARGET, gamma=0.5, double_dqn=False)
    torch.testing.assert_close(
        double.td_target(b), torch.tensor([0.5 + 0.5 * 4.0])
    )  # Q_target(1, a=0)
    torch.testing.assert_close(
        single.td_target(b), torch.tensor([0.5 + 0.5 * 7.0])
    )  # max_a Q_target(1, a)
    # the fused online pass in update() gives the same target as td_target alone
    q_next_online = double.q(b.next_observations)
    torch.testing.assert_close(double.td_target(b, q_next_online), double.td_target(b))


def test_n_step_discounts_replace_gamma():
    a = agent_with(ONLINE, TARGET, gamma=0.9, double_dqn=False)
    b = batch(
        [0, 0],
        [0, 0],
        [2.0, 2.0],
        [1, 1],
        [False, False],
        [False, False],
        discounts=[0.9**3, 0.9**2],
    )
    torch.testing.assert_close(a.td_target(b), torch.tensor([2.0 + 0.729 * 7.0, 2.0 + 0.81 * 7.0]))


@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_loss_value_and_importance_weights(loss):
    a = agent_with(ONLINE, TARGET, gamma=0.5, double_dqn=False, loss=loss, max_grad_norm=0.0)
    b = batch([0, 1], [0, 1], [0.0, 1.0], [0, 1], [True, True], [False, False], weights=[0.25, 0.0])
    q = np.array([1.0, 3.0])
    y = np.array([0.0, 1.0])
    d = q - y  # [1, 2]
    per = d**2 if loss == "mse" else np.where(np.abs(d) < 1, 0.5 * d**2, np.abs(d) - 0.5)
    before = a.q.table.detach().clone()
    m = a.update(b)
    assert float(m["losses/td_loss"]) == pytest.approx(np.mean(per * [0.25, 0.0]))
    after = a.q.table.detach()
    assert after[1, 1] == before[1, 1]  # weight 0: no gradient, no Adam step
    assert after[0, 0] < before[0, 0]  # pulled towards its target 0
    torch.testing.assert_close(a.td_abs, torch.tensor(np.abs(d), dtype=torch.float32))


def test_unweighted_loss_is_mean():
    a = agent_with(ONLINE, TARGET, gamma=0.5, double_dqn=False, loss="mse")
    b = batch([0, 1], [0, 1], [0.0, 1.0], [0, 1], [True, True], [False, False])
    assert float(a.update(b)["losses/td_loss"]) == pytest.approx((1.0 + 4.0) / 2)


def test_gradient_clipping_by_norm_and_value():
    b = batch([0, 1], [0, 1], [100.0, -100.0], [0, 1], [True, True], [False, False])
    a = agent_with(ONLINE, TARGET, loss="mse", max_grad_norm=0.5)
    a.update(b)
    assert float(a.q.table.grad.norm()) == pytest.approx(0.5, rel=1e-5)
    a = agent_with(ONLINE, TARGET, loss="mse", max_grad_norm=0.0, clip_grad_value=0.1)
    a.update(b)
    assert float(a.q.table.grad.abs().max()) == pytest.approx(0.1)


def test_target_update_hard_every_n_and_polyak():
    a = agent_with(ONLINE, TARGET, target_update_interval=2, tau=1.0)
    b = batch([0], [0], [0.0], [0], [True], [False])
    a.update(b)
    torch.testing.assert_close(a.q_target.table.detach(), torch.tensor(TARGET))
    a.update(b)
    torch.testing.assert_close(a.q_target.table, a.q.table)
    p = agent_with(ONLINE, TARGET, target_update_interval=1, tau=0.25)
    p.update_target()
    expected = np.array(TARGET) + 0.25 * (np.array(ONLINE) - np.array(TARGET))
    torch.testing.assert_close(
        p.q_target.table.detach(), torch.tensor(expected, dtype=torch.float32)
    )


def test_act_greedy_and_epsilon():
    a = agent_with(ONLINE, TARGET, epsilon_schedule="constant", epsilon_start=0.0)
    obs = np.array([[0.0], [1.0]])
    np.testing.assert_array_equal(a.act(obs, explore=True), [1, 0])
    a = agent_with(ONLINE, TARGET, epsilon_schedule="constant", epsilon_start=1.0)
    acts = np.concatenate([a.act(np.zeros((100, 1)), explore=True) for _ in range(20)])
    assert 0.4 < acts.mean() < 0.6  # uniform over 2 actions
    np.testing.assert_array_equal(a.act(obs, explore=False), [1, 0])


def test_state_dict_round_trip():
    a = DQN((4,), 2, DQNConfig(hidden_sizes=(8,)), seed=1)
    b = DQN((4,), 2, DQNConfig(hidden_sizes=(8,)), seed=2)
    x = torch.randn(16, 4)
    bb = Batch(
        x,
        torch.randint(0, 2, (16,)),
        torch.randn(16),
        x.flip(0),
        torch.zeros(16, dtype=torch.bool),
        torch.zeros(16, dtype=torch.bool),
        torch.arange(16),
        {},
    )
    a.update(bb)
    b.load_state_dict(copy.deepcopy(a.state_dict()))  # state_dict() holds live tensors
    a.update(bb), b.update(bb)
    for p, q in zip(a.q.parameters(), b.q.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    np.testing.assert_array_equal(a.act(x.numpy()), b.act(x.numpy()))


# ---------------------------------------------------------------------------- networks
def test_mlp_and_dueling_shapes_and_identity():
    net = QNetwork((3, 2), 5, hidden_sizes=(16, 8), dueling=True)
    x = torch.randn(7, 3, 2)
    q = net(x)
    assert q.shape == (7, 5)
    z = net.torso(x)
    a, v = net.advantage(z), net.value(z)
    torch.testing.assert_close(q - q.mean(1, keepdim=True), a - a.mean(1, keepdim=True))
    torch.testing.assert_close(q.mean(1, keepdim=True), v)
    assert QNetwork((4,), 2, (32, 32))(torch.randn(3, 4)).shape == (3, 2)
    assert QNetwork((4,), 2, (32,))(torch.randn(3, 4, dtype=torch.float64)).shape == (3, 2)


def test_nature_cnn_scales_uint8_inside():
    net = QNetwork((4, 84, 84), 6, (512,), pixels=True)
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    q = net(frames)
    assert q.shape == (2, 6)
    torch.testing.assert_close(q, net(frames.float() / 255.0))
    with pytest.raises(ValueError, match="obs_shape"):
        NatureCNN((84, 84))


# ---------------------------------------------------------------------------- schedules
def test_schedules_values():
    lin = Schedule("linear", start=1.0, end=0.1, duration=10)
    assert lin.value == 1.0
    lin.next_step(5)
    assert lin.value == pytest.approx(0.55)
    lin.next_step(100)
    assert lin.value == pytest.approx(0.1)
    ex = Schedule("exponential", start=1.0, end=0.05, decay=0.5, unit="episode")
    ex.next_step(10)  # per-episode schedule ignores steps
    assert ex.value == 1.0
    ex.next_episode()
    ex.next_episode()
    assert ex.value == pytest.approx(0.25)
    ex.next_episode(10)
    assert ex.value == pytest.approx(0.05)
    const = Schedule("constant", start=0.3)
    const.next_step(1000)
    assert const.value == 0.3
    restored = Schedule("exponential", start=1.0, end=0.05, decay=0.5, unit="episode")
    restored.load_state_dict(ex.state_dict())
    assert restored.value == ex.value


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kind="cosine"),
        dict(unit="epoch"),
        dict(start=1.5),
        dict(kind="linear", duration=0),
        dict(kind="exponential", decay=0.0),
    ],
)
def test_schedule_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        Schedule(**kwargs)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_update_on_cuda_matches_cpu():
    cpu = DQN((4,), 2, DQNConfig(hidden_sizes=(16,)), seed=0)
    gpu = DQN((4,), 2, DQNConfig(hidden_sizes=(16,)), device="cuda", seed=0)
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(8, 4)
    b = Batch(
        x,
        torch.randint(0, 2, (8,)),
        torch.randn(8),
        x,
        torch.zeros(8, dtype=torch.bool),
        torch.zeros(8, dtype=torch.bool),
        torch.arange(8),
        {},
    )
    gb = Batch(*[t.cuda() if isinstance(t, torch.Tensor) else t for t in b])
    torch.testing.assert_close(
        float(cpu.update(b)["losses/td_loss"]), float(gpu.update(gb)["losses/td_loss"])
    )


# ---------------------------------------------------------------------------- vs the numpy model
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from reference import dqn_targets  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(
    n_states=st.integers(1, 5),
    n_actions=st.integers(1, 4),
    size=st.integers(1, 8),
    double=st.booleans(),
    n_step=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_td_target_matches_reference(n_states, n_actions, size, double, n_step, seed):
    rng = np.random.default_rng(seed)
    online = rng.normal(size=(n_states, n_actions)).round(2)
    target = rng.normal(size=(n_states, n_actions)).round(2)
    a = agent_with(online.tolist(), target.tolist(), gamma=0.9, double_dqn=double)
    s2 = rng.integers(n_states, size=size)
    r = rng.normal(size=size).round(2)
    term = rng.random(size) < 0.3
    disc = 0.9 ** rng.integers(1, 4, size=size) if n_step else np.full(size, 0.9)
    b = batch([0] * size, [0] * size, r, s2, term, ~term, discounts=disc if n_step else None)
    y = dqn_targets(r, term, target[s2], online[s2], disc, double)
    np.testing.assert_allclose(a.td_target(b).numpy(), y, rtol=1e-5, atol=1e-5)
