"""Tianshou 2.x's Rainbow and C51 on a gymnasium env at fastrl's settings, judged by fastrl's evaluator.

Run in an environment with tianshou installed (and fastrl importable), e.g.::

    /work/venv-ts/bin/python benchmarks/tianshou_baseline.py --algo rainbow --env CartPole-v1 --seed 0 \\
        --settings '{"total_steps": 20000, ...}' --eval-every 2000 --stop-at 475 --out result.json

``--settings`` holds fields of fastrl's DQNConfig (what ``dataclasses.asdict`` of a preset gives);
missing ones take the defaults of fastrl's ``rainbow`` / ``c51`` algorithm. Each is mapped to
Tianshou's equivalent; those Tianshou has none for are listed under ``"unmatched"`` in the output
(and in comments below), Tianshou behaviours worth knowing under ``"notes"``.

The loop is this script's (so evaluations land on exact multiples of ``--eval-every``) but every
piece of per-step work is Tianshou's own: ``Collector.collect`` (env stepping, epsilon-greedy,
buffer writes), ``Algorithm.update`` (PER sampling, n-step returns, the C51/Rainbow loss, noise
resampling, target syncs, priority updates, the optimizer step) and ``set_beta``. It mirrors
Tianshou's ``OffPolicyTrainer._training_step``: collect inside ``policy_within_training_step``,
then ``gradient_steps`` calls of ``algorithm.update(sample_size=batch_size, buffer=buffer)``.
Like fastrl's trainer: the first ``learning_starts`` steps are uniformly random, then
``gradient_steps`` updates after every ``train_freq`` env steps.

Evaluation: every ``--eval-every`` env steps fastrl's ``evaluate`` runs Tianshou's greedy policy
(eval mode, so noisy layers use their mean weights; epsilon 0) on 20 episodes, seeded as
bench_learning.py seeds SB3's; its wall and CPU time are left out of the training clock. The run
stops once an evaluation's mean reaches ``--stop-at`` or at ``total_steps`` (plus ``--extra-steps``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import tianshou
import torch
from tianshou.algorithm import C51, RainbowDQN
from tianshou.algorithm.modelfree.c51 import C51Policy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Batch, Collector, PrioritizedVectorReplayBuffer, VectorReplayBuffer
from tianshou.env import DummyVectorEnv
from tianshou.utils.net.common import MLP, Net
from tianshou.utils.net.discrete import NoisyLinear
from tianshou.utils.torch_utils import policy_within_training_step, torch_train_mode
from torch import nn

from fastrl.agents.registry import default_config
from fastrl.config import with_overrides
from fastrl.training.envs import evaluate, make_env

EVAL_EPISODES = 20


def eval_seed(seed: int, step: int) -> int:
    """The evaluation seed bench_learning.py uses for every library at env step ``step``."""
    return int(np.random.SeedSequence([seed, step, 7]).generate_state(1)[0]) % 2**31


class NoisyHeadNet(nn.Module):
    """fastrl's non-dueling noisy net (rainbow without dueling): a plain ReLU trunk of
    ``hidden_sizes[:-1]``, then a head of noisy layers: one hidden layer of ``hidden_sizes[-1]``
    units and the output, softmax over atoms. Built from Tianshou's ``MLP`` and ``NoisyLinear``
    (Tianshou's ``Net`` makes every layer noisy or none)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: list[int], atoms: int, sigma0: float) -> None:
        super().__init__()
        self.n_actions, self.atoms = n_actions, atoms
        self.trunk = MLP(input_dim=obs_dim, hidden_sizes=hidden[:-1])
        self.head = MLP(
            input_dim=self.trunk.output_dim,
            output_dim=n_actions * atoms,
            hidden_sizes=hidden[-1:],
            linear_layer=lambda i, o: NoisyLinear(i, o, sigma0),
        )

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> tuple[torch.Tensor, Any]:
        logits = self.head(self.trunk(obs)).view(-1, self.n_actions, self.atoms)
        return torch.softmax(logits, dim=-1), state


def build_net(cfg: Any, obs_dim: int, n_actions: int) -> nn.Module:
    """The network of fastrl's QNetwork for an MLP torso, from Tianshou's building blocks.

    - dueling: ``Net`` with a plain trunk of ``hidden_sizes[:-1]`` and value/advantage streams of one
      hidden layer of ``hidden_sizes[-1]`` units each (noisy layers in the streams with ``noisy``);
      Tianshou combines them as fastrl does (A - mean_a A + V per atom), softmax over atoms.
    - noisy without dueling: :class:`NoisyHeadNet`.
    - otherwise (plain C51): ``Net`` = MLP of ``hidden_sizes`` then a linear layer to
      ``n_actions * atoms``, softmax over atoms.
    """
    hidden = [int(h) for h in cfg.hidden_sizes]
    atoms = int(cfg.atoms)
    if cfg.dueling:
        linear: Any = (lambda i, o: NoisyLinear(i, o, cfg.noisy_sigma0)) if cfg.noisy else nn.Linear
        stream = {"hidden_sizes": hidden[-1:], "linear_layer": linear}
        return Net(
            state_shape=obs_dim,
            action_shape=n_actions,
            hidden_sizes=hidden[:-1],
            softmax=True,
            num_atoms=atoms,
            dueling_param=(stream, dict(stream)),
        )
    if cfg.noisy:
        return NoisyHeadNet(obs_dim, n_actions, hidden, atoms, cfg.noisy_sigma0)
    return Net(state_shape=obs_dim, action_shape=n_actions, hidden_sizes=hidden, softmax=True, num_atoms=atoms)


def mapping(cfg: Any, algo: str, noisy_collect: bool = False) -> tuple[int, list[str], list[str]]:
    """Tianshou's target_update_freq for ``cfg``, the settings Tianshou cannot match, and notes."""
    unmatched: list[str] = []
    notes: list[str] = []
    if cfg.distributional != "c51" or cfg.munchausen or cfg.sail:
        raise SystemExit(
            f"tianshou_baseline: only C51-style heads are mapped (got distributional={cfg.distributional!r}, "
            f"munchausen={cfg.munchausen}, sail={cfg.sail})"
        )
    if algo == "rainbow" and not (cfg.noisy and cfg.prioritized):
        notes.append(f"rainbow with noisy={cfg.noisy}, prioritized={cfg.prioritized} as given")
    # Target network: Tianshou's DQN family (QLearningOffPolicyAlgorithm, with the
    # LaggedNetworkFullUpdateAlgorithmMixin) only copies the online net fully every
    # target_update_freq updates; it has no Polyak averaging for C51/RainbowDQN.
    interval = max(1, int(cfg.target_update_interval))
    if cfg.tau < 1.0:
        freq = max(1, round(interval / cfg.tau))
        unmatched.append(
            f"tau={cfg.tau} (Polyak every {interval} gradient steps): Tianshou's C51/RainbowDQN only do "
            f"hard target copies; used a hard copy every target_update_interval/tau = {freq} gradient steps"
        )
    else:
        freq = interval
    # Tianshou's C51 (and so RainbowDQN) always picks the next action with the online net and
    # takes its distribution from the target net (double DQN); there is no switch.
    if not cfg.double_dqn:
        unmatched.append("double_dqn=False: Tianshou's C51/RainbowDQN always use the double-DQN target")
    if cfg.clip_grad_value > 0:
        unmatched.append(f"clip_grad_value={cfg.clip_grad_value}: Tianshou has no per-value gradient clipping")
    if cfg.num_envs != 1:
        unmatched.append(f"num_envs={cfg.num_envs}: this baseline always uses one env")
    if cfg.prioritized:
        # Tianshou: priority = |loss| + float32 eps (~1.2e-7), fixed; fastrl adds per_eps.
        if cfg.per_eps != np.finfo(np.float32).eps:
            unmatched.append(
                f"per_eps={cfg.per_eps}: Tianshou's PER adds its fixed float32 eps "
                f"({np.finfo(np.float32).eps:.3g}) to |priority|"
            )
    if cfg.max_grad_norm > 0:
        notes.append(
            f"max_grad_norm={cfg.max_grad_norm}: Tianshou's Algorithm.Optimizer clips by norm, but C51/RainbowDQN's "
            "constructors don't expose it; set on algorithm.optim._max_grad_norm (Tianshou's own clipping code)"
        )
    if cfg.train_freq > 1:
        notes.append(
            f"epsilon is set before each collect call of train_freq={cfg.train_freq} env steps (fastrl: every step)"
        )
    if cfg.noisy and not noisy_collect:
        notes.append(
            "Tianshou's Collector.collect runs the policy in eval mode (torch_train_mode(policy, False)) and "
            "NoisyLinear only adds noise in train mode: collected actions use the mean weights, so the noisy "
            "layers do not explore in Tianshou 2.x; noise acts only in the updates (new noise for the online and "
            "target nets before each gradient step)"
        )
    return freq, unmatched, notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--algo", choices=("rainbow", "c51"), required=True)
    ap.add_argument("--env", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--settings", default="{}", help="JSON object of fastrl DQNConfig fields")
    ap.add_argument("--eval-every", type=int, default=5000)
    ap.add_argument("--stop-at", default="none", help="stop once an evaluation's mean reaches this ('none': never)")
    ap.add_argument("--out", required=True)
    ap.add_argument(
        "--extra-steps",
        type=int,
        default=0,
        help="train this many env steps past total_steps (schedules such as PER's beta stay at their end "
        "values): for a baseline that has not reached --stop-at within the preset's budget",
    )
    ap.add_argument(
        "--noisy-collect",
        action="store_true",
        help="a deviation from stock Tianshou, off by default: collect with the policy in train mode, so noisy "
        "layers explore with the noise of the last update (as fastrl's agent does)",
    )
    args = ap.parse_args()
    if args.extra_steps < 0:
        ap.error(f"--extra-steps must be >= 0, got {args.extra_steps}")
    stop_at = None if args.stop_at.lower() in ("none", "", "nan") else float(args.stop_at)

    settings = json.loads(args.settings)
    settings.pop("env_id", None)
    cfg = with_overrides(default_config(args.algo), settings)
    target_freq, unmatched, notes = mapping(cfg, args.algo, args.noisy_collect)
    seed = args.seed

    torch.set_num_threads(1)
    np.random.seed(seed)  # Tianshou draws epsilon-greedy and PER samples from numpy's global generator
    torch.manual_seed(seed)  # network init, NoisyLinear noise

    env_fn = lambda: make_env(args.env, cfg.max_episode_steps, cfg.frame_stack)  # noqa: E731
    train_envs = DummyVectorEnv([env_fn])
    train_envs.seed(seed)  # the env's first reset and the action space (random warm-up actions)
    probe = env_fn()
    assert isinstance(probe.action_space, gym.spaces.Discrete), "discrete action spaces only"
    obs_dim = int(np.prod(probe.observation_space.shape))
    n_actions = int(probe.action_space.n)
    probe.close()

    net = build_net(cfg, obs_dim, n_actions)
    policy = C51Policy(
        model=net,
        action_space=train_envs.action_space[0],
        num_atoms=int(cfg.atoms),
        v_min=float(cfg.v_min),
        v_max=float(cfg.v_max),
        eps_training=0.0,
        eps_inference=0.0,
    )
    algo_cls = RainbowDQN if args.algo == "rainbow" else C51
    algorithm = algo_cls(
        policy=policy,
        optim=AdamOptimizerFactory(lr=cfg.learning_rate, eps=cfg.adam_eps),
        gamma=cfg.gamma,
        n_step_return_horizon=int(cfg.n_step),
        target_update_freq=target_freq,
    )
    if cfg.max_grad_norm > 0:
        # Tianshou's Optimizer wrapper clips with nn.utils.clip_grad_norm_ when this is set.
        algorithm.optim._max_grad_norm = float(cfg.max_grad_norm)

    if cfg.prioritized:
        buffer: Any = PrioritizedVectorReplayBuffer(
            int(cfg.buffer_size), 1, alpha=cfg.per_alpha, beta=cfg.per_beta_start, weight_norm=True
        )
    else:
        buffer = VectorReplayBuffer(int(cfg.buffer_size), 1)
    if args.noisy_collect:
        # Collector.collect wraps the rollout in torch_train_mode(policy, enabled=False); making that
        # a no-op leaves the policy in train mode (its default here), so NoisyLinear adds its noise.
        import contextlib

        import tianshou.data.collector as ts_collector

        ts_collector.torch_train_mode = lambda module, enabled=True: contextlib.nullcontext()  # type: ignore[assignment]
        unmatched.append("--noisy-collect: Tianshou's collector patched to act in train mode (noisy exploration)")
    collector = Collector(algorithm, train_envs, buffer, exploration_noise=True)
    policy.train(bool(args.noisy_collect))  # the mode the (patched) collector acts in
    collector.reset()
    epsilon = cfg.make_schedule()  # fastrl's schedule (0 for noisy nets unless an epsilon field is set)

    eval_envs = [make_env(args.env, cfg.max_episode_steps, cfg.frame_stack) for _ in range(EVAL_EPISODES)]

    def greedy(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad(), torch_train_mode(policy, enabled=False):
            return policy(Batch(obs=obs, info=Batch())).act

    total, train_freq, eval_every = int(cfg.total_steps), int(cfg.train_freq), int(args.eval_every)
    end = total + args.extra_steps  # schedules run over total; training may go on to end
    learning_starts, gradient_steps, batch_size = int(cfg.learning_starts), int(cfg.gradient_steps), int(cfg.batch_size)
    evals: list[dict[str, Any]] = []
    clock = {"eval": 0.0, "eval_cpu": 0.0}
    steps = episodes = 0

    def run_eval() -> bool:
        """Evaluate at ``steps``; True when the run should stop."""
        t, c = time.perf_counter(), time.process_time()
        trained = t - start - clock["eval"]
        ret = evaluate(greedy, None, EVAL_EPISODES, eval_seed(seed, steps), envs=eval_envs)
        clock["eval"] += time.perf_counter() - t
        clock["eval_cpu"] += time.process_time() - c
        evals.append(
            {
                "step": steps,
                "episodes": episodes,
                "train_seconds": trained,
                "mean": float(ret.mean()),
                "std": float(ret.std()),
            }
        )
        print(
            f"step {steps:>7d}  episodes {episodes:>5d}  train {trained:7.1f}s  eval {ret.mean():8.2f} +- {ret.std():6.2f}",
            file=sys.stderr,
            flush=True,
        )
        return stop_at is not None and evals[-1]["mean"] >= stop_at

    def next_multiple(t: int, k: int) -> int:
        return (t // k + 1) * k

    start, cpu = time.perf_counter(), time.process_time()
    stop = False
    while steps < end and not stop:
        # Collect up to the next point where something happens: an update burst, an evaluation,
        # the end of the random warm-up, or the end.
        until = min(next_multiple(steps, train_freq), next_multiple(steps, eval_every), end)
        random = steps < learning_starts
        if random:
            until = min(until, learning_starts)
        policy.set_eps_training(epsilon.value)
        with policy_within_training_step(policy):
            stats = collector.collect(n_step=until - steps, random=random)
            steps += stats.n_collected_steps
            episodes += stats.n_collected_episodes
            epsilon.next_step(stats.n_collected_steps)
            if stats.n_collected_episodes:
                epsilon.next_episode(stats.n_collected_episodes)
            if steps >= learning_starts and steps % train_freq == 0:
                if cfg.prioritized:  # beta annealed from per_beta_start to 1 over total_steps
                    frac = min(1.0, steps / total)
                    buffer.set_beta(cfg.per_beta_start + frac * (1.0 - cfg.per_beta_start))
                for _ in range(gradient_steps):
                    algorithm.update(sample_size=batch_size, buffer=buffer)
        if steps % eval_every == 0:
            stop = run_eval()
    if not evals or evals[-1]["step"] != steps:
        run_eval()
    train_seconds = time.perf_counter() - start - clock["eval"]
    cpu_seconds = time.process_time() - cpu - clock["eval_cpu"]
    collector.close()
    for e in eval_envs:
        e.close()

    result = {
        "lib": f"tianshou-{args.algo}",
        "noisy_collect": bool(args.noisy_collect),
        "env": args.env,
        "seed": seed,
        "evals": evals,
        "steps": steps,
        "train_seconds": train_seconds,
        "cpu_seconds": cpu_seconds,
        "tianshou_version": tianshou.__version__,
        "unmatched": unmatched,
        "notes": notes,
        "tianshou_settings": {
            "target_update_freq": target_freq,
            "n_step_return_horizon": int(cfg.n_step),
            "gamma": cfg.gamma,
            "num_atoms": int(cfg.atoms),
            "v_min": float(cfg.v_min),
            "v_max": float(cfg.v_max),
            "dueling": bool(cfg.dueling),
            "noisy_std": float(cfg.noisy_sigma0) if cfg.noisy else None,
            "prioritized": bool(cfg.prioritized),
            "alpha": float(cfg.per_alpha) if cfg.prioritized else None,
            "beta": [float(cfg.per_beta_start), 1.0] if cfg.prioritized else None,
            "lr": cfg.learning_rate,
            "adam_eps": cfg.adam_eps,
            "max_grad_norm": float(cfg.max_grad_norm) if cfg.max_grad_norm > 0 else None,
            "epsilon": {
                "schedule": epsilon.kind,
                "start": epsilon.start,
                "end": epsilon.end,
                "duration": epsilon.duration,
                "decay": epsilon.decay,
                "unit": epsilon.unit,
            },
            "hidden_sizes": [int(h) for h in cfg.hidden_sizes],
        },
        "sps": steps / train_seconds if train_seconds > 0 else math.nan,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    if unmatched:
        print(f"unmatched: {unmatched}", file=sys.stderr)


if __name__ == "__main__":
    main()
