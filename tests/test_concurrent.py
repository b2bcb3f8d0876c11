"""Concurrent collection: the rate limiter's bounds, the collector's transitions against a
sequential rollout, a short concurrent run with checkpoints and resume, failures and shutdown."""

import multiprocessing

import numpy as np
import pytest
import torch

from fastrl.training.collector import CollectorError, RateLimiter
from fastrl.config import ConfigError, with_overrides
from fastrl.agents.presets import preset
from fastrl.training.trainer import Trainer, train

TINY = dict(learning_starts=100, eval_every=0, eval_episodes=2, log_every=50, batch_size=32)


def tiny(env_id="CartPole-v1", **kw):
    return with_overrides(preset("dqn", env_id), {**TINY, "total_steps": 300, **kw})


# ---------------------------------------------------------------------------- rate limiter
def _check_covered_inverts_due(lim, first_update=0):
    for u in range(first_update, first_update + 400):
        k = lim.iterations_covered(u)
        assert lim.updates_due(k) <= u < lim.updates_due(k + 1)


def _interleave(lim, collected, total, seed):
    """Collector and learner moved by a random scheduler from (``collected``, ``updates_due(collected)``)
    to ``total`` iterations: neither bound is ever broken, neither side waits forever, and the learner
    ends with exactly the schedule's updates."""
    rng = np.random.default_rng(seed)
    updates = lim.updates_due(collected)
    while collected < total or lim.can_update(collected, updates):
        can_c = collected < total and lim.can_collect(collected, updates)
        can_u = lim.can_update(collected, updates)
        assert can_c or can_u, (collected, updates)  # no deadlock
        if can_c and (not can_u or rng.random() < 0.5):
            collected += 1
        else:
            updates += 1
        assert updates <= lim.updates_due(collected)
        assert collected <= lim.iterations_covered(updates) + lim.ahead
    assert updates == lim.updates_due(total)


@pytest.mark.parametrize("n,tf,gs,ls", [(1, 1, 1, 0), (1, 256, 128, 1000), (3, 2, 1, 100), (2, 4, 3, 7)])
def test_updates_due_is_the_sequential_schedule(n, tf, gs, ls):
    lim = RateLimiter(n, tf, gs, ls, ahead=5)
    done = 0
    for k in range(1, 3000):  # the sequential loop's step 4
        if k * n >= ls and k % tf == 0:
            done += gs
        assert lim.updates_due(k) == done, k
    _check_covered_inverts_due(lim)


@pytest.mark.parametrize("n,tf,gs,ls,ahead", [(1, 1, 1, 0, 1), (1, 256, 128, 1000, 512), (3, 2, 1, 100, 22),
                                               (2, 4, 3, 7, 9)])
def test_rate_limiter_bounds_any_interleaving(n, tf, gs, ls, ahead):
    """Collector and learner moved by a random scheduler: neither bound is ever broken, neither side
    waits forever, and the learner ends with exactly the sequential loop's updates."""
    _interleave(RateLimiter(n, tf, gs, ls, ahead), 0, 3000, seed=0)


@pytest.mark.parametrize("n,tf,gs,ls,start,refill", [(1, 1, 1, 0, 200, 100), (3, 2, 1, 100, 75, 64),
                                                     (2, 4, 3, 7, 101, 300), (1, 256, 128, 1000, 1000, 1000)])
def test_restarted_schedule_is_a_refilling_sequential_loop(n, tf, gs, ls, start, refill):
    """A limiter restarted at iteration ``start`` (a resume without the buffer) is the sequential loop
    that, from there, trains only once ``refill`` more env steps are in (``learning_from``), on the
    same ``train_freq`` phase; its bounds hold under any interleaving and it ends on its own schedule."""
    lim = RateLimiter(n, tf, gs, ls, ahead=9).restart(start, refill)
    done = RateLimiter(n, tf, gs, ls, ahead=9).updates_due(start)
    assert lim.done == done and lim.updates_due(start) == done
    learning_from = start * n + refill
    for k in range(start + 1, start + 3000):
        if k * n >= learning_from and k % tf == 0:
            done += gs
        assert lim.updates_due(k) == done, k
    _check_covered_inverts_due(lim, lim.done)
    _interleave(lim, start, start + 2000, seed=1)


