"""Training throughput against the compute floor (issue 8), all measured in one run.

For each setting (network, batch size, updates per env step) it measures, on one thread:
  floor/update  one bare DQN update in a tight loop (forward, loss, backward, fused Adam step),
  floor/act     one bare greedy action (forward on one observation under inference_mode),
  floor/env     one bare env.step with random actions,
and the floor per env step = env + act + updates_per_step * update. Then it runs fastrl's full
training loop and (when installed) Stable-Baselines3's DQN at the same settings and reports each
library's time per env step and its overhead above the floor.

    python benchmarks/bench_throughput.py [--steps 20000] [--no-sb3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from fastrl.config import with_overrides
from fastrl.nets import mlp
from fastrl.presets import preset
from fastrl.trainer import Trainer

torch.set_num_threads(1)

# (label, env, hidden, batch, train_freq, gradient_steps): fastrl's presets, and SB3 RL-Zoo's
# LunarLander setting (256x256, batch 128, one update every 4 steps)
SETTINGS = [
    ("CartPole preset", "CartPole-v1", (64, 64), 64, 256, 128),
    ("LunarLander preset", "LunarLander-v3", (128, 128), 64, 2, 1),
    ("LunarLander RL-Zoo", "LunarLander-v3", (256, 256), 128, 4, 4),
]


def median_time(fn, n, repeats=5):
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t0) / n)
    return statistics.median(out)


def floor(env_id, hidden, batch):
    """Bare costs with the preset's own algorithm: Double DQN, loss, gradient clipping and Polyak
    target updates when the preset uses them (so the floor is the math, not a simpler method)."""
    cfg = preset("dqn", env_id)
    env = gym.make(env_id)
    obs_dim, n_act = env.observation_space.shape[0], env.action_space.n
    q, q_t = mlp(obs_dim, hidden, n_act), mlp(obs_dim, hidden, n_act)
    params, t_params = list(q.parameters()), list(q_t.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, fused=True)
    o = torch.randn(batch, obs_dim)
    a = torch.randint(0, n_act, (batch,))
    r = torch.randn(batch)
    o2 = torch.randn(batch, obs_dim)
    d = torch.zeros(batch)
    loss_fn = F.mse_loss if cfg.loss == "mse" else F.smooth_l1_loss
    polyak = cfg.tau < 1.0 and cfg.target_update_interval == 1

    def update():
        if cfg.double_dqn:
            q_all = q(torch.cat([o, o2]))
            q_sa = q_all[:batch].gather(1, a[:, None]).squeeze(1)
            with torch.no_grad():
                a2 = q_all[batch:].argmax(1, keepdim=True)
                y = r + 0.99 * (1 - d) * q_t(o2).gather(1, a2).squeeze(1)
        else:
            q_sa = q(o).gather(1, a[:, None]).squeeze(1)
            with torch.no_grad():
                y = r + 0.99 * (1 - d) * q_t(o2).max(1).values
        loss = loss_fn(q_sa, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm, foreach=True)
        opt.step()
        if polyak:
            with torch.no_grad():
                torch._foreach_lerp_(t_params, params, cfg.tau)

    one = torch.randn(1, obs_dim)

    def act():
        with torch.inference_mode():
            return int(q(one).argmax())

    env.reset(seed=0)
    space = env.action_space
    space.seed(0)

    def step():
        _, _, term, trunc, _ = env.step(space.sample())
        if term or trunc:
            env.reset()

    for f in (update, act, step):
        f()
    return {"update": median_time(update, 300), "act": median_time(act, 2000), "env": median_time(step, 2000)}


def run_fastrl(env_id, hidden, batch, train_freq, grad_steps, steps):
    cfg = with_overrides(preset("dqn", env_id), {
        "hidden_sizes": hidden, "batch_size": batch, "train_freq": train_freq, "gradient_steps": grad_steps,
        "total_steps": steps, "learning_starts": 1000, "eval_every": 0, "solved_threshold": None,
        "checkpoint_every": 0, "log_every": 5000, "device": "cpu"})
    with tempfile.TemporaryDirectory() as d:
        t = Trainer(cfg, run_dir=d, progress=False, tensorboard=False)
        t0 = time.perf_counter()
        r = t.train()
        wall = time.perf_counter() - t0
        t.close()
    return r.train_seconds / steps, wall / steps


def run_sb3(env_id, hidden, batch, train_freq, grad_steps, steps):
    from stable_baselines3 import DQN

    env = gym.make(env_id)
    model = DQN("MlpPolicy", env, learning_rate=1e-3, batch_size=batch, buffer_size=100_000, learning_starts=1000,
                train_freq=train_freq, gradient_steps=grad_steps, target_update_interval=250,
                policy_kwargs=dict(net_arch=list(hidden)), seed=0, device="cpu", verbose=0)
    t0 = time.perf_counter()
    model.learn(steps)
    return (time.perf_counter() - t0) / steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--no-sb3", action="store_true")
    args = p.parse_args(argv)
    try:
        import stable_baselines3  # noqa: F401
        sb3 = not args.no_sb3
    except ImportError:
        sb3 = False
    print(f"torch {torch.__version__}, 1 thread, {args.steps} env steps per run; us per env step")
    head = f"{'setting':<20}{'upd/step':>9}{'update':>9}{'act':>8}{'env':>8}{'floor':>9}" \
           f"{'fastrl':>9}{'overhead':>10}" + (f"{'sb3':>9}{'overhead':>10}{'fastrl/sb3':>11}" if sb3 else "")
    print(head)
    for label, env_id, hidden, batch, tf, gs in SETTINGS:
        fl = floor(env_id, hidden, batch)
        ups = gs / tf
        per_step = fl["env"] + fl["act"] + ups * fl["update"]
        fr, _ = run_fastrl(env_id, hidden, batch, tf, gs, args.steps)
        row = (f"{label:<20}{ups:>9.2f}{fl['update'] * 1e6:>9.0f}{fl['act'] * 1e6:>8.0f}{fl['env'] * 1e6:>8.0f}"
               f"{per_step * 1e6:>9.0f}{fr * 1e6:>9.0f}{(fr / per_step - 1) * 100:>9.0f}%")
        if sb3:
            s = run_sb3(env_id, hidden, batch, tf, gs, args.steps)
            row += f"{s * 1e6:>9.0f}{(s / per_step - 1) * 100:>9.0f}%{s / fr:>10.2f}x"
        print(row, flush=True)
    print("\noverhead = time per env step above the floor (env + act + updates per step x update);"
          "\nfastrl/sb3 = SB3's time per env step / fastrl's (higher: fastrl faster)")


if __name__ == "__main__":
    main()
