"""Training throughput against two floors (issues 8 and 15), all measured in one run.

The practical floor (issue 15) is benchmarks/minimal_loop.py: the same env, exploration draws,
replay calls and update as fastrl's Trainer, written as one CleanRL-style function per algorithm
with no trainer around it (seeded alike, it ends with the Trainer's weights bit for bit; checked
here). For each setting the minimal loop and the Trainer run alternately `--repeats` times; the
table gives medians of their time per env step and the ratio Trainer / minimal loop, with the
target check (<= 1.15x, the issue-15 target for the three presets).

The sum-of-parts floor (issue 8) measures, on one thread:
  floor/update  one bare update in a tight loop: the setting's own math written out by hand
                (DQN: forward, Huber/MSE loss, backward, gradient clipping, Adam, target update;
                DDPG: critic step, actor step, Polyak targets) with the cheapest ops fastrl knows
                (fastrl.agents.nets: the fused Adam kernel called directly, grads cleared and clipped
                without torch.optim's Python wrappers), on fixed tensors (no replay sampling),
  floor/act     one bare action (forward on one observation under inference_mode),
  floor/env     one bare env.step with random actions (no vector env),
and the floor per env step = env + act + updates_per_step * update. Stable-Baselines3 (when
installed, unless --no-sb3) runs at the same settings, alternating with the others.

Rows: fastrl's DQN presets (CartPole-v1, LunarLander-v3), the DDPG preset (Pendulum-v1), and
RL-Zoo's LunarLander DQN setting run by both libraries with the same algorithm (1-step targets,
no Double DQN, Huber loss, hard target copies every 250 steps, 256x256, batch 128, one update per
env step). CleanRL is not run: its PyPI release (0.4.8) needs gym, not gymnasium.

    python benchmarks/bench_throughput.py [--steps 10000] [--repeats 3] [--no-sb3] [--only NAME] [--concurrent]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from fastrl.config import with_overrides
from fastrl.agents.nets import Actor, Critic, adam, clear_grads_, clip_grads_, mlp, step_
from fastrl.agents.presets import preset
from fastrl.training.trainer import Trainer

import minimal_loop  # benchmarks/, beside this file

torch.set_num_threads(1)


@dataclass
class Setting:
    label: str
    algo: str
    env_id: str
    overrides: dict[str, Any] = field(default_factory=dict)  # on top of the preset


# RL-Zoo's LunarLander-v3 DQN (rl-baselines3-zoo hyperparams/dqn.yml), as both libraries run it
RL_ZOO_LUNAR = dict(hidden_sizes=(256, 256), batch_size=128, buffer_size=50_000, learning_rate=6.3e-4,
                    learning_starts=0, train_freq=4, gradient_steps=4, target_update_interval=250, tau=1.0,
                    double_dqn=False, n_step=1, loss="huber", max_grad_norm=10.0, gamma=0.99,
                    epsilon_start=1.0, epsilon_end=0.1, epsilon_schedule="linear")

SETTINGS = [
    Setting("CartPole DQN preset", "dqn", "CartPole-v1"),
    Setting("LunarLander DQN pre.", "dqn", "LunarLander-v3"),
    Setting("Pendulum DDPG preset", "ddpg", "Pendulum-v1"),
    Setting("LunarLander RL-Zoo", "dqn", "LunarLander-v3", RL_ZOO_LUNAR),
]


def config(s: Setting, steps: int) -> Any:
    """The setting's config for a run of `steps`: no evaluation, checkpoints or early stop; DQN's
    epsilon decays over the first 12% of the steps (SB3's exploration_fraction here too)."""
    over = {**s.overrides, "total_steps": steps, "eval_every": 0, "solved_threshold": None,
            "checkpoint_every": 0, "log_every": 5000, "device": "cpu"}
    if s.algo == "dqn":
        over["epsilon_duration"] = int(0.12 * steps)
    return with_overrides(preset(s.algo, s.env_id), over)


def median_time(fn, n, repeats=5):
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t0) / n)
    return statistics.median(out)


def dqn_floor_update(cfg: Any, obs_dim: int, n_act: int):
    hidden, batch = tuple(cfg.hidden_sizes), cfg.batch_size
    q, q_t = mlp(obs_dim, hidden, n_act), mlp(obs_dim, hidden, n_act)
    params, t_params = list(q.parameters()), list(q_t.parameters())
    opt = adam(params, cfg.learning_rate, cfg.adam_eps, torch.device("cpu"))
    o, o2 = torch.randn(batch, obs_dim), torch.randn(batch, obs_dim)
    a = torch.randint(0, n_act, (batch,))
    r, d = torch.randn(batch), torch.zeros(batch)
    loss_fn = F.mse_loss if cfg.loss == "mse" else F.smooth_l1_loss
    polyak = cfg.tau < 1.0 and cfg.target_update_interval == 1
    gamma = cfg.gamma ** cfg.n_step
    count = [0]

    def update():
        q_sa = q(o).gather(1, a[:, None]).squeeze(1)
        with torch.no_grad():
            q_next = q_t(o2)
            if cfg.double_dqn:
                q_next = q_next.gather(1, q(o2).argmax(1, keepdim=True)).squeeze(1)
            else:
                q_next = q_next.max(1).values
            y = r + gamma * (1 - d) * q_next
        loss = loss_fn(q_sa, y)
        clear_grads_(opt)
        loss.backward()
        clip_grads_(params, cfg.max_grad_norm)
        step_(opt)
        count[0] += 1
        with torch.no_grad():
            if polyak:
                torch._foreach_lerp_(t_params, params, cfg.tau)
            elif count[0] % cfg.target_update_interval == 0:
                torch._foreach_copy_(t_params, params)

    def act(one=torch.randn(1, obs_dim)):
        with torch.inference_mode():
            return int(q(one).argmax())

    return update, act


