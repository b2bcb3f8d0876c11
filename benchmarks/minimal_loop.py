"""The practical floor of fastrl's training loop: DQN and DDPG written out as single functions,
CleanRL-style, with no trainer (issue 15).

Each function takes the config the Trainer takes (``fastrl.agents.preset("dqn", "CartPole-v1")``)
and does exactly the work the Trainer does per env step, nothing else: the same vector env
(SAME_STEP autoreset, true final observations), the same exploration draws from a numpy
Generator, the same replay calls (``ReplayBuffer.from_env``, ``extend``, ``sample``) and the same
update, inline, with the agents' networks and lean ops (fastrl.agents.nets). No logging, no
evaluation, no checkpoints. Seeded as the Trainer seeds (one SeedSequence for torch, the buffer and
exploration), a run reproduces the Trainer's bit for bit: benchmarks/bench_throughput.py checks
that the final weights are equal, so the two loops are known to do the same work.

Options the presets do not use and this file does not write out are rejected (prioritized
replay, SAIL, dueling heads, prefetch; TD3's twin critics, delay and target noise; OU noise).

    python benchmarks/minimal_loop.py [--algo dqn] [--env CartPole-v1] [--steps 60000]
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from fastrl.agents.nets import (
    Actor,
    Critic,
    QNetwork,
    adam,
    clear_grads_,
    clip_grads_,
    polyak_,
    step_,
)
from fastrl.replay.buffer import ReplayBuffer
from fastrl.replay.spaces import final_observations
from fastrl.training.envs import make_vec_env

CPU = torch.device("cpu")


class MinimalRun(NamedTuple):
    train_seconds: float  # the loop alone (setup excluded, as in TrainResult.train_seconds)
    env_steps: int
    updates: int
    returns: list[float]  # episodic returns, in the order the episodes ended
    params: list[torch.Tensor]  # the online networks' parameters at the end


def _setup(cfg: Any) -> tuple[list[int], Any]:
    """The Trainer's seeding (torch, buffer, exploration streams from one SeedSequence) and env."""
    if cfg.device != "cpu" or cfg.concurrent:
        raise ValueError("minimal_loop: device='cpu' and concurrent=False only")
    seeds = [int(x) for x in np.random.SeedSequence(cfg.seed).generate_state(3, dtype=np.uint64)]
    torch.manual_seed(seeds[0] & (2**63 - 1))
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    envs = make_vec_env(cfg.env_id, cfg.num_envs, cfg.vector_mode, cfg.max_episode_steps, cfg.frame_stack)
    return seeds, envs


def _schedule(kind: str, start: float, end: float, duration: int, decay: float = 1.0):
    """Epsilon or noise scale as a function of t (the formulas of fastrl.schedules.Schedule)."""
    if kind == "constant":
        return lambda t: start
    if kind == "linear":
        return lambda t: start + min(1.0, t / duration) * (end - start)
    return lambda t: max(end, start * decay**t)


