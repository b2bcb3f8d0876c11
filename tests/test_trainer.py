"""The training loop: smoke runs of each preset, exact resume, checkpoints, bad configurations."""

import json

import numpy as np
import pytest
import torch

from fastrl.agents.dqn import DQN
from fastrl.training import checkpoint
from fastrl.training.device import config_for_device, flushes_denormals, resolve_device
from fastrl.training.evaluation import load_agent
from fastrl.replay.buffer import ReplayBuffer
from fastrl.config import ConfigError, with_overrides
from fastrl.agents.presets import PRESETS, preset
from fastrl.training.trainer import Trainer, train

TINY = dict(learning_starts=100, eval_every=0, eval_episodes=2, log_every=50, batch_size=32)


def tiny(env_id="CartPole-v1", **kw):
    return with_overrides(preset("dqn", env_id), {**TINY, "total_steps": 300, **kw})


@pytest.mark.parametrize("env_id", sorted(e for a, e in PRESETS if a == "dqn"))
def test_preset_smoke_run(tmp_path, env_id):
    cfg = tiny(env_id, max_episode_steps=200)
    r = train(cfg, run_dir=tmp_path / "run", progress=False)
    assert r.env_steps == 300 and r.episodes >= 1 and len(r.evals) == 1
    run = tmp_path / "run"
    for name in (
        "config.json",
        "metrics.csv",
        "training.png",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    ):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["env_id"] == env_id
    keys = {line.split(",")[2] for line in (run / "metrics.csv").read_text().splitlines()[1:]}
    assert {
        "charts/episodic_return",
        "losses/td_loss",
        "charts/epsilon",
        "perf/sps",
        "eval/mean_return",
    } <= keys
    assert list(run.glob("events.out.tfevents.*"))


def test_vector_envs_store_true_final_observations(tmp_path):
    cfg = tiny(num_envs=3, total_steps=600, learning_starts=600, max_episode_steps=20)
    t = Trainer(cfg, run_dir=tmp_path / "run", progress=False)
    try:
        t.train()
        rows = t.buffer.get(np.arange(t.buffer.total_added - len(t.buffer), t.buffer.total_added))
        trunc = rows["truncated"]
        assert trunc.sum() > 0
        # a stored successor is the env's next observation, never a reset one: the next row of the same
        # stream starts from a fresh reset (|x| < 0.05) while a truncated successor is 20 steps in
        ids = np.flatnonzero(~(rows["terminated"] | rows["truncated"]))[:-3]
        np.testing.assert_array_equal(rows["next_observations"][ids], rows["observations"][ids + 3])
    finally:
        t.close()


def test_resume_without_a_saved_buffer_refills_before_learning(tmp_path):
    cfg = tiny(total_steps=400, save_buffer=False, checkpoint_every=200, train_freq=1, gradient_steps=1)
    half = Trainer(with_overrides(cfg, {"total_steps": 200}), run_dir=tmp_path / "b", progress=False)
    half.train()
    half.close()
    assert not list((tmp_path / "b" / "checkpoints").glob("buffer_*"))
    assert half.agent.updates == 101  # one after each env step 100..200
    with pytest.warns(UserWarning, match=r"no replay buffer .save_buffer was off.*updates wait for 100 new.*not exact"):
        resumed = Trainer(cfg, resume=tmp_path / "b", progress=False)
    try:
        assert resumed.state.env_steps == 200 and len(resumed.buffer) == 0 and resumed.learning_from == 300
        resumed.train()
        # no update on a nearly empty buffer: the next ones after env steps 300..400
        assert resumed.state.env_steps == 400 and len(resumed.buffer) == 200 and resumed.agent.updates == 101 + 101
    finally:
        resumed.close()
    # resumed again (from 400 steps) with collectors: free-mode learners read learning_from; fixed
    # ones restart their rate limiter's schedule there, so again no update before step 500
    for mode in ("free", "fixed"):
        with pytest.warns(UserWarning, match="updates wait for 100 new"):
            t = Trainer(with_overrides(cfg, {"collectors": 1, "replay_ratio_mode": mode, "total_steps": 600}),
                        resume=tmp_path / "b", progress=False)
        assert t.learning_from == 500
        if mode == "free":
            t.close()
            continue
        try:
            t.train()
            assert t.state.env_steps == 600 and len(t.buffer) == 200 and t.agent.updates == 202 + 101
        finally:
            t.close()