def ddpg_floor_update(cfg: Any, obs_dim: int, act_dim: int):
    batch = cfg.batch_size
    actor, actor_t = Actor((obs_dim,), act_dim, cfg.actor_hidden_sizes), Actor((obs_dim,), act_dim, cfg.actor_hidden_sizes)
    critic, critic_t = (Critic((obs_dim,), act_dim, cfg.critic_hidden_sizes, n_critics=1),
                        Critic((obs_dim,), act_dim, cfg.critic_hidden_sizes, n_critics=1))
    a_params, c_params = list(actor.parameters()), list(critic.parameters())
    online, target = a_params + c_params, list(actor_t.parameters()) + list(critic_t.parameters())
    a_opt = adam(a_params, cfg.actor_learning_rate, 1e-8, torch.device("cpu"))
    c_opt = adam(c_params, cfg.critic_learning_rate, 1e-8, torch.device("cpu"))
    o, o2 = torch.randn(batch, obs_dim), torch.randn(batch, obs_dim)
    a = torch.rand(batch, act_dim) * 2 - 1
    r, d = torch.randn(batch), torch.zeros(batch)

    def update():
        with torch.no_grad():
            y = r + cfg.gamma * (1 - d) * critic_t.q1(o2, actor_t(o2))
        c_loss = F.mse_loss(critic.q1(o, a), y)
        clear_grads_(c_opt)
        c_loss.backward()
        clip_grads_(c_params, cfg.max_grad_norm)
        step_(c_opt)
        a_loss = -critic.q1(o, actor(o)).mean()
        clear_grads_(a_opt)
        a_loss.backward(inputs=a_params)
        clip_grads_(a_params, cfg.max_grad_norm)
        step_(a_opt)
        with torch.no_grad():
            torch._foreach_lerp_(target, online, cfg.tau)

    def act(one=torch.randn(1, obs_dim)):
        with torch.inference_mode():
            return actor(one).numpy()

    return update, act


def floor(s: Setting, cfg: Any) -> dict[str, float]:
    env = gym.make(s.env_id)
    obs_dim = env.observation_space.shape[0]
    if s.algo == "dqn":
        update, act = dqn_floor_update(cfg, obs_dim, env.action_space.n)
    else:
        update, act = ddpg_floor_update(cfg, obs_dim, env.action_space.shape[0])
    env.reset(seed=0)
    space = env.action_space
    space.seed(0)

    def step():
        _, _, term, trunc, _ = env.step(space.sample())
        if term or trunc:
            env.reset()

    for f in (update, act, step):
        for _ in range(20):
            f()
    return {"update": median_time(update, 200), "act": median_time(act, 2000), "env": median_time(step, 2000)}


TARGET = 1.15  # issue 15: the Trainer's time per env step at most this times the minimal loop's


def run_fastrl(cfg: Any, algo: str, concurrent: bool = False) -> tuple[float, float, list[torch.Tensor]]:
    """(seconds per env step, updates per env step, the online parameters at the end) of one
    training run; with ``concurrent`` a collector process steps the envs (its start-up,
    importing torch, is not counted)."""
    if concurrent:
        cfg = with_overrides(cfg, {"concurrent": True})
    with tempfile.TemporaryDirectory() as d:
        t = Trainer(cfg, algo=algo, run_dir=d, progress=False, tensorboard=False)
        r = t.train()
        t.close()
    params = list(t.agent.q.parameters()) if algo == "dqn" else t.agent._online
    return r.train_seconds / r.env_steps, t.agent.updates / r.env_steps, params


def run_minimal(cfg: Any, algo: str) -> tuple[float, list[torch.Tensor]]:
    """(seconds per env step, the online parameters at the end) of one minimal-loop run."""
    run = (minimal_loop.dqn if algo == "dqn" else minimal_loop.ddpg)(cfg)
    return run.train_seconds / run.env_steps, run.params


