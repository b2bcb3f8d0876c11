"""Many collectors, one learner (``collectors=N``): the streams they store against N sequential
rollouts with their seeds, the rate limiter's bounds with N writers, a collector killed mid-run,
checkpoints and resume, the free replay ratio, Ape-X exploration and bad settings."""

import math
import multiprocessing
import os
import signal
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fastrl.agents.presets import preset
from fastrl.agents.registry import get_algo
from fastrl.config import ConfigError, with_overrides
from fastrl.training.collector import RateLimiter, apex_schedule, chunk_priorities, collector_seeds
from fastrl.training.device import config_for_device
from fastrl.training.envs import make_vec_env
from fastrl.training.rollout import env_step
from fastrl.training.trainer import Trainer, train

TINY = dict(learning_starts=100, eval_every=0, eval_episodes=2, log_every=50, batch_size=32, checkpoint_every=0,
            solved_threshold=None)  # no run stops early: concurrent runs are not bit-reproducible


def tiny(env_id="CartPole-v1", **kw):
    return with_overrides(preset("dqn", env_id), {**TINY, "total_steps": 300, **kw})


def _metric(run_dir, name):
    lines = (run_dir / "metrics.csv").read_text().splitlines()[1:]
    return [float(line.split(",")[3]) for line in lines if line.split(",")[2] == name]


# ---------------------------------------------------------------------------- the limiter, N writers
@pytest.mark.parametrize(
    "n,tf,gs,ls,collectors,each",
    [(1, 1, 1, 0, 4, 1), (1, 4, 1, 100, 3, 2), (2, 4, 3, 7, 5, 1), (4, 1, 2, 64, 2, 4), (1, 256, 128, 1000, 8, 1)],
)
def test_rate_limiter_bounds_hold_with_n_writers(n, tf, gs, ls, collectors, each):
    """N collectors and the learner moved by a random scheduler, as ConcurrentLearner moves them: each
    collector steps while below the limit, the learner stores the vector steps all have sent but each
    one's newest, and updates while due. No bound is broken, nobody waits forever, and the learner
    ends with exactly the sequential loop's updates for the env steps stored."""
    cfg = tiny(num_envs=n, train_freq=tf, gradient_steps=gs, learning_starts=ls, collectors=collectors,
               collector_envs=each)
    lim = RateLimiter.from_config(cfg)
    streams = collectors * each
    rng = np.random.default_rng(0)
    total = 2000 // streams
    sent, stored, updates = [0] * collectors, 0, 0
    while stored < total or lim.updates_due_at(stored * streams) > updates:
        limit = lim.vector_limit(updates, streams)
        movers = [i for i in range(collectors) if sent[i] < min(limit, total)]
        can_store = min(sent) - (0 if min(sent) >= total else 1) > stored
        can_update = updates < lim.updates_due_at(stored * streams)
        assert movers or can_store or can_update, (sent, stored, updates)  # no deadlock
        pick = rng.integers(3)
        if pick == 0 and movers:
            sent[rng.choice(movers)] += 1
        elif pick == 1 and can_store:
            stored = min(sent) - (0 if min(sent) >= total else 1)
        elif can_update:
            updates += 1
        assert updates <= lim.updates_due_at(stored * streams)
        assert max(sent) <= max(lim.vector_limit(updates, streams), 0) or max(sent) <= stored + 1
    assert updates == lim.updates_due_at(total * streams)


# ---------------------------------------------------------------------------- what they store
def _reference_stream(cfg, seeds, i, count, each, iterations):
    """Collector ``i``'s steps, taken sequentially with its seeds (env_step, its burn-in share)."""
    env_seed, agent_seed, torch_seed = collector_seeds(seeds, cfg.seed, i, each)
    torch.manual_seed(torch_seed & (2**63 - 1))
    envs = make_vec_env(cfg.env_id, each, "sync", cfg.max_episode_steps, cfg.frame_stack)
    agent = get_algo("dqn").agent.from_spaces(
        envs.single_observation_space, envs.single_action_space, config_for_device(cfg, "cpu"), "cpu", seed=agent_seed
    )
    agent.exploration.scale = count
    obs, _ = envs.reset(seed=env_seed)
    out = []
    for k in range(iterations):
        tr, obs, _ = env_step(agent, envs, obs, k * each, math.ceil(cfg.learning_starts / count))
        out.append(tr)
    envs.close()
    return {name: np.stack([getattr(tr, name) for tr in out]) for name in out[0]._fields}