@pytest.mark.parametrize(
    "env_id,num_envs,mode",
    [("CartPole-v1", 1, "sync"), ("LunarLander-v3", 2, "sync"), ("CartPole-v1", 2, "async"),
     ("CartPole-v1", 1, "sync+per")],
)
def test_resume_ends_exactly_where_uninterrupted_run_ends(tmp_path, env_id, num_envs, mode):
    extra = {"prioritized": True, "n_step": 3} if mode.endswith("+per") else {}
    mode = mode.split("+")[0]
    cfg = tiny(
        env_id,
        **extra,
        num_envs=num_envs,
        vector_mode=mode,
        total_steps=400,
        eval_every=200,
        max_episode_steps=60,
    )
    straight = Trainer(cfg, run_dir=tmp_path / "a", progress=False)
    straight.train()
    half = Trainer(
        with_overrides(cfg, {"total_steps": 200}), run_dir=tmp_path / "b", progress=False
    )
    half.train()
    half.close()
    resumed = Trainer(cfg, resume=tmp_path / "b", progress=False)
    assert resumed.state.env_steps == 200
    resumed.train()
    try:
        for p, q in zip(
            straight.agent.q.state_dict().values(), resumed.agent.q.state_dict().values()
        ):
            assert torch.equal(p, q)
        for p, q in zip(straight.agent.q_target.parameters(), resumed.agent.q_target.parameters()):
            assert torch.equal(p, q)
        assert (straight.state.env_steps, straight.state.episodes, straight.agent.updates) == (
            resumed.state.env_steps,
            resumed.state.episodes,
            resumed.agent.updates,
        )
        assert straight.agent.epsilon == resumed.agent.epsilon
        np.testing.assert_array_equal(straight.obs, resumed.obs)
        a, b = straight.buffer.state_dict(), resumed.buffer.state_dict()
        assert a["state"] == b["state"]
        for k in a["arrays"]:
            np.testing.assert_array_equal(a["arrays"][k], b["arrays"][k])
        assert [e["mean"] for e in straight.state.evals] == [e["mean"] for e in resumed.state.evals]
        assert list(straight.state.recent_returns) == list(resumed.state.recent_returns)
        assert straight.agent.rng.bit_generator.state == resumed.agent.rng.bit_generator.state
    finally:
        straight.close()
        resumed.close()


