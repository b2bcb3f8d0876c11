"""Env steps per second, sequential vs concurrent (``concurrent=True``), and SB3 at the same settings.

    python benchmarks/bench_concurrent.py fastrl CartPole-v1 20000 --concurrent --seed 0
    python benchmarks/bench_concurrent.py sb3 CartPole-v1 20000
    python benchmarks/bench_concurrent.py learn CartPole-v1 0 --concurrent --seed 1   # the preset as is

Prints one JSON line. Throughput runs use the DQN preset with no stopping rule, no evaluations
and no checkpoints, so every run does the same number of env steps and updates.
"""

from __future__ import annotations

import argparse
import json
import time


def fastrl_run(env_id: str, steps: int, concurrent: bool, seed: int, learn: bool, **extra: object) -> dict:
    import tempfile

    from fastrl.training.collector import RateLimiter
    from fastrl.config import with_overrides
    from fastrl.agents.presets import preset
    from fastrl.training.trainer import Trainer

    cfg = preset("dqn", env_id)
    over: dict = {"seed": seed, "concurrent": concurrent, **extra}
    if not learn:
        over.update(total_steps=steps, solved_threshold=None, eval_every=0, checkpoint_every=0,
                    eval_episodes=1, save_buffer=False)
    cfg = with_overrides(cfg, over)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        t = Trainer(cfg, run_dir=d, progress=False, tensorboard=False)
        try:
            r = t.train()
        finally:
            t.close()
        wall = time.perf_counter() - t0
        lags = [float(x.split(",")[3]) for x in open(f"{d}/metrics.csv").read().splitlines()[1:]
                if ",perf/update_lag," in x]
    lim = RateLimiter.from_config(cfg)
    out = {"mode": "concurrent" if concurrent else "sequential", "env": env_id, "seed": seed,
           "env_steps": r.env_steps, "train_seconds": round(r.train_seconds, 2), "wall": round(wall, 2),
           "sps": round(r.sps, 1), "updates": t.agent.updates, "updates_due": lim.updates_due(t.iterations)}
    out.update({k: round(v, 2) for k, v in t.concurrent_stats.items()})
    if lags:
        out.update(lag_max=max(lags), lag_mean=round(sum(lags) / len(lags), 1),
                   lag_bound=lim.updates_due(lim.first_phase + lim.ahead))
    if learn:
        first = r.first_reaching(475.0)
        out.update(solved=r.solved, final_eval=r.final_eval, first_475=first["step"] if first else None,
                   seconds_to_475=round(first["train_seconds"], 2) if first else None)
    return out


def sb3_run(env_id: str, steps: int, seed: int) -> dict:
    import torch
    from stable_baselines3 import DQN

    from fastrl.agents.presets import preset

    torch.set_num_threads(1)
    c = preset("dqn", env_id)
    model = DQN("MlpPolicy", env_id, learning_rate=c.learning_rate, buffer_size=c.buffer_size,
                learning_starts=c.learning_starts, batch_size=c.batch_size, gamma=c.gamma,
                train_freq=c.train_freq, gradient_steps=c.gradient_steps,
                target_update_interval=c.target_update_interval * c.train_freq // max(c.gradient_steps, 1),
                tau=c.tau, exploration_fraction=c.epsilon_duration / steps if c.epsilon_unit == "step" else 0.1,
                exploration_final_eps=c.epsilon_end, max_grad_norm=c.max_grad_norm,
                policy_kwargs={"net_arch": list(c.hidden_sizes)}, seed=seed, device="cpu", verbose=0)
    t0 = time.perf_counter()
    model.learn(steps)
    dt = time.perf_counter() - t0
    return {"mode": "sb3", "env": env_id, "seed": seed, "env_steps": steps, "train_seconds": round(dt, 2),
            "sps": round(steps / dt, 1)}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["fastrl", "sb3", "learn"])
    p.add_argument("env_id")
    p.add_argument("steps", type=int)
    p.add_argument("--concurrent", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[])
    a = p.parse_args()
    extra = dict(kv.split("=", 1) for kv in a.set)
    if a.what == "sb3":
        print(json.dumps(sb3_run(a.env_id, a.steps, a.seed)))
    else:
        print(json.dumps(fastrl_run(a.env_id, a.steps, a.concurrent, a.seed, a.what == "learn", **extra)))