@pytest.mark.parametrize("count,each,backend,mode,steps", [(3, 2, "process", "fixed", 600),
                                                           (2, 1, "process", "fixed", 600),
                                                           (3, 1, "ray", "fixed", 600),
                                                           (2, 2, "ray", "free", 2400)])
def test_n_collectors_store_exactly_the_n_sequential_streams(tmp_path, count, each, backend, mode, steps):
    """With epsilon 1 the actions do not depend on the weights: collector i's streams in the buffer
    are, step for step, the rollout of i's envs and exploration seeds run on their own (so the
    buffer's transitions are those of N sequential streams, as a multiset and in order). With Ray,
    two calls are in flight per actor: their chunks must arrive once each and in order (free mode:
    600 steps per collector, more than two of its 256-step chunks)."""
    if backend == "ray":
        pytest.importorskip("ray")
    cfg = tiny(collectors=count, collector_envs=each, total_steps=steps, max_episode_steps=20,
               epsilon_schedule="constant", epsilon_start=1.0, train_freq=2, learning_starts=120,
               collector_backend=backend, replay_ratio_mode=mode)
    t = Trainer(cfg, run_dir=tmp_path / "run", progress=False, tensorboard=False)
    try:
        r = t.train()
        streams = count * each
        k = len(t.buffer) // streams
        assert r.env_steps == k * streams >= steps
        rows = t.buffer.get(np.arange(t.buffer.total_added))
        for i in range(count):
            ref = _reference_stream(cfg, t.seeds, i, count, each, k)
            for name, want in ref.items():
                got = rows[name].reshape(k, streams, *rows[name].shape[1:])[:, i * each : (i + 1) * each]
                np.testing.assert_array_equal(got, want.reshape(got.shape), err_msg=f"collector {i} {name}")
        assert rows["truncated"].sum() > 0 and rows["terminated"].sum() > 0
        if mode == "fixed":
            assert t.concurrent_stats["updates"] == RateLimiter.from_config(cfg).updates_due_at(r.env_steps)
    finally:
        t.close()
    assert multiprocessing.active_children() == []


def test_collector_seeds_make_one_vector_env_and_restarts_fresh():
    seeds = [11, 22, 33]
    assert collector_seeds(seeds, 5, 0, 4) == (5, 33, 11)  # collector 0: the sequential loop's draws
    env_seeds = [collector_seeds(seeds, 5, i, 4)[0] for i in range(3)]
    assert env_seeds == [5, 9, 13]  # envs seeded as one vector env of 12: 5, 6, ..., 16
    firsts = {collector_seeds(seeds, 5, i, 4)[1] for i in range(3)}
    restarts = {collector_seeds(seeds, 5, 1, 4, restart=r) for r in range(1, 4)}
    assert len(firsts) == 3 and len(restarts) == 3 and collector_seeds(seeds, 5, 1, 4) not in restarts


# ---------------------------------------------------------------------------- faults
def test_a_killed_collector_is_restarted_and_its_episodes_end_truncated(tmp_path):
    """kill -9 of collector 1 mid-run: the run goes on with a new collector (fresh envs), the restart
    is logged, its newest step is stored truncated (its episodes end there), and every stored step
    is there once (the run stores exactly its env steps)."""
    cfg = tiny(collectors=2, total_steps=2000, eval_every=1000, max_episode_steps=5000)
    t = Trainer(cfg, run_dir=tmp_path / "run", progress=False, tensorboard=False)
    killed = []

    def kill(row):
        if not killed:
            (victim,) = [p for p in multiprocessing.active_children() if p.name == "fastrl-collector-1"]
            os.kill(victim.pid, signal.SIGKILL)
            killed.append(victim.pid)

    t.eval_hooks.append(kill)
    try:
        with pytest.warns(UserWarning, match="collector 1 died"):
            r = t.train()
        assert killed and r.env_steps == 2000 and t.buffer.total_added == 2000
        assert t.concurrent_stats["restarts"] == 1
        assert max(_metric(t.run_dir, "perf/collector_restarts")) == 1
        rows = t.buffer.get(np.arange(2000))
        trunc = rows["truncated"].reshape(1000, 2)
        assert trunc[:, 0].sum() == 0 and trunc[:, 1].sum() == 1  # no natural truncation (limit 5000)
        (at,) = np.flatnonzero(trunc[:, 1])
        assert 500 <= at < 1000 + RateLimiter.from_config(cfg).ahead  # where it was killed
        obs = rows["observations"].reshape(1000, 2, -1)[:, 1]
        nxt = rows["next_observations"].reshape(1000, 2, -1)[:, 1]
        assert not np.array_equal(obs[at + 1], nxt[at])  # fresh envs after it
    finally:
        t.close()
    assert multiprocessing.active_children() == []