def dqn(cfg: Any) -> MinimalRun:
    """DQN as fastrl's DQN agent does it: epsilon-greedy, Double DQN and n-step targets as
    configured, Huber or MSE loss, gradient-norm clipping, hard or Polyak target updates."""
    if cfg.dueling or cfg.prioritized or cfg.sail or cfg.prefetch or cfg.clip_grad_value or cfg.cuda_graph:
        raise ValueError("minimal_loop.dqn: plain DQN only (no dueling, PER, SAIL, prefetch, value clipping)")
    seeds, envs = _setup(cfg)
    n, n_actions = cfg.num_envs, int(envs.single_action_space.n)
    if cfg.network == "cnn" or envs.single_observation_space.dtype == np.uint8:
        envs.close()
        raise ValueError("minimal_loop.dqn: vector observations and the MLP only")
    q = QNetwork(envs.single_observation_space.shape, n_actions, cfg.hidden_sizes)
    q_target = copy.deepcopy(q).requires_grad_(False)
    params, target_params = list(q.parameters()), list(q_target.parameters())
    optimizer = adam(params, cfg.learning_rate, cfg.adam_eps, CPU)
    rng = np.random.default_rng(seeds[2])
    buffer = ReplayBuffer.from_env(envs, cfg.buffer_size, seed=seeds[1])
    n_step = {"n_step": cfg.n_step, "gamma": cfg.gamma} if cfg.n_step > 1 else {}
    epsilon = _schedule(cfg.epsilon_schedule, cfg.epsilon_start, cfg.epsilon_end, cfg.epsilon_duration,
                        cfg.epsilon_decay)
    per_episode = cfg.epsilon_unit == "episode"
    obs, _ = envs.reset(seed=cfg.seed)
    step = iteration = updates = 0
    ep_return, returns = np.zeros(n), []

    t0 = time.perf_counter()
    while step < cfg.total_steps:
        # act: uniform during the burn-in, then epsilon-greedy
        if step < cfg.learning_starts:
            actions = rng.integers(n_actions, size=n)
        else:
            random_mask = rng.random(n) < epsilon(len(returns) if per_episode else step)
            actions = rng.integers(n_actions, size=n)
            if not random_mask.all():
                with torch.inference_mode():
                    greedy = q(torch.as_tensor(obs)).argmax(dim=1).numpy()
                actions = np.where(random_mask, actions, greedy) if random_mask.any() else greedy
        # step the envs, store the transition with the true final observations
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        buffer.extend(obs, actions, rewards, final_observations(next_obs, terminated, truncated, infos),
                      terminated, truncated)
        obs = next_obs
        step, iteration = step + n, iteration + 1
        ep_return += rewards
        done = terminated | truncated
        if done.any():
            returns += ep_return[done].tolist()
            ep_return[done] = 0.0
        if step < cfg.learning_starts or iteration % cfg.train_freq:
            continue
        # learn: gradient_steps updates on uniform batches
        for _ in range(cfg.gradient_steps):
            b = buffer.sample(cfg.batch_size, device=CPU, **n_step)
            q_obs = q(b.observations)
            with torch.no_grad():
                if cfg.double_dqn:  # the online net at s', without autograd (as DQN._learn)
                    q_next_online = q(b.next_observations)
                q_next_target = q_target(b.next_observations)
                a_star = (q_next_online if cfg.double_dqn else q_next_target).argmax(dim=1, keepdim=True)
                q_next = q_next_target.gather(1, a_star).squeeze(1)
                discount = b.discounts if b.discounts is not None else cfg.gamma
                y = b.rewards.float() + discount * q_next.masked_fill_(b.terminated, 0.0)
            q_sa = q_obs.gather(1, b.actions.long().view(-1, 1)).squeeze(1)
            if cfg.loss == "huber":
                loss = F.smooth_l1_loss(q_sa, y, reduction="none").mean()
            else:
                loss = (q_sa - y).square().mean()
            clear_grads_(optimizer)
            loss.backward()
            clip_grads_(params, cfg.max_grad_norm)
            step_(optimizer)
            updates += 1
            if updates % cfg.target_update_interval == 0:
                polyak_(target_params, params, cfg.tau)
    seconds = time.perf_counter() - t0
    envs.close()
    return MinimalRun(seconds, step, updates, returns, params)


