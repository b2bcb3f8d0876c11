"""Tuned settings per (algorithm, environment). ``preset("dqn", "CartPole-v1")`` -> a DQNConfig."""

from __future__ import annotations

from typing import Any

from fastrl.config import ConfigError, with_overrides

PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    # RL-Zoo's schedule (bursts of 128 gradient steps every 256 env steps, target fixed within a
    # burst) with a 64x64 MLP: CartPole needs no more, and each gradient step costs ~2.5x less.
    # Stops when all 20 greedy evaluation episodes reach 500.
    ("dqn", "CartPole-v1"): dict(
        total_steps=60_000,
        buffer_size=100_000,
        batch_size=64,
        learning_starts=1_000,
        train_freq=256,
        gradient_steps=128,
        hidden_sizes=(64, 64),
        double_dqn=False,
        learning_rate=2.3e-3,
        gamma=0.99,
        target_update_interval=128,
        tau=1.0,
        loss="huber",
        max_grad_norm=10.0,
        epsilon_schedule="linear",
        epsilon_start=1.0,
        epsilon_end=0.04,
        epsilon_duration=8_000,
        eval_every=2_000,
        eval_episodes=20,
        solved_threshold=500.0,
        solve_on="eval",
    ),
    # Double DQN, Polyak target (tau 0.005 after every gradient step), epsilon decayed per episode.
    # Stops at 230, a margin over the 200 bar, so the final policy holds 200 on fresh episodes.
    ("dqn", "LunarLander-v3"): dict(
        total_steps=300_000,
        buffer_size=100_000,
        batch_size=64,
        learning_starts=2_000,
        train_freq=2,
        gradient_steps=1,
        hidden_sizes=(128, 128),
        double_dqn=True,
        dueling=False,
        learning_rate=5e-4,
        gamma=0.99,
        target_update_interval=1,
        tau=0.005,
        loss="mse",
        max_grad_norm=10.0,
        epsilon_schedule="exponential",
        epsilon_unit="episode",
        epsilon_start=1.0,
        epsilon_end=0.01,
        epsilon_decay=0.98,
        eval_every=10_000,
        eval_episodes=20,
        solved_threshold=230.0,
        solve_on="eval",
    ),
}


def preset(algo: str, env_id: str) -> Any:
    """The config of ``algo`` for ``env_id``: the tuned preset if there is one, else defaults."""
    from fastrl.agents import ALGOS

    if algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
    cls = ALGOS[algo][0]
    return with_overrides(cls(), {"env_id": env_id, **PRESETS.get((algo, env_id), {})})