def run_sb3(s: Setting, cfg: Any, steps: int) -> float:
    env = gym.make(s.env_id)
    common = dict(learning_starts=cfg.learning_starts, batch_size=cfg.batch_size, buffer_size=cfg.buffer_size,
                  train_freq=cfg.train_freq, gradient_steps=cfg.gradient_steps, gamma=cfg.gamma, seed=0,
                  device="cpu", verbose=0)
    if s.algo == "dqn":
        from stable_baselines3 import DQN

        model = DQN("MlpPolicy", env, learning_rate=cfg.learning_rate, target_update_interval=cfg.target_update_interval,
                    tau=cfg.tau, max_grad_norm=cfg.max_grad_norm or 1e9, exploration_fraction=0.12,
                    exploration_final_eps=cfg.epsilon_end, policy_kwargs=dict(net_arch=list(cfg.hidden_sizes)),
                    **common)
    else:
        from stable_baselines3 import DDPG
        from stable_baselines3.common.noise import NormalActionNoise

        n = env.action_space.shape[0]
        model = DDPG("MlpPolicy", env, learning_rate=cfg.actor_learning_rate, tau=cfg.tau,
                     action_noise=NormalActionNoise(np.zeros(n), 0.1 * np.ones(n)),
                     policy_kwargs=dict(net_arch=list(cfg.actor_hidden_sizes)), **common)
    t0 = time.perf_counter()
    model.learn(steps)
    return (time.perf_counter() - t0) / steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-sb3", action="store_true")
    p.add_argument("--only", nargs="*", default=None, help="labels (substrings) of the settings to run")
    p.add_argument("--concurrent", action="store_true",
                   help="also run fastrl with concurrent=true (both cores: a collector process)")
    args = p.parse_args(argv)
    try:
        import stable_baselines3  # noqa: F401
        sb3 = not args.no_sb3
    except ImportError:
        sb3 = False
    print(f"torch {torch.__version__}, 1 thread, {os.cpu_count()} CPUs, {args.steps} env steps per run, "
          f"medians of {args.repeats} runs; us per env step; load {os.getloadavg()[0]:.2f}")
    head = f"{'setting':<22}{'upd/step':>9}{'update':>8}{'act':>6}{'env':>6}{'floor':>7}" \
           f"{'minimal':>8}{'fastrl':>8}{'>floor':>8}{'fastrl/min':>11}{'<= 1.15x':>10}" \
           + (f"{'sb3':>8}{'>floor':>8}{'sb3/fastrl':>11}" if sb3 else "") \
           + (f"{'2-core':>8}{'sb3/2-core':>11}" if args.concurrent else "")
    print(head)
    mismatched = []
    for s in SETTINGS:
        if args.only and not any(o.lower() in s.label.lower() for o in args.only):
            continue
        cfg = config(s, args.steps)
        fl = floor(s, cfg)
        mr, fr, sr, cr = [], [], [], []
        for _ in range(args.repeats):  # alternate, so that load hits all alike
            sec, min_params = run_minimal(cfg, s.algo)
            mr.append(sec)
            sec, ups, params = run_fastrl(cfg, s.algo)
            fr.append(sec)
            if not all(torch.equal(a, b) for a, b in zip(min_params, params)):
                mismatched.append(s.label)
            if sb3:
                sr.append(run_sb3(s, cfg, args.steps))
            if args.concurrent:
                cr.append(run_fastrl(cfg, s.algo, concurrent=True)[0])
        m, f = statistics.median(mr), statistics.median(fr)
        # the updates the run made per env step (none during the learning_starts burn-in); SB3
        # makes the same number at these settings
        per_step = fl["env"] + fl["act"] + ups * fl["update"]
        row = (f"{s.label:<22}{ups:>9.2f}{fl['update'] * 1e6:>8.0f}{fl['act'] * 1e6:>6.0f}{fl['env'] * 1e6:>6.0f}"
               f"{per_step * 1e6:>7.0f}{m * 1e6:>8.0f}{f * 1e6:>8.0f}{(f / per_step - 1) * 100:>7.0f}%"
               f"{f / m:>10.3f}x{'MET' if f / m <= TARGET else 'NOT MET':>10}")
        if sb3:
            sm = statistics.median(sr)
            row += f"{sm * 1e6:>8.0f}{(sm / per_step - 1) * 100:>7.0f}%{sm / f:>10.2f}x"
        if args.concurrent:
            c = statistics.median(cr)
            row += f"{c * 1e6:>8.0f}" + (f"{sm / c:>10.2f}x" if sb3 else "")
        print(row, flush=True)
    print("\nupd/step: updates per env step made in the run (the burn-in has none); floor = env + act +"
          "\nupd/step x update, each timed bare; >floor: time per env step above it; minimal: the minimal"
          "\nloop (benchmarks/minimal_loop.py); fastrl/min: the Trainer's time per env step / the minimal"
          "\nloop's, checked against the issue-15 target (<= 1.15x);"
          "\nsb3/fastrl = SB3's time per env step / fastrl's (higher: fastrl faster); 2-core: fastrl with"
          "\nconcurrent=true (a collector process; its start-up not counted); load "
          f"{os.getloadavg()[0]:.2f} at the end")
    if mismatched:
        raise SystemExit(f"the minimal loop and the Trainer ended with different weights: {sorted(set(mismatched))}")
    print("minimal loop and Trainer ended with bit-identical weights in every run")

if __name__ == "__main__":
    main()