def assert_same_state(a, b, where="agent"):
    """Nested state dicts (tensors, arrays, numbers, lists) equal bit for bit."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize(
    "algo,env_id,extra",
    [
        ("sail-dqn", "CartPole-v1", {"train_freq": 4, "gradient_steps": 2}),
        # PER anneals beta over total_steps, which differ between the half run and the whole one:
        # a constant beta makes their first 200 steps the same
        ("sail-dqn", "CartPole-v1", {"prioritized": True, "per_beta_start": 1.0, "n_step": 3,
                                     "num_envs": 2, "train_freq": 2}),
        ("ddpg", "Pendulum-v1", {"noise": "ou"}),
        ("td3", "Pendulum-v1", {"num_envs": 2, "n_step": 2}),
    ],
)
def test_resume_is_exact_for_every_algo(tmp_path, algo, env_id, extra):
    cfg = with_overrides(
        preset(algo, env_id),
        {**TINY, **extra, "total_steps": 400, "eval_every": 200, "max_episode_steps": 60},
    )
    check_exact_resume(tmp_path, cfg, algo)


def check_exact_resume(tmp_path, cfg, algo):
    """A run of ``cfg`` stopped at 200 steps and resumed ends bit for bit where it ends uninterrupted."""
    straight = Trainer(cfg, run_dir=tmp_path / "a", progress=False, tensorboard=False)
    straight.train()
    half = Trainer(with_overrides(cfg, {"total_steps": 200}), run_dir=tmp_path / "b",
                   progress=False, tensorboard=False)
    half.train()
    half.close()
    resumed = Trainer(cfg, resume=tmp_path / "b", progress=False, tensorboard=False)
    assert resumed.algo == algo and resumed.state.env_steps == 200
    resumed.train()
    try:
        assert resumed.agent.updates == straight.agent.updates > 0
        assert_same_state(straight.agent.state_dict(), resumed.agent.state_dict())
        a, b = straight.buffer.state_dict(), resumed.buffer.state_dict()
        assert a["state"] == b["state"]
        for k in a["arrays"]:
            np.testing.assert_array_equal(a["arrays"][k], b["arrays"][k])
        assert [e["mean"] for e in straight.state.evals] == [e["mean"] for e in resumed.state.evals]
        np.testing.assert_array_equal(straight.obs, resumed.obs)
    finally:
        straight.close()
        resumed.close()


def test_checkpoints_are_atomic_and_damage_is_reported(tmp_path):
    r = train(tiny(checkpoint_every=100), run_dir=tmp_path / "run", progress=False)
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("step_*.pt")) == [
        f"step_{s:09d}.pt" for s in (100, 200, 300)
    ]
    assert [p.name for p in ckpts.glob("buffer_*.frb")] == ["buffer_000000300.frb"]
    assert not list(ckpts.glob("*.tmp"))
    state = checkpoint.load(ckpts / "last.pt")
    assert state["trainer"]["env_steps"] == r.env_steps == 300
    assert ReplayBuffer.load(ckpts / state["buffer_file"]).total_added == 300

    raw = (ckpts / "last.pt").read_bytes()
    (ckpts / "last.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="damaged"):
        Trainer(resume=tmp_path / "run", progress=False)
    flipped = bytearray(raw)
    flipped[len(raw) // 3 : len(raw) // 3 + 64] = b"\x00" * 64
    (ckpts / "last.pt").write_bytes(bytes(flipped))
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(ckpts / "last.pt")
    (ckpts / "other.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="damaged"):
        checkpoint.load(ckpts / "other.pt")
    torch.save({"hello": 1}, ckpts / "foreign.pt")
    with pytest.raises(checkpoint.CheckpointError, match="not a fastrl checkpoint"):
        checkpoint.load(ckpts / "foreign.pt")
    # a damaged replay buffer file is reported too
    (ckpts / "last.pt").write_bytes(raw)
    buf = ckpts / state["buffer_file"]
    data = bytearray(buf.read_bytes())
    data[-10] ^= 0xFF
    buf.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError, match="replay buffer"):
        Trainer(resume=tmp_path / "run", progress=False)


def test_rolling_mean_solved_threshold_stops_early(tmp_path):
    cfg = tiny(solve_on="rolling", solved_threshold=1.0, total_steps=5000, learning_starts=5000)
    r = train(cfg, run_dir=tmp_path / "run", progress=False)
    assert r.solved and r.episodes == 100 and r.env_steps < 5000


def test_same_seed_same_run(tmp_path):
    a = train(tiny(), run_dir=tmp_path / "a", progress=False, tensorboard=False)
    b = train(tiny(), run_dir=tmp_path / "b", progress=False, tensorboard=False)
    sa = checkpoint.load(a.run_dir / "checkpoints" / "last.pt")["agent"]["q"]
    sb = checkpoint.load(b.run_dir / "checkpoints" / "last.pt")["agent"]["q"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("flush", [True, False])
def test_denormals_are_flushed_while_training_only(tmp_path, flush):
    """flush_denormal: denormal floats read as zero inside the training loop (here: in an
    evaluation hook), and the thread's IEEE default is back after the run, also after an error."""
    assert not flushes_denormals()
    seen = []
    t = Trainer(tiny(eval_every=150, flush_denormal=flush), run_dir=tmp_path / "a", progress=False, tensorboard=False)
    t.eval_hooks.append(lambda row: seen.append(flushes_denormals()))
    t.train()
    t.close()
    assert seen and set(seen) == {flush}
    assert not flushes_denormals()

    def fail(row):
        raise RuntimeError("a hook failed")

    t = Trainer(tiny(eval_every=150, flush_denormal=flush), run_dir=tmp_path / "b", progress=False, tensorboard=False)
    t.eval_hooks.append(fail)
    with pytest.raises(RuntimeError, match="a hook failed"):
        t.train()
    t.close()
    assert not flushes_denormals()


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(env_id="NoSuchEnv-v0"), "cannot make env 'NoSuchEnv-v0'"),
        (dict(env_id="Pendulum-v1"), "discrete action space"),
        (dict(batch_size=0), "batch_size must be >= 1"),
        (dict(gamma=1.5), "gamma"),
        (dict(device="tpu"), "unknown device"),
        (dict(eval_epsilon=1.5), r"eval_epsilon must be in \[0, 1\], got 1.5"),
        (dict(eval_epsilon=-0.1), "eval_epsilon must be in"),
    ],
)
def test_bad_config_is_a_config_error(tmp_path, overrides, match):
    with pytest.raises(ConfigError, match=match):
        Trainer(tiny(**overrides), run_dir=tmp_path / "run", progress=False)


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("no_such_key", "1", "unknown config key 'no_such_key'"),
        ("batch_size", "abc", "bad value for batch_size"),
        ("batch_size", "1.5", "bad value for batch_size"),
        ("dueling", "maybe", "bad value for dueling"),
        ("loss", "l1", "bad value for loss"),
    ],
)
def test_bad_overrides(key, value, match):
    with pytest.raises(ConfigError, match=match):
        with_overrides(preset("dqn", "CartPole-v1"), {key: value})