def test_a_collector_that_keeps_failing_ends_the_run_with_its_error(tmp_path):
    pytest.importorskip("_failing_env")
    cfg = tiny(env_id="_failing_env:Failing-v0", collectors=2, collector_restarts=1)
    with pytest.warns(UserWarning, match="died"), pytest.raises(Exception, match="env exploded on purpose"):
        train(cfg, run_dir=tmp_path / "run", progress=False)
    assert multiprocessing.active_children() == []


# ---------------------------------------------------------------------------- checkpoints, modes
def test_n_collectors_checkpoint_and_resume(tmp_path):
    cfg = tiny(collectors=2, collector_envs=2, total_steps=800, checkpoint_every=200, train_freq=4)
    run = tmp_path / "run"
    r = train(cfg, run_dir=run, progress=False)
    assert r.env_steps == 800
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert len(ckpt["trainer"]["env_states"]) == 4 and len(ckpt["trainer"]["collectors"]) == 2
    steps = sorted(int(p.stem.split("_")[1]) for p in (run / "checkpoints").glob("step_*.pt"))
    ahead = RateLimiter.from_config(cfg).ahead * cfg.num_envs  # collectors pause where the first got to
    assert len(steps) == 4 and all(200 * i <= s <= 200 * i + ahead for i, s in zip((1, 2, 3, 4), steps))
    r2 = train(with_overrides(cfg, {"total_steps": 1200}), resume=run, progress=False)
    assert r2.env_steps == 1200 and r2.episodes > r.episodes
    with pytest.raises(Exception, match="env streams"):  # other stream count: refused, named
        train(with_overrides(cfg, {"total_steps": 1600, "collectors": 3}), resume=run, progress=False)
    assert multiprocessing.active_children() == []


def test_free_replay_ratio_updates_without_the_schedule_and_logs_the_ratio(tmp_path):
    cfg = tiny(collectors=2, replay_ratio_mode="free", total_steps=1000, train_freq=8, log_every=200)
    t = Trainer(cfg, run_dir=tmp_path / "run", progress=False, tensorboard=False)
    try:
        r = t.train()
    finally:
        t.close()
    assert r.env_steps == 1000 and t.concurrent_stats["updates"] > 0
    assert _metric(t.run_dir, "perf/replay_ratio")


# ---------------------------------------------------------------------------- Ape-X initial priorities
@pytest.mark.parametrize("n_step,distributional", [(1, "none"), (3, "none"), (4, "c51"), (2, "qr")])
def test_chunk_priorities_match_the_slow_n_step_model(n_step, distributional):
    from reference import chunk_td_priorities

    cfg = with_overrides(tiny(), {"n_step": n_step, "gamma": 0.9, "distributional": distributional})
    envs = make_vec_env("CartPole-v1", 1)
    agent = get_algo("dqn").agent.from_spaces(envs.single_observation_space, envs.single_action_space, cfg,
                                              "cpu", seed=0)
    envs.close()
    rng = np.random.default_rng(n_step)
    T, E = 9, 3
    chunk = {"observations": rng.normal(size=(T, E, 4)).astype(np.float32),
             "actions": rng.integers(2, size=(T, E)),
             "rewards": rng.normal(size=(T, E)),
             "next_observations": rng.normal(size=(T, E, 4)).astype(np.float32),
             "terminated": rng.random((T, E)) < 0.15,
             "truncated": rng.random((T, E)) < 0.1}
    chunk["terminated"][-1, 0] = chunk["truncated"][-2, 1] = True  # an end at and next to the chunk's end

    def q(x):
        with torch.no_grad():
            return agent.q_values(agent.q(torch.as_tensor(x[None]))).numpy()[0]

    want = chunk_td_priorities(q, chunk["observations"], chunk["actions"], chunk["rewards"],
                               chunk["next_observations"], chunk["terminated"], chunk["truncated"], 0.9, n_step)
    got = chunk_priorities(agent, chunk)
    assert got.shape == (T, E) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", ["process", "ray"])
