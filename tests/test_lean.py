"""The lean update path (issue 8): LeanAdam, nets.clip_grad_norm_ and the agents' updates give the
same parameters as the plain torch.optim path, bit for bit; checkpoints resume identically; the
CUDA-graph update (DQNConfig.cuda_graph) matches the eager one on a GPU."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F

from fastrl.agents.ddpg import DDPG, DDPGConfig
from fastrl.agents.dqn import DQN, DQNConfig
from fastrl.replay.buffer import Batch
from fastrl.config import ConfigError
from fastrl.agents.nets import LeanAdam, clip_grad_norm_, mlp

OBS, N_ACT, B = 6, 3, 32

# Tolerance 0 throughout on CPU: the lean path runs the same kernels on the same inputs in the
# same order as torch's wrappers (only the Python around them is gone), so any difference is a bug.


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matmuls: one thread (two spin-wait on a loaded machine, 10x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def random_batch(g: torch.Generator, *, discrete=True, n_step=False, weights=False, device="cpu"):
    t = lambda x: x.to(device)  # noqa: E731
    acts = (
        torch.randint(0, N_ACT, (B,), generator=g)
        if discrete
        else torch.rand(B, 2, generator=g) * 4 - 2
    )
    return Batch(
        t(torch.randn(B, OBS, generator=g)),
        t(acts),
        t(torch.randn(B, generator=g)),
        t(torch.randn(B, OBS, generator=g)),
        t(torch.rand(B, generator=g) < 0.2),
        t(torch.zeros(B, dtype=torch.bool)),
        t(torch.arange(B)),
        {},
        weights=t(torch.rand(B, generator=g) + 0.1) if weights else None,
        discounts=t(0.99 ** torch.randint(1, 4, (B,), generator=g).float()) if n_step else None,
    )


def same_tensors(xs, ys) -> bool:
    xs, ys = list(xs), list(ys)
    return len(xs) == len(ys) and all(torch.equal(x, y) for x, y in zip(xs, ys))


def roundtrip(state):
    f = io.BytesIO()
    torch.save(state, f)
    f.seek(0)
    return torch.load(f, weights_only=False)


# ---------------------------------------------------------------------------- LeanAdam
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_lean_adam_is_bit_identical_to_fused_torch_adam(weight_decay):
    torch.manual_seed(0)
    a = mlp(OBS, (32, 32), N_ACT)
    b = copy.deepcopy(a)
    kw = dict(lr=3e-3, eps=1e-7, betas=(0.8, 0.95), weight_decay=weight_decay, fused=True)
    oa, ob = torch.optim.Adam(a.parameters(), **kw), LeanAdam(b.parameters(), **kw)
    g = torch.Generator().manual_seed(1)
    for i in range(300):
        if i == 150:  # a changed learning rate (a schedule) is read at every step
            for opt in (oa, ob):
                opt.param_groups[0]["lr"] = 1e-3
        x = torch.randn(B, OBS, generator=g)
        oa.zero_grad(set_to_none=True)
        a(x).square().mean().backward()
        torch.nn.utils.clip_grad_norm_(a.parameters(), 0.5, foreach=True)
        oa.step()
        ob.clear_grads()
        b(x).square().mean().backward()
        clip_grad_norm_([p.grad for p in b.parameters()], 0.5)
        ob.lean_step()
        assert same_tensors(a.parameters(), b.parameters()), f"step {i}"
    sa, sb = oa.state_dict(), ob.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for k in sa["state"]:
        assert sa["state"][k].keys() == sb["state"][k].keys()
        assert all(torch.equal(sa["state"][k][n], sb["state"][k][n]) for n in sa["state"][k])


def test_lean_adam_state_dict_round_trip_resumes_identically():
    torch.manual_seed(0)
    a = mlp(OBS, (16,), N_ACT)
    oa = LeanAdam(a.parameters(), lr=1e-3, fused=True)
    g = torch.Generator().manual_seed(2)
    xs = [torch.randn(B, OBS, generator=g) for _ in range(200)]

    def step(net, opt, x):
        opt.clear_grads()
        net(x).square().mean().backward()
        opt.lean_step()

    for x in xs[:100]:
        step(a, oa, x)
    b = mlp(OBS, (16,), N_ACT)  # other initial weights: everything comes from the checkpoint
    b.load_state_dict(roundtrip(a.state_dict()))
    ob = LeanAdam(b.parameters(), lr=1e-3, fused=True)
    ob.load_state_dict(roundtrip(oa.state_dict()))
    plain = copy.deepcopy(b)  # and a plain torch Adam resumed from the same checkpoint
    op = torch.optim.Adam(plain.parameters(), lr=1e-3, fused=True)
    op.load_state_dict(roundtrip(oa.state_dict()))
    for x in xs[100:]:
        step(a, oa, x)
        step(b, ob, x)
        op.zero_grad()
        plain(x).square().mean().backward()
        op.step()
    assert same_tensors(a.parameters(), b.parameters())
    assert same_tensors(a.parameters(), plain.parameters())


def test_lean_adam_falls_back_to_step_where_the_fast_path_does_not_apply():
    torch.manual_seed(0)
    a = mlp(OBS, (8,), N_ACT)
    b = copy.deepcopy(a)
    oa = torch.optim.Adam(a.parameters(), lr=1e-2, amsgrad=True, foreach=True)
    ob = LeanAdam(b.parameters(), lr=1e-2, amsgrad=True, foreach=True)
    for _ in range(20):
        x = torch.randn(B, OBS)
        for net, opt in ((a, oa), (b, ob)):
            opt.zero_grad()
            net(x)[:, :1].sum().backward()
            opt.step() if opt is oa else opt.lean_step()
    assert same_tensors(a.parameters(), b.parameters())
    # a parameter without a gradient (the last layer's bias unused): step() skips it, so does lean_step
    c = mlp(OBS, (8,), N_ACT)
    oc = LeanAdam(c.parameters(), lr=1e-2, fused=True)
    for _ in range(3):
        oc.clear_grads()
        c(torch.randn(B, OBS)).sum().backward()
        oc.lean_step()
    bias = list(c.parameters())[-1].detach().clone()
    oc.clear_grads()
    (c(torch.randn(B, OBS)) - list(c.parameters())[-1]).sum().backward()
    list(c.parameters())[-1].grad = None
    oc.lean_step()
    assert torch.equal(list(c.parameters())[-1], bias)


# ---------------------------------------------------------------------------- DQN vs the plain path
def plain_dqn_update(agent: DQN, opt: torch.optim.Optimizer, batch: Batch) -> dict:
    """The update as it was before the lean path: torch.optim.Adam.step, zero_grad,
    torch.nn.utils.clip_grad_norm_ / clip_grad_value_, float masks."""
    cfg = agent.config
    b = batch.observations.shape[0]
    if cfg.double_dqn:
        q_all = agent.q(torch.cat([batch.observations, batch.next_observations]))
        q_obs, q_next_online = q_all[:b], q_all[b:].detach()
    else:
        q_obs, q_next_online = agent.q(batch.observations), None
    with torch.no_grad():
        q_next_target = agent.q_target(batch.next_observations)
        src = q_next_online if cfg.double_dqn else q_next_target
        q_next = q_next_target.gather(1, src.argmax(dim=1, keepdim=True)).squeeze(1)
        discount = batch.discounts if batch.discounts is not None else cfg.gamma
        y = batch.rewards.float() + discount * (~batch.terminated).float() * q_next
    q = q_obs.gather(1, batch.actions.long().view(-1, 1)).squeeze(1)
    td = q - y
    per_sample = F.smooth_l1_loss(q, y, reduction="none") if cfg.loss == "huber" else td.square()
    w = batch.weights
    loss = (per_sample * w).mean() if w is not None else per_sample.mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    params = list(agent.q.parameters())
    if cfg.clip_grad_value > 0:
        torch.nn.utils.clip_grad_value_(params, cfg.clip_grad_value)
    if cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm, foreach=True)
    opt.step()
    agent.updates += 1
    if agent.updates % cfg.target_update_interval == 0:
        with torch.no_grad():
            for t, p in zip(agent.q_target.parameters(), agent.q.parameters()):
                t.lerp_(p, cfg.tau) if cfg.tau < 1 else t.copy_(p)
    return {"losses/td_loss": loss.detach(), "losses/q_values": q.detach().mean(), "td_abs": td.abs()}


DQN_CASES = [
    # the CartPole preset's update: n-step discounts, huber, hard target copies
    dict(hidden_sizes=(64, 64), double_dqn=False, loss="huber", target_update_interval=16, tau=1.0,
         learning_rate=2.3e-3, max_grad_norm=10.0),
    # the LunarLander preset's: Double DQN, mse, Polyak every step
    dict(hidden_sizes=(128, 128), double_dqn=True, loss="mse", target_update_interval=1, tau=0.005,
         learning_rate=5e-4, max_grad_norm=10.0),
    # PER weights, dueling, element clipping, a tiny norm bound (clipping every step)
    dict(hidden_sizes=(32, 32), dueling=True, clip_grad_value=0.05, max_grad_norm=0.1,
         target_update_interval=5, tau=0.5),
]


@pytest.mark.parametrize("case", range(len(DQN_CASES)))
def test_dqn_lean_update_matches_the_plain_torch_path(case):
    cfg = DQNConfig(**DQN_CASES[case])
    torch.manual_seed(0)
    lean = DQN((OBS,), N_ACT, cfg, seed=0)
    plain = copy.deepcopy(lean)
    opt = torch.optim.Adam(plain.q.parameters(), lr=cfg.learning_rate, eps=cfg.adam_eps, fused=True)
    assert isinstance(lean.optimizer, LeanAdam)
    g = torch.Generator().manual_seed(case)
    for i in range(300):
        batch = random_batch(g, n_step=case == 0, weights=case == 2)
        m = lean.update(batch)
        r = plain_dqn_update(plain, opt, batch)
        assert torch.equal(m["losses/td_loss"], r["losses/td_loss"]), f"update {i}"
        assert torch.equal(m["losses/q_values"], r["losses/q_values"])
        assert torch.equal(lean.td_abs, r["td_abs"])
    assert same_tensors(lean.q.parameters(), plain.q.parameters())
    assert same_tensors(lean.q_target.parameters(), plain.q_target.parameters())


@pytest.mark.parametrize("case", range(len(DQN_CASES)))
def test_dqn_checkpoint_resumes_identically(case):
    cfg = DQNConfig(**DQN_CASES[case])
    torch.manual_seed(0)
    a = DQN((OBS,), N_ACT, cfg, seed=0)
    g = torch.Generator().manual_seed(10 + case)
    batches = [random_batch(g, n_step=case == 0, weights=case == 2) for _ in range(200)]
    for b in batches[:100]:
        a.update(b)
    torch.manual_seed(1)
    c = DQN((OBS,), N_ACT, cfg, seed=1)  # other weights and generator: all from the checkpoint
    c.load_state_dict(roundtrip(a.state_dict()))
    for b in batches[100:]:
        ma, mc = a.update(b), c.update(b)
        assert all(torch.equal(ma[k], mc[k]) for k in ma)
    assert same_tensors(a.q.parameters(), c.q.parameters())
    assert same_tensors(a.q_target.parameters(), c.q_target.parameters())
    assert a.updates == c.updates == 200
    assert (a.act(batches[0].observations.numpy()) == c.act(batches[0].observations.numpy())).all()


def test_dqn_cuda_graph_needs_cuda():
    with pytest.raises(ConfigError, match="cuda_graph"):
        DQN((OBS,), N_ACT, DQNConfig(cuda_graph=True), device="cpu")


# ---------------------------------------------------------------------------- DDPG / TD3
def plain_ddpg_update(agent: DDPG, opt_a, opt_c, batch: Batch) -> dict:
    """DDPG / TD3's update before the lean path (requires_grad toggling, torch's clipping)."""
    cfg = agent.config
    obs = batch.observations
    with torch.no_grad():
        next_a = agent.actor_target(batch.next_observations)
        if cfg.target_policy_noise > 0:
            eps = torch.randn_like(next_a) * cfg.target_policy_noise
            next_a = (next_a + eps.clamp(-cfg.target_noise_clip, cfg.target_noise_clip)).clamp(-1, 1)
        q_next = agent.critic_target(batch.next_observations, next_a).min(dim=0).values
        y = batch.rewards.float() + cfg.gamma * (~batch.terminated).float() * q_next
    qs = agent.critic(obs, agent.from_env(batch.actions))
    critic_loss = (qs - y).square().sum(dim=0).mean()
    opt_c.zero_grad(set_to_none=True)
    critic_loss.backward()
    if cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(agent.critic.parameters(), cfg.max_grad_norm, foreach=True)
    opt_c.step()
    out = {"losses/td_loss": critic_loss.detach(), "td_abs": (qs[0] - y).detach().abs()}
    agent.updates += 1
    if agent.updates % cfg.policy_delay == 0:
        agent.critic.requires_grad_(False)
        actor_loss = -agent.critic.q1(obs, agent.actor(obs)).mean()
        opt_a.zero_grad(set_to_none=True)
        actor_loss.backward()
        agent.critic.requires_grad_(True)
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(agent.actor.parameters(), cfg.max_grad_norm, foreach=True)
        opt_a.step()
        with torch.no_grad():
            for t, p in zip(agent._target, agent._online):
                t.lerp_(p, cfg.tau)
        out["losses/actor_loss"] = actor_loss.detach()
    return out


@pytest.mark.parametrize("td3", [False, True])
def test_ddpg_lean_update_matches_the_plain_torch_path(td3):
    opts = dict(twin_critics=True, policy_delay=2, target_policy_noise=0.2, max_grad_norm=1.0) if td3 else {}
    cfg = DDPGConfig(actor_hidden_sizes=(32, 32), critic_hidden_sizes=(32, 32), **opts)
    torch.manual_seed(0)
    lean = DDPG((OBS,), [-2.0, -2.0], [2.0, 2.0], cfg, seed=0)
    plain = copy.deepcopy(lean)
    opt_a = torch.optim.Adam(plain.actor.parameters(), lr=cfg.actor_learning_rate, fused=True)
    opt_c = torch.optim.Adam(plain.critic.parameters(), lr=cfg.critic_learning_rate, fused=True)
    g = torch.Generator().manual_seed(3)
    batches = [random_batch(g, discrete=False) for _ in range(200)]
    torch.manual_seed(5)  # the target policy noise: the same draws for both
    lean_metrics = [lean.update(b) | {"td_abs": lean.td_abs} for b in batches]
    torch.manual_seed(5)
    plain_metrics = [plain_ddpg_update(plain, opt_a, opt_c, b) for b in batches]
    for ml, mp in zip(lean_metrics, plain_metrics):
        assert ml.keys() - {"losses/q_values"} == mp.keys()
        assert all(torch.equal(ml[k], mp[k]) for k in mp)
    for x, y in ((lean.actor, plain.actor), (lean.critic, plain.critic),
                 (lean.actor_target, plain.actor_target), (lean.critic_target, plain.critic_target)):
        assert same_tensors(x.parameters(), y.parameters())
    assert all(p.requires_grad for p in lean.critic.parameters())


def test_ddpg_checkpoint_resumes_identically():
    cfg = DDPGConfig(actor_hidden_sizes=(16,), critic_hidden_sizes=(16,), twin_critics=True,
                     policy_delay=2, target_policy_noise=0.2)
    torch.manual_seed(0)
    a = DDPG((OBS,), [-1.0, -1.0], [1.0, 1.0], cfg, seed=0)
    g = torch.Generator().manual_seed(4)
    batches = [random_batch(g, discrete=False) for _ in range(100)]
    for b in batches[:51]:
        a.update(b)
    c = DDPG((OBS,), [-1.0, -1.0], [1.0, 1.0], cfg, seed=1)
    c.load_state_dict(roundtrip(a.state_dict()))
    rng = torch.get_rng_state()
    for b in batches[51:]:
        a.update(b)
    torch.set_rng_state(rng)
    for b in batches[51:]:
        c.update(b)
    for x, y in ((a.actor, c.actor), (a.critic, c.critic), (a.critic_target, c.critic_target)):
        assert same_tensors(x.parameters(), y.parameters())


# ---------------------------------------------------------------------------- CUDA graphs
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

GRAPH_CASES = [
    dict(DQN_CASES[0], n_step=3),  # n-step discounts, hard copies outside the graph
    DQN_CASES[1],  # Polyak every step: the target update inside the graph
    dict(DQN_CASES[2], prioritized=True),  # PER weights
    # the DQN family (issue 17): distributional losses, noise redrawn outside the graph
    dict(DQN_CASES[1], distributional="c51", v_min=-5.0, v_max=5.0, atoms=11, prioritized=True),
    dict(DQN_CASES[0], distributional="qr", quantiles=8, n_step=3),
    dict(DQN_CASES[1], distributional="c51", noisy=True, dueling=True, n_step=3, prioritized=True),
    dict(DQN_CASES[1], munchausen=True),
]


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("case", range(len(GRAPH_CASES)))
def test_cuda_graph_update_matches_eager(case):
    fields = GRAPH_CASES[case]
    torch.manual_seed(0)
    eager = DQN((OBS,), N_ACT, DQNConfig(**fields), device="cuda", seed=0)
    graphed = DQN((OBS,), N_ACT, DQNConfig(**fields, cuda_graph=True), device="cuda", seed=0)
    graphed.load_state_dict(eager.state_dict())
    g = torch.Generator().manual_seed(case)
    for i in range(60):
        b = random_batch(g, n_step=fields.get("n_step", 1) > 1, weights=fields.get("prioritized", False), device="cuda")
        me, mg = eager.update(b), graphed.update(b)
        for k in me:  # the same kernels; tight tolerances in case capture picks other cuBLAS kernels
            torch.testing.assert_close(mg[k], me[k], rtol=1e-5, atol=1e-6, msg=f"{k} at update {i}")
        torch.testing.assert_close(graphed.td_abs, eager.td_abs, rtol=1e-5, atol=1e-6)
    assert graphed._graph is not None and graphed._graph.graph is not None  # it was captured
    for x, y in ((eager.q, graphed.q), (eager.q_target, graphed.q_target)):
        for p, q in zip(x.parameters(), y.parameters()):
            torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
    # metrics are copies: a later replay does not change what an earlier update returned
    m1 = graphed.update(b)
    v1 = m1["losses/td_loss"].clone()
    graphed.update(random_batch(g, n_step=fields.get("n_step", 1) > 1, weights=fields.get("prioritized", False),
                                device="cuda"))
    assert torch.equal(m1["losses/td_loss"], v1)


@pytest.mark.cuda
@cuda
def test_cuda_graph_resumes_from_a_checkpoint():
    fields = dict(GRAPH_CASES[1], cuda_graph=True)
    torch.manual_seed(0)
    a = DQN((OBS,), N_ACT, DQNConfig(**fields), device="cuda", seed=0)
    g = torch.Generator().manual_seed(7)
    batches = [random_batch(g, device="cuda") for _ in range(40)]
    for b in batches[:20]:
        a.update(b)
    c = DQN((OBS,), N_ACT, DQNConfig(**fields), device="cuda", seed=1)
    c.load_state_dict(roundtrip(a.state_dict()))
    a.load_state_dict(roundtrip(a.state_dict()))  # a loaded state re-captures the graph
    for b in batches[20:]:
        a.update(b)
        c.update(b)
    for p, q in zip(a.q.parameters(), c.q.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


@pytest.mark.cuda
@cuda
def test_cuda_graph_rejects_a_batch_of_another_shape():
    a = DQN((OBS,), N_ACT, DQNConfig(hidden_sizes=(8,), cuda_graph=True), device="cuda", seed=0)
    g = torch.Generator().manual_seed(0)
    a.update(random_batch(g, device="cuda"))
    small = random_batch(g, device="cuda")
    small = Batch(*(x[:4] if isinstance(x, torch.Tensor) else x for x in small))
    with pytest.raises(ValueError, match="cuda_graph"):
        a.update(small)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dueling", [False, True])
def test_cuda_graph_nature_cnn_on_uint8_frames_matches_eager(dueling):
    """The Nature CNN in the graph, frames uint8 on the device and scaled inside the captured
    forward (the pixel path), with and without the dueling head."""
    shape, n = (4, 84, 84), 6
    fields = dict(hidden_sizes=(64,), dueling=dueling, target_update_interval=5, learning_rate=1e-4)
    torch.manual_seed(0)
    eager = DQN(shape, n, DQNConfig(**fields), device="cuda", pixels=True, seed=0)
    graphed = DQN(shape, n, DQNConfig(**fields, cuda_graph=True), device="cuda", pixels=True, seed=0)
    graphed.load_state_dict(eager.state_dict())
    g = torch.Generator().manual_seed(1)
    for i in range(12):
        obs = torch.randint(0, 256, (8, *shape), generator=g, dtype=torch.uint8)
        nxt = torch.randint(0, 256, (8, *shape), generator=g, dtype=torch.uint8)
        b = Batch(obs.cuda(), torch.randint(0, n, (8,), generator=g).cuda(), torch.randn(8, generator=g).cuda(),
                  nxt.cuda(), (torch.rand(8, generator=g) < 0.2).cuda(), torch.zeros(8, dtype=torch.bool).cuda(),
                  torch.arange(8).cuda(), {})
        me, mg = eager.update(b), graphed.update(b)
        torch.testing.assert_close(mg["losses/td_loss"], me["losses/td_loss"], rtol=1e-4, atol=1e-5,
                                   msg=f"update {i}")
    assert graphed._graph is not None and graphed._graph.graph is not None
    for p, q in zip(eager.q.parameters(), graphed.q.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)


def test_lean_adam_keeps_its_own_capturable_flag_when_loading():
    """A checkpoint of a CUDA-graph run (capturable=True) resumes on an eager / CPU agent."""
    torch.manual_seed(0)
    a = mlp(OBS, (8,), N_ACT)
    oa = LeanAdam(a.parameters(), lr=1e-3, fused=True)
    a(torch.randn(B, OBS)).sum().backward()
    oa.lean_step()
    state = oa.state_dict()
    state["param_groups"][0]["capturable"] = True  # as saved by a cuda_graph agent
    ob = LeanAdam(a.parameters(), lr=1e-3, fused=True)
    ob.load_state_dict(state)
    assert ob.param_groups[0]["capturable"] is False
    ob.clear_grads()
    a(torch.randn(B, OBS)).sum().backward()
    ob.step()  # torch's own step (it would refuse capturable=True on the CPU)
    ob.lean_step()


@pytest.mark.cuda
@cuda
def test_cuda_graph_static_batch_filled_by_the_caller():
    fields = GRAPH_CASES[1]
    torch.manual_seed(0)
    eager = DQN((OBS,), N_ACT, DQNConfig(**fields), device="cuda", seed=0)
    graphed = DQN((OBS,), N_ACT, DQNConfig(**fields, cuda_graph=True), device="cuda", seed=0)
    graphed.load_state_dict(eager.state_dict())
    assert graphed.static_batch is None and eager.static_batch is None
    g = torch.Generator().manual_seed(9)
    for i in range(10):
        b = random_batch(g, device="cuda")
        if graphed.static_batch is None:
            graphed.update(b)
        else:  # what a loop using buffer.sample_into(agent.static_batch) does
            static = graphed.static_batch
            for d, s in zip(static, b):
                if isinstance(d, torch.Tensor):
                    d.copy_(s)
            graphed.update(static)
        eager.update(b)
    for p, q in zip(eager.q.parameters(), graphed.q.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("obs_shape", [(OBS,), (2, 3)])
def test_layer_by_layer_forward_matches_the_containers(obs_shape):
    from fastrl.agents.nets import Actor, QNetwork

    torch.manual_seed(0)
    q, actor = QNetwork(obs_shape, N_ACT, (16, 16)), Actor(obs_shape, 2, (16,))
    x = torch.randn(5, *obs_shape)
    assert torch.equal(q(x), q.head(q.torso(x)))
    assert torch.equal(actor(x), torch.tanh(actor.net(x)))
    target = copy.deepcopy(q)  # the copy's layer list is its own layers
    with torch.no_grad():
        q.head.bias.add_(1.0)
    assert torch.equal(target(x), target.head(target.torso(x)))
    assert not torch.equal(target(x), q(x))


def test_lean_adam_with_a_second_param_group_uses_step():
    torch.manual_seed(0)
    a, b = mlp(OBS, (8,), N_ACT), mlp(OBS, (8,), N_ACT)
    a2, b2 = copy.deepcopy(a), copy.deepcopy(b)
    lean = LeanAdam(a.parameters(), lr=1e-2, fused=True)
    plain = torch.optim.Adam(a2.parameters(), lr=1e-2, fused=True)
    for i in range(6):
        if i == 3:
            lean.add_param_group({"params": list(b.parameters())})
            plain.add_param_group({"params": list(b2.parameters())})
        x = torch.randn(B, OBS)
        lean.clear_grads()
        (a(x) + b(x)).sum().backward()
        lean.lean_step()
        plain.zero_grad()
        (a2(x) + b2(x)).sum().backward()
        plain.step()
    assert same_tensors([*a.parameters(), *b.parameters()], [*a2.parameters(), *b2.parameters()])


def test_static_batch_copies_check_the_layout():
    """The CUDA graph's input copies (device-agnostic helpers, so tested on the CPU too)."""
    from fastrl.agents.dqn import _copy_batch_, _map_batch

    g = torch.Generator().manual_seed(0)
    src = random_batch(g, n_step=True)
    src = src._replace(extras={"returns": torch.randn(B), "has_return": torch.ones(B, dtype=torch.bool)})
    static = _map_batch(src, torch.empty_like)
    assert static.weights is None and static.extras.keys() == src.extras.keys()
    _copy_batch_(static, src)
    for d, s in zip(static, src):
        if isinstance(d, torch.Tensor):
            assert torch.equal(d, s)
    assert torch.equal(static.extras["returns"], src.extras["returns"])
    with pytest.raises(ValueError, match="shapes"):
        _copy_batch_(static, src._replace(observations=src.observations[:4]))
    with pytest.raises(ValueError, match="shapes"):
        _copy_batch_(static, src._replace(actions=src.actions.int()))
    with pytest.raises(ValueError, match="fields"):
        _copy_batch_(static, src._replace(weights=torch.ones(B)))
    with pytest.raises(ValueError, match="fields"):
        _copy_batch_(static, src._replace(extras={}))