def test_overrides_parse_types():
    cfg = with_overrides(
        preset("dqn", "CartPole-v1"),
        {
            "hidden_sizes": "64,32",
            "dueling": "true",
            "solved_threshold": "none",
            "learning_rate": "3e-4",
            "total_steps": "1e4",
        },
    )
    assert cfg.hidden_sizes == (64, 32) and cfg.dueling is True and cfg.solved_threshold is None
    assert cfg.learning_rate == 3e-4 and cfg.total_steps == 10_000


def test_prioritized_and_n_step_replay_run(tmp_path):
    t = Trainer(tiny(prioritized=True, n_step=3, total_steps=400), run_dir=tmp_path / "p", progress=False)
    try:
        t.train()
        from fastrl import PrioritizedReplayBuffer

        assert isinstance(t.buffer, PrioritizedReplayBuffer)
        p = t.buffer.priorities(np.arange(t.buffer.total_added - len(t.buffer), t.buffer.total_added))
        assert len(np.unique(p)) > 10  # updates from |TD| replaced the initial max priority
    finally:
        t.close()


def test_frame_stack_and_dueling_run(tmp_path):
    r = train(
        tiny(frame_stack=4, dueling=True, total_steps=200), run_dir=tmp_path / "run", progress=False
    )
    assert r.env_steps == 200


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_smoke_run(tmp_path):
    r = train(tiny(device="cuda"), run_dir=tmp_path / "run", progress=False)
    assert r.env_steps == 300


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("extra", [{}, dict(prioritized=True, n_step=3), dict(env_id="LunarLander-v3"),
                                   # Rainbow's options (issue 17): C51 + noisy + dueling + PER n-step
                                   dict(distributional="c51", noisy=True, dueling=True, prioritized=True, n_step=3,
                                        v_min=0.0, v_max=100.0)])
def test_cuda_graph_run_on_prefetched_batches(tmp_path, extra):
    """The GPU path end to end: CUDA-graph updates on batches prefetched into pinned memory
    (uniform, prioritized n-step; LunarLander's preset: the Polyak target in the graph), one update
    per env step; the checkpoint evaluates on the CPU."""
    if extra.get("env_id") == "LunarLander-v3":
        pytest.importorskip("Box2D")
    cfg = tiny(device="cuda", cuda_graph=True, prefetch=True, train_freq=1, gradient_steps=1, **extra)
    r = train(cfg, run_dir=tmp_path / "run", progress=False)
    assert r.env_steps == 300 and np.isfinite(r.evals[-1]["mean"])
    agent, c = load_agent(tmp_path / "run" / "checkpoints" / "last.pt", "cpu")
    assert c.cuda_graph is False and agent.device.type == "cpu"


def _cuda_graph_checkpoint(tmp_path):
    """The last.pt of a CPU run with the saved config saying cuda_graph=True, as a GPU run saves it."""
    train(tiny(total_steps=200), run_dir=tmp_path / "run", progress=False)
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    state = checkpoint.load(path)
    state["config"]["cuda_graph"] = True
    state["config"]["device"] = "cuda"
    checkpoint.save(path, state)
    return path


def test_checkpoint_of_a_cuda_graph_run_evaluates_on_the_cpu(tmp_path):
    agent, cfg = load_agent(_cuda_graph_checkpoint(tmp_path), "cpu")  # was: "cuda_graph=True needs a CUDA device"
    assert isinstance(agent, DQN) and agent._graph is None and cfg.cuda_graph is False
    assert agent.greedy(np.zeros((3, 4), np.float32)).shape == (3,)


