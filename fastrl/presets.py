"""Tuned settings per (algorithm, environment). ``preset("dqn", "CartPole-v1")`` -> a DQNConfig."""

from __future__ import annotations

from typing import Any

from fastrl.config import ConfigError, with_overrides

PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    ("dqn", "CartPole-v1"): dict(
        total_steps=60_000, buffer_size=50_000, batch_size=64, learning_starts=1_000,
        train_freq=1, gradient_steps=1, hidden_sizes=(128, 128), double_dqn=True,
        learning_rate=1e-3, gamma=0.99, target_update_interval=500, tau=1.0, loss="huber",
        epsilon_schedule="linear", epsilon_start=1.0, epsilon_end=0.02, epsilon_duration=10_000,
        eval_every=2_000, eval_episodes=20, solved_threshold=500.0, solve_on="eval",
    ),
    ("dqn", "LunarLander-v3"): dict(
        total_steps=300_000, buffer_size=100_000, batch_size=128, learning_starts=2_000,
        train_freq=4, gradient_steps=1, hidden_sizes=(256, 256), double_dqn=True, dueling=False,
        learning_rate=6.3e-4, gamma=0.99, target_update_interval=250, tau=1.0, loss="huber",
        epsilon_schedule="linear", epsilon_start=1.0, epsilon_end=0.05, epsilon_duration=30_000,
        eval_every=10_000, eval_episodes=20, solved_threshold=200.0, solve_on="eval",
    ),
}


def preset(algo: str, env_id: str) -> Any:
    """The config of ``algo`` for ``env_id``: the tuned preset if there is one, else defaults."""
    from fastrl.agents import ALGOS

    if algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
    cls = ALGOS[algo][0]
    return with_overrides(cls(), {"env_id": env_id, **PRESETS.get((algo, env_id), {})})