def ddpg(cfg: Any) -> MinimalRun:
    """DDPG as fastrl's DDPG agent does it: Gaussian exploration noise in [-1, 1], one critic,
    an actor step after every critic step, Polyak targets; TD3's options must be off."""
    if cfg.twin_critics or cfg.policy_delay != 1 or cfg.target_policy_noise > 0 or cfg.noise != "gaussian" \
            or cfg.n_step != 1 or cfg.prefetch:
        raise ValueError("minimal_loop.ddpg: plain DDPG with Gaussian noise and 1-step targets only")
    seeds, envs = _setup(cfg)
    n, space = cfg.num_envs, envs.single_action_space
    obs_shape, act_dim = envs.single_observation_space.shape, space.shape[0]
    actor = Actor(obs_shape, act_dim, cfg.actor_hidden_sizes, cfg.final_layer_init)
    critic = Critic(obs_shape, act_dim, cfg.critic_hidden_sizes, 1, cfg.final_layer_init)
    actor_target = copy.deepcopy(actor).requires_grad_(False)
    critic_target = copy.deepcopy(critic).requires_grad_(False)
    actor_params, critic_params = list(actor.parameters()), list(critic.parameters())
    online = actor_params + critic_params
    targets = list(actor_target.parameters()) + list(critic_target.parameters())
    actor_optimizer = adam(actor_params, cfg.actor_learning_rate, 1e-8, CPU)
    critic_optimizer = adam(critic_params, cfg.critic_learning_rate, 1e-8, CPU)
    rng = np.random.default_rng(seeds[2])
    buffer = ReplayBuffer.from_env(envs, cfg.buffer_size, seed=seeds[1])
    # the networks work in [-1, 1]; the env and the buffer in the env's bounds
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    center, half = (high + low) / 2, (high - low) / 2
    center_t, half_t = torch.tensor(center, dtype=torch.float32), torch.tensor(half, dtype=torch.float32)
    end = cfg.noise_sigma if cfg.noise_sigma_end is None else cfg.noise_sigma_end
    sigma = _schedule("constant" if cfg.noise_sigma_end is None else "linear", cfg.noise_sigma, end,
                      cfg.noise_decay_steps)
    obs, _ = envs.reset(seed=cfg.seed)
    step = iteration = updates = 0
    ep_return, returns = np.zeros(n), []

    t0 = time.perf_counter()
    while step < cfg.total_steps:
        # act: uniform during the burn-in, then the actor plus Gaussian noise, clipped
        if step < cfg.learning_starts:
            a = rng.uniform(-1.0, 1.0, size=(n, act_dim))
        else:
            with torch.inference_mode():
                a = actor(torch.as_tensor(obs)).numpy()
            noise = (sigma(step) * rng.standard_normal((n, act_dim))).astype(np.float32)
            a = np.clip(a + noise, -1.0, 1.0)
        actions = (center + half * np.asarray(a, dtype=np.float64)).astype(np.float32)
        # step the envs, store the transition with the true final observations
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        buffer.extend(obs, actions, rewards, final_observations(next_obs, terminated, truncated, infos),
                      terminated, truncated)
        obs = next_obs
        step, iteration = step + n, iteration + 1
        ep_return += rewards
        done = terminated | truncated
        if done.any():
            returns += ep_return[done].tolist()
            ep_return[done] = 0.0
        if step < cfg.learning_starts or iteration % cfg.train_freq:
            continue
        # learn: a critic step, an actor step, a Polyak step of both targets
        for _ in range(cfg.gradient_steps):
            b = buffer.sample(cfg.batch_size, device=CPU)
            with torch.no_grad():
                q_next = critic_target(b.next_observations, actor_target(b.next_observations)).min(dim=0).values
                y = b.rewards.float() + cfg.gamma * q_next.masked_fill_(b.terminated, 0.0)
            q = critic(b.observations, (b.actions.float().view(-1, act_dim) - center_t) / half_t)
            critic_loss = (q - y).square().sum(dim=0).mean()
            clear_grads_(critic_optimizer)
            critic_loss.backward()
            clip_grads_(critic_params, cfg.max_grad_norm)
            step_(critic_optimizer)
            actor_loss = -critic.q1(b.observations, actor(b.observations)).mean()
            clear_grads_(actor_optimizer)
            actor_loss.backward(inputs=actor_params)
            clip_grads_(actor_params, cfg.max_grad_norm)
            step_(actor_optimizer)
            polyak_(targets, online, cfg.tau)
            updates += 1
    seconds = time.perf_counter() - t0
    envs.close()
    return MinimalRun(seconds, step, updates, returns, online)


def main(argv: list[str] | None = None) -> None:
    from fastrl.agents.presets import preset
    from fastrl.config import with_overrides

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", choices=("dqn", "ddpg"), default="dqn")
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--steps", type=int, default=None, help="total env steps (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    over: dict[str, Any] = {"seed": args.seed, "device": "cpu"}
    if args.steps:
        over["total_steps"] = args.steps
    cfg = with_overrides(preset(args.algo, args.env), over)
    run = (dqn if args.algo == "dqn" else ddpg)(cfg)
    last = run.returns[-20:]
    print(f"{cfg.env_id} {args.algo}: {run.env_steps} env steps, {run.updates} updates in {run.train_seconds:.1f} s "
          f"({run.train_seconds / run.env_steps * 1e6:.0f} us per env step); {len(run.returns)} episodes, "
          f"mean return of the last {len(last)}: {np.mean(last) if last else float('nan'):.1f}")


if __name__ == "__main__":
    main()