def test_config_for_device_turns_cuda_graph_off_elsewhere():
    cfg = tiny(cuda_graph=True)
    assert config_for_device(cfg, "cuda").cuda_graph is True
    assert config_for_device(cfg, torch.device("cpu")).cuda_graph is False
    plain = tiny()
    assert config_for_device(plain, "cpu") is plain


def test_cuda_device_index_beyond_the_gpus_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match=r"'cuda:1' asked for but torch sees 1 CUDA GPU"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("extra", [{}, dict(prioritized=True, n_step=3)])
def test_prefetch_runs_are_deterministic_and_learn_from_the_buffer(tmp_path, extra):
    """prefetch=True: the background draws wait for every write, so a seed repeats exactly; the
    run differs from one without prefetch (each batch is drawn one update earlier: before the env
    step that came since, with an update every step)."""
    extra = dict(total_steps=400, train_freq=1, gradient_steps=1, **extra)
    cfg = tiny(prefetch=True, **extra)
    runs = [train(cfg, run_dir=tmp_path / name, progress=False, tensorboard=False) for name in "ab"]
    plain = train(tiny(**extra), run_dir=tmp_path / "plain", progress=False, tensorboard=False)
    q = [checkpoint.load(r.run_dir / "checkpoints" / "last.pt")["agent"]["q"] for r in (*runs, plain)]
    assert all(torch.equal(q[0][k], q[1][k]) for k in q[0])
    assert not all(torch.equal(q[0][k], q[2][k]) for k in q[0])
    assert runs[0].env_steps == 400


def test_prefetch_run_resumes(tmp_path):
    cfg = tiny(prefetch=True, total_steps=300, checkpoint_every=150)
    train(cfg, run_dir=tmp_path / "run", progress=False, tensorboard=False)
    t = Trainer(with_overrides(cfg, {"total_steps": 450}), resume=tmp_path / "run", progress=False)
    try:
        r = t.train()
        assert r.env_steps == 450 and t.sampler._prefetcher is None  # closed at the end of train()
    finally:
        t.close()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_evaluation_epsilon_replaces_actions_with_seeded_random_ones(env_id):
    """evaluate(epsilon=...): 0 is the policy's own actions; 1 ignores the policy (two different
    policies give the same episodes: the space's draws are seeded from the evaluation's seed); in
    between, the same seed gives the same returns and another seed others."""
    import gymnasium as gym

    from fastrl.training.envs import evaluate

    space = gym.make(env_id).action_space
    if isinstance(space, gym.spaces.Discrete):
        first, second = np.int64(0), np.int64(1)
    else:
        first, second = space.low.copy(), space.high.copy()

    def const(a):
        return lambda obs: np.stack([a] * len(obs))

    def run(policy, seed, eps):
        return evaluate(policy, lambda: gym.make(env_id), 6, seed, epsilon=eps)

    assert not np.array_equal(run(const(first), 3, 0.0), run(const(second), 3, 0.0))
    np.testing.assert_array_equal(run(const(first), 3, 1.0), run(const(second), 3, 1.0))
    half = run(const(first), 3, 0.5)
    np.testing.assert_array_equal(half, run(const(first), 3, 0.5))
    assert not np.array_equal(half, run(const(first), 3, 0.0))
    assert not np.array_equal(half, run(const(first), 4, 0.5))
    with pytest.raises(ValueError, match="epsilon must be in"):
        run(const(first), 3, 2.0)


def test_trainer_evaluates_with_eval_epsilon(tmp_path):
    """A run's evaluations use eval_epsilon: with 1 they are the random policy's returns, whatever
    was learned (two learning rates, the same evaluations), unlike greedy ones."""

    def evals(name, **kw):
        cfg = tiny(seed=0, total_steps=600, eval_every=300, eval_episodes=4, **kw)
        t = Trainer(cfg, run_dir=tmp_path / name, progress=False)
        out = [e["mean"] for e in t.train().evals]
        t.close()
        return out

    random_a = evals("a", eval_epsilon=1.0)
    assert len(random_a) == 2 and random_a == evals("b", eval_epsilon=1.0, learning_rate=1e-2)
    assert evals("c") != evals("d", learning_rate=1e-2)