def test_collectors_give_new_transitions_their_td_error_as_priority(tmp_path, backend):
    """No update happens (learning_starts past the run), so the collectors' network is the learner's:
    every stored row's priority is its |TD error| under it, plus per_eps."""
    if backend == "ray":
        pytest.importorskip("ray")
    cfg = tiny(collectors=2, collector_envs=2, collector_backend=backend, prioritized=True,
               collector_priorities=True, total_steps=400, learning_starts=10_000, per_eps=0.01, n_step=1)
    t = Trainer(cfg, run_dir=tmp_path / "run", progress=False, tensorboard=False)
    try:
        t.train()
        ids = np.arange(400)
        rows = t.buffer.get(ids)
        boot = ~rows["terminated"]
        want = t.agent.fresh_priorities(rows["observations"], rows["actions"], rows["rewards"],
                                        np.full(400, cfg.gamma), rows["next_observations"], ~boot)
        np.testing.assert_allclose(t.buffer.priorities(ids), want + 0.01, rtol=1e-4, atol=1e-6)
        assert np.ptp(want) > 0  # not one value for all
    finally:
        t.close()
        if backend == "ray":
            import ray

            ray.shutdown()
    with pytest.raises(ConfigError, match="collector_priorities needs prioritized=true and collectors >= 1"):
        train(with_overrides(cfg, {"collectors": 0}), run_dir=tmp_path / "b", progress=False)


def test_apex_exploration_levels():
    dqn = preset("dqn", "CartPole-v1")
    eps = [apex_schedule(dqn, i, 8).value for i in range(8)]
    np.testing.assert_allclose(eps, [0.4 ** (1 + 7 * i / 7) for i in range(8)])
    assert apex_schedule(dqn, 0, 1).value == 0.4
    ddpg = preset("ddpg", "Pendulum-v1")
    assert apex_schedule(ddpg, 0, 4).value == ddpg.noise_sigma
    assert apex_schedule(ddpg, 3, 4).value == pytest.approx(ddpg.noise_sigma * 0.4**7)


def test_apex_run_and_ddpg_with_collectors(tmp_path):
    assert train(tiny(collectors=3, apex_epsilon=True, total_steps=300), run_dir=tmp_path / "a",
                 progress=False).env_steps == 300
    ddpg = with_overrides(preset("ddpg", "Pendulum-v1"), {**TINY, "total_steps": 400, "collectors": 2,
                                                          "apex_epsilon": True})
    assert train(ddpg, run_dir=tmp_path / "d", progress=False).env_steps == 400
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("key,value", [("collectors", -1), ("collector_envs", -2), ("collector_restarts", -1),
                                       ("replay_ratio_mode", "fast"), ("collector_backend", "mpi")])
def test_bad_collector_settings_are_config_errors(tmp_path, key, value):
    with pytest.raises(ConfigError, match=key):
        Trainer(tiny(**{key: value}), run_dir=tmp_path / "run", progress=False)


def test_buffer_smaller_than_the_streams_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="buffer_size"):
        Trainer(tiny(collectors=4, collector_envs=4, buffer_size=8), run_dir=tmp_path / "run", progress=False)


# ---------------------------------------------------------------------------- Ray actors
@pytest.mark.parametrize("backend", ["process", "ray"])
def test_collector_restarted_during_a_pause_stops_at_the_target(tmp_path, backend):
    """A collector restarted while the others wait at a pause target (ConcurrentLearner.restart) is
    told the target as it starts: it sends exactly the steps up to it and reports its state there,
    however far its limit and chunk would let it run. (A Ray handle that queued its first calls before
    hearing of the pause stepped a chunk past it, and the pause failed.)"""
    from fastrl.training.collector import CollectorError, SharedWeights
    from fastrl.training.concurrent import ConcurrentLearner

    started = False
    if backend == "ray":
        pytest.importorskip("ray")
        from fastrl.training.ray_collector import RayWeights, start_ray

        _, started = start_ray(None, num_cpus=2)
    t = Trainer(tiny(collectors=2, collector_backend=backend, total_steps=2000), run_dir=tmp_path / "run",
                progress=False, tensorboard=False)
    c = None
    try:
        learner = ConcurrentLearner(t)
        if backend == "ray":
            learner.weights = RayWeights(learner.modules)
        else:
            learner.weights = SharedWeights(multiprocessing.get_context("spawn"), learner.modules)
        learner.chunk, learner.pause_target = 64, 7
        learner.collectors = [None, SimpleNamespace(close=lambda timeout: None)]  # collector 1 died
        with pytest.warns(UserWarning, match="collector 1 died"):
            learner.restart(1, CollectorError("killed"))
        c = learner.collectors[1]
        c.set_limit(1000)
        sent, paused = 0, None
        for _ in range(60):
            if type(c).wait_any([c], 1.0):
                for msg in c.poll():
                    if msg[0] == "data":
                        assert msg[1] == sent
                        sent += len(msg[2]["rewards"])
                    else:
                        paused = msg[1]
            if paused is not None:
                break
        assert paused is not None and paused["iterations"] == 7 and sent == 7
    finally:
        if c is not None:
            c.close()
        t.close()
        if started:
            import ray

            ray.shutdown()