def test_rate_limiter_checks_and_config_default():
    with pytest.raises(ValueError):
        RateLimiter(1, 1, 1, 0, ahead=0)
    for field in ("start", "done"):
        with pytest.raises(ValueError, match=field):
            RateLimiter(1, 1, 1, 0, ahead=1, **{field: -1})
    cfg = tiny(train_freq=4, num_envs=2)
    assert RateLimiter.from_config(cfg).ahead == 32  # max(2 * 4 * 2, 64) env steps
    assert RateLimiter.from_config(with_overrides(cfg, {"collect_ahead": 7})).ahead == 4


def test_bad_concurrent_settings_are_config_errors(tmp_path):
    for k, v in (("sync_every", 0), ("collect_ahead", -1)):
        with pytest.raises(ConfigError, match=k):
            Trainer(tiny(**{k: v}), run_dir=tmp_path / k, progress=False)


# ---------------------------------------------------------------------------- the collector
def _rows(buffer):
    return buffer.get(np.arange(buffer.total_added - len(buffer), buffer.total_added))


@pytest.mark.parametrize("learning_starts", [100, 10_000])
def test_collector_delivers_the_sequential_transitions(tmp_path, learning_starts):
    """With epsilon 1 the actions do not depend on the weights: the concurrent run's buffer must
    hold exactly the sequential run's transitions (same seed), chunk for chunk, with the true final
    observations of truncated episodes and terminated / truncated apart."""
    cfg = tiny(num_envs=2, total_steps=700, max_episode_steps=20, learning_starts=learning_starts,
               epsilon_schedule="constant", epsilon_start=1.0, train_freq=4, gradient_steps=2,
               checkpoint_every=0)
    out = {}
    for concurrent in (False, True):
        t = Trainer(with_overrides(cfg, {"concurrent": concurrent}), run_dir=tmp_path / str(concurrent),
                    progress=False, tensorboard=False)
        try:
            r = t.train()
            out[concurrent] = (_rows(t.buffer), r, t.concurrent_stats.get("updates"), t.agent.updates)
        finally:
            t.close()
    (seq, r_seq, _, seq_updates), (conc, r_conc, conc_count, conc_updates) = out[False], out[True]
    assert r_conc.env_steps == r_seq.env_steps == 700 and r_conc.episodes == r_seq.episodes
    for k in seq:
        np.testing.assert_array_equal(conc[k], seq[k], err_msg=k)
    assert conc["truncated"].sum() > 0 and conc["terminated"].sum() > 0
    assert conc_updates == seq_updates == conc_count  # the replay ratio of the sequential loop


def test_concurrent_run_logs_checkpoints_and_resumes(tmp_path):
    cfg = tiny(total_steps=600, concurrent=True, checkpoint_every=200, eval_every=300, train_freq=4,
               gradient_steps=2, max_episode_steps=100)
    run = tmp_path / "run"
    r = train(cfg, run_dir=run, progress=False)
    assert r.env_steps == 600 and r.episodes >= 1 and len(r.evals) == 2
    keys = {line.split(",")[2] for line in (run / "metrics.csv").read_text().splitlines()[1:]}
    assert {"charts/episodic_return", "losses/td_loss", "charts/epsilon", "perf/sps", "perf/update_lag",
            "eval/mean_return"} <= keys
    lim = RateLimiter.from_config(cfg)
    lags = [float(line.split(",")[3]) for line in (run / "metrics.csv").read_text().splitlines()[1:]
            if ",perf/update_lag," in line]
    assert max(lags) <= lim.updates_due(lim.ahead + lim.first_phase)  # the tolerance, in updates
    steps = sorted(int(p.stem.split("_")[1]) for p in (run / "checkpoints").glob("step_*.pt"))
    assert len(steps) == 3 and all(200 * i <= s < 200 * i + 64 for i, s in zip((1, 2, 3), steps))
    # resume with a larger budget, concurrently: continues from the saved envs, buffer and counters
    r2 = train(with_overrides(cfg, {"total_steps": 900}), resume=run, progress=False)
    assert r2.env_steps == 900 and r2.episodes > r.episodes


def test_failing_env_in_the_collector_is_a_clear_error_and_leaves_no_process(tmp_path):
    pytest.importorskip("_failing_env")
    cfg = tiny(env_id="_failing_env:Failing-v0", concurrent=True)
    with pytest.raises(CollectorError, match="env exploded on purpose"):
        train(cfg, run_dir=tmp_path / "run", progress=False)
    assert multiprocessing.active_children() == []


def test_interrupt_in_the_learner_stops_the_collector(tmp_path):
    t = Trainer(tiny(concurrent=True, total_steps=5000), run_dir=tmp_path / "run", progress=False)
    calls = {"n": 0}
    update = t.agent.update

    def interrupted(batch):
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt
        return update(batch)

    t.agent.update = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            t.train()
    finally:
        t.close()
    assert multiprocessing.active_children() == []


def test_shared_weights_are_never_read_half_written():
    """A writer publishes sets whose every element is its version; a reader (another thread; the
    lock is the same across processes) must always load a set of one version."""
    import threading

    import torch
    import torch.multiprocessing as tmp

    from fastrl.training.collector import SharedWeights

    net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.Linear(256, 64))
    src = [t for t in net.state_dict().values()]
    with torch.no_grad():
        for t in src:
            t.fill_(0)  # version 1, the set SharedWeights starts with, is uniform too
    sw = SharedWeights(tmp.get_context("spawn"), [net])
    dst = [torch.empty_like(t) for t in src]
    stop, bad = threading.Event(), []

    def writer():
        v = 0
        while not stop.is_set():
            v += 1
            with torch.no_grad():
                for t in src:
                    t.fill_(v)
            sw.publish(src)

    w = threading.Thread(target=writer)
    w.start()
    try:
        for _ in range(3000):
            sw.load_into(dst)
            vals = {float(x) for t in dst for x in (t.min(), t.max())}
            if len(vals) != 1:
                bad.append(vals)
                break
    finally:
        stop.set()
        w.join()
    assert not bad and sw.version.value > 1


def test_concurrent_with_async_vector_envs(tmp_path):
    """The collector starts the env subprocesses itself (so it is not a daemon process)."""
    r = train(tiny(concurrent=True, num_envs=2, vector_mode="async", total_steps=200), run_dir=tmp_path / "run",
              progress=False)
    assert r.env_steps == 200
    assert multiprocessing.active_children() == []


def test_collector_of_a_cuda_graph_learner_acts_without_the_graph(tmp_path):
    """A learner with cuda_graph=True hands its config to the collector, whose agent is on the CPU:
    it must build that agent without the graph (it failed with "cuda_graph=True needs a CUDA
    device" in the child). The learner's own agent here is a CPU one; only the config says graph."""
    t = Trainer(tiny(concurrent=True, total_steps=200), run_dir=tmp_path / "run", progress=False, tensorboard=False)
    t.cfg = with_overrides(t.cfg, {"cuda_graph": True})  # what a GPU learner's config holds
    try:
        r = t.train()
    finally:
        t.close()
    assert r.env_steps == 200


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_concurrent_run_with_a_cuda_graph_learner(tmp_path):
    r = train(tiny(concurrent=True, device="cuda", cuda_graph=True, train_freq=1, gradient_steps=1),
              run_dir=tmp_path / "run", progress=False)
    assert r.env_steps == 300