def test_ray_collectors_end_to_end_with_a_killed_actor(tmp_path):
    """A local Ray cluster: 2 collector actors, checkpoints, and one actor killed mid-run (what a
    lost node does to it): restarted, the run stores exactly its env steps."""
    ray = pytest.importorskip("ray")
    from fastrl.training.ray_collector import start_ray

    _, started = start_ray(None, num_cpus=2)
    try:
        cfg = tiny(collectors=2, collector_backend="ray", total_steps=2000, eval_every=1000, checkpoint_every=500,
                   max_episode_steps=5000)
        t = Trainer(cfg, run_dir=tmp_path / "run", progress=False, tensorboard=False)
        killed = []

        def kill(row):
            if not killed:
                (name,) = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                           if f"-{os.getpid()}-collector-1-" in a["name"]]
                ray.kill(ray.get_actor(name, namespace=ray.get_runtime_context().namespace))
                killed.append(name)

        t.eval_hooks.append(kill)
        try:
            with pytest.warns(UserWarning, match="collector 1 died"):
                r = t.train()
            assert killed and r.env_steps == 2000 and t.buffer.total_added == 2000
            assert t.concurrent_stats["restarts"] == 1
            trunc = t.buffer.get(np.arange(2000))["truncated"].reshape(1000, 2)
            assert trunc[:, 0].sum() == 0 and trunc[:, 1].sum() <= 1  # 0 if it died right after a pause
        finally:
            t.close()
        ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
        assert len(ckpt["trainer"]["collectors"]) == 2
        r2 = train(with_overrides(cfg, {"total_steps": 2400}), resume=tmp_path / "run", progress=False)
        assert r2.env_steps == 2400
    finally:
        if started:
            ray.shutdown()


def test_ray_node_lost_mid_run(tmp_path):
    """A local Ray cluster of two nodes; the collectors need a resource only the second one has
    (ray_resources). That node is removed mid-run (its raylet and workers killed) and a replacement
    joins, as an autoscaler would bring one: the collectors are restarted there, the run stores
    exactly its env steps and ends."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from fastrl.training.ray_collector import start_ray

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes = [cluster.add_node(num_cpus=1, resources={"collector": 2})]
    try:
        cluster.wait_for_nodes()
        start_ray(cluster.address)
        cfg = tiny(collectors=2, collector_backend="ray", ray_address=cluster.address, ray_resources="collector=1",
                   total_steps=1600, eval_every=800, max_episode_steps=5000)
        t = Trainer(cfg, run_dir=tmp_path / "run", progress=False, tensorboard=False)

        def collector_nodes():
            ns = ray.get_runtime_context().namespace
            names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                     if f"-{os.getpid()}-collector-" in a["name"]]
            return {ray.get(ray.get_actor(name, namespace=ns).node_id.remote(), timeout=60) for name in names}

        seen = []

        def lose_the_node(row):
            seen.append(collector_nodes())
            if len(nodes) == 1:
                cluster.remove_node(nodes[0], allow_graceful=False)
                nodes.append(cluster.add_node(num_cpus=1, resources={"collector": 2}))

        t.eval_hooks.append(lose_the_node)
        try:
            with pytest.warns(UserWarning, match="collector . died"):
                r = t.train()
            assert len(nodes) == 2 and r.env_steps == 1600 and t.buffer.total_added == 1600
            assert t.concurrent_stats["restarts"] >= 2  # both collectors were on the lost node
            assert seen == [{nodes[0].node_id}, {nodes[1].node_id}]  # the evaluations at 800 and 1600
        finally:
            t.close()
    finally:
        ray.shutdown()
        cluster.shutdown()
    with pytest.raises(ConfigError, match="ray_resources must be"):
        train(with_overrides(cfg, {"ray_resources": "collector"}), run_dir=tmp_path / "b", progress=False)


def test_ray_missing_or_unreachable_is_one_clear_line(tmp_path, monkeypatch):
    import sys
    import time

    t0 = time.monotonic()
    with pytest.raises(ConfigError, match="cannot reach Ray at 127.0.0.1:9"):
        train(tiny(collectors=1, collector_backend="ray", ray_address="127.0.0.1:9"), run_dir=tmp_path / "a",
              progress=False)
    assert time.monotonic() - t0 < 30
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r'pip install "fastrl\[ray\]"'):
        train(tiny(collectors=1, collector_backend="ray"), run_dir=tmp_path / "b", progress=False)
