"""Tuned settings per (algorithm, environment). ``preset("dqn", "CartPole-v1")`` -> a DQNConfig."""

from __future__ import annotations

import fnmatch
from typing import Any

from fastrl.agents.registry import default_config
from fastrl.config import ConfigError, with_overrides

PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    # RL-Zoo's schedule (bursts of 128 gradient steps every 256 env steps, target fixed within a
    # burst) with a 64x64 MLP: CartPole needs no more, and each gradient step costs ~2.5x less.
    # 3-step targets: 475 after a median 16,000 steps instead of 32,000 (seeds 0-2).
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
        n_step=3,
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

# SAIL-DQN: the DQN presets with the self-imitation bonus (alpha 0.9, Ferret et al.'s default).
for _env in ("CartPole-v1", "LunarLander-v3"):
    # 1-step targets: the SAIL bonus alone (what bench_learning measured against 1-step DQN)
    PRESETS[("sail-dqn", _env)] = {**PRESETS[("dqn", _env)], "n_step": 1, "sail": True, "sail_alpha": 0.9}

_EPSILON = ("epsilon_schedule", "epsilon_unit", "epsilon_start", "epsilon_end", "epsilon_duration", "epsilon_decay")


def _without_epsilon(settings: dict[str, Any]) -> dict[str, Any]:
    """A DQN preset for a noisy-net agent: its epsilon settings dropped (the noise explores)."""
    return {k: v for k, v in settings.items() if k not in _EPSILON}


# Rainbow, C51 and QR-DQN: the DQN presets' schedules, with supports that cover each env's
# discounted returns (CartPole: 0 to 1 / (1 - gamma) = 100; LunarLander: about -100 to 100).
# Rainbow: the paper's PER alpha 0.5 (beta 0.4 -> 1 is fastrl's default).
_SUPPORT = {"CartPole-v1": {"v_min": 0.0, "v_max": 100.0}, "LunarLander-v3": {"v_min": -100.0, "v_max": 100.0}}
PRESETS[("rainbow", "CartPole-v1")] = {
    **_without_epsilon(PRESETS[("dqn", "CartPole-v1")]),
    **_SUPPORT["CartPole-v1"],
    "double_dqn": True,
    "per_alpha": 0.5,
}
for _env, _support in _SUPPORT.items():
    PRESETS[("c51", _env)] = {**PRESETS[("dqn", _env)], **_support}
    # 32 quantiles: at these nets a QR update costs ~1.9x DQN's, at the paper's 200 ~25x
    PRESETS[("qr-dqn", _env)] = {**PRESETS[("dqn", _env)], "quantiles": 32}
# LunarLander: one gradient step per env step, and the DQN preset's epsilon (decayed per episode to
# 0.01) on top of the noise: with the noise alone the greedy evaluation reached 200 after 130k steps
# on seed 0, with both after 35k-80k. A 100k-step budget (PER's beta reaches 1 there): the greedy
# evaluation reached 200 after 55k, 80k, 45k steps on seeds 0-2 (300k: 70k, 55k, 75k).
PRESETS[("rainbow", "LunarLander-v3")] = {
    **PRESETS[("dqn", "LunarLander-v3")],
    **_SUPPORT["LunarLander-v3"],
    "total_steps": 100_000,
    "per_alpha": 0.5,
    "train_freq": 1,
    "eval_every": 5_000,
}

# DDPG on Pendulum: RL-Zoo's gamma 0.98, Gaussian noise 0.1 and 20,000-step budget, with 1,000 random
# steps and then one gradient step every 2 env steps (~9,500 in all, about RL-Zoo's 10,000).
# 128x128 networks and batches of 128: Pendulum needs no more, and a gradient step costs ~5x less
# than with 256x256 and batch 256. Greedy evaluations every 1,000 steps.
_PENDULUM: dict[str, Any] = {
    "total_steps": 20_000,
    "buffer_size": 20_000,
    "batch_size": 128,
    "learning_starts": 1_000,
    "train_freq": 2,
    "gradient_steps": 1,
    "actor_hidden_sizes": (128, 128),
    "critic_hidden_sizes": (128, 128),
    "gamma": 0.98,
    "tau": 0.005,
    "actor_learning_rate": 1e-3,
    "critic_learning_rate": 1e-3,
    "noise": "gaussian",
    "noise_sigma": 0.1,
    "eval_every": 1_000,
    "eval_episodes": 20,
    "checkpoint_every": 0,
}
PRESETS[("ddpg", "Pendulum-v1")] = dict(_PENDULUM)
# TD3: the same with twin critics, delayed actor updates, target policy smoothing (its defaults).
PRESETS[("td3", "Pendulum-v1")] = dict(_PENDULUM)

# LunarLanderContinuous: RL-Zoo's budget and exploration (300k steps, 10k random, noise 0.1);
# stops when the greedy evaluation reaches 230 (the 200 bar with a margin).
_LUNAR_CONTINUOUS: dict[str, Any] = {
    **_PENDULUM,
    "total_steps": 300_000,
    "buffer_size": 300_000,
    "batch_size": 256,
    "learning_starts": 10_000,
    "train_freq": 1,
    "actor_hidden_sizes": (256, 256),
    "critic_hidden_sizes": (256, 256),
    "gamma": 0.99,
    "eval_every": 10_000,
    "checkpoint_every": 50_000,
    "solved_threshold": 230.0,
    "solve_on": "eval",
}
PRESETS[("ddpg", "LunarLanderContinuous-v3")] = dict(_LUNAR_CONTINUOUS)
PRESETS[("td3", "LunarLanderContinuous-v3")] = dict(_LUNAR_CONTINUOUS)


# MinAtar: the DQN of Young and Tian (2019) (their network: network="minatar"; batch 32, buffer 100k,
# target copied every 1,000 updates, epsilon 1 -> 0.1 over the first 100k frames, 5,000 random
# frames first, one update per frame, the Huber loss, gamma 0.99, 5M frames). They used RMSProp
# (lr 2.5e-4, squared-gradient momentum 0.95, eps 0.01, centered); fastrl has Adam only: the same
# step size with Adam, no gradient clipping as in theirs. Plain DQN targets (no Double DQN).
# MINATAR_PAPER keeps those settings (the baseline benchmarks/bench_pixels.py compares against).
MINATAR_PAPER: dict[str, Any] = {
    "total_steps": 5_000_000,
    "network": "minatar",
    "buffer_size": 100_000,
    "batch_size": 32,
    "learning_starts": 5_000,
    "train_freq": 1,
    "gradient_steps": 1,
    "learning_rate": 2.5e-4,
    "gamma": 0.99,
    "double_dqn": False,
    "loss": "huber",
    "max_grad_norm": 0.0,
    "target_update_interval": 1_000,
    "tau": 1.0,
    "epsilon_schedule": "linear",
    "epsilon_unit": "step",
    "epsilon_start": 1.0,
    "epsilon_end": 0.1,
    "epsilon_duration": 100_000,
    "eval_every": 100_000,
    "eval_episodes": 10,
    "checkpoint_every": 500_000,
}
# fastrl's MinAtar preset: the paper's, plus Double DQN, 3-step targets and epsilon decayed to 0.01
# (not 0.1). Breakout: the 100-episode mean of training returns reaches 10 after 200k, 229k and 236k
# steps on seeds 0-2 (the paper's settings: 6.25 at 500k on seed 0).
_MINATAR: dict[str, Any] = {**MINATAR_PAPER, "double_dqn": True, "n_step": 3, "epsilon_end": 0.01}
for _game in ("Breakout", "Freeway", "SpaceInvaders", "Asterix", "Seaquest"):
    PRESETS[("dqn", f"MinAtar/{_game}-v1")] = dict(_MINATAR)
# Freeway: Munchausen-DQN (Vieillard et al., 2020: alpha 0.9, tau 0.03, clip -1, its soft target in
# place of Double DQN; 1-step targets, which fastrl's Munchausen needs) with Adam lr 1e-4 and eps
# 1.5e-4 (Rainbow's value; which of the changes matters most is not measured apart: the eps alone on
# the 3-step preset was ahead of it on seed 1 at 200k, 19.2 vs 12.6, when stopped). The shared preset (3-step Double DQN) reached a 100-episode mean of 50 on seed 0
# only near 1M steps (lr 1e-4) and on seed 1 peaked at ~22, then fell to ~7 by 1M with lr 2.5e-4 or
# 1e-4. This one reached a 100-episode mean of 50 after 335k, 363k and 335k steps on seeds 0-2.
PRESETS[("dqn", "MinAtar/Freeway-v1")] = {
    **_MINATAR,
    "munchausen": True,
    "double_dqn": False,
    "n_step": 1,
    "learning_rate": 1e-4,
    "adam_eps": 1.5e-4,
}

# Presets for every env id matching a pattern (fnmatch), used when no exact key matches.
PATTERN_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    # Atari, the Nature / RL-Zoo DQN baseline (rl-zoo3 hyperparams/dqn.yml, atari): 10M agent steps
    # (40M frames), buffer 100k, Adam lr 1e-4, batch 32, one update every 4 steps after 100k random
    # steps, target copied every 1,000 steps, epsilon 1 -> 0.01 over the first 10% of the run, Huber
    # loss, gradient norm clipped to 10, plain DQN targets; 4 stacked frames (stored once each by the
    # buffer), rewards clipped and lost lives terminal for the target (the env's defaults for ALE
    # ids). Evaluation on 10 full games (the score) every 250k steps, epsilon 0.05 as in the Nature
    # paper (a greedy agent can wait out the 108k-frame limit, e.g. Breakout without FIRE).
    ("dqn", "ALE/*"): {
        "total_steps": 10_000_000,
        "frame_stack": 4,
        "network": "cnn",
        "buffer_size": 100_000,
        "batch_size": 32,
        "learning_starts": 100_000,
        "train_freq": 4,
        "gradient_steps": 1,
        "learning_rate": 1e-4,
        "gamma": 0.99,
        "double_dqn": False,
        "loss": "huber",
        "max_grad_norm": 10.0,
        "target_update_interval": 250,  # gradient steps: 1,000 env steps at train_freq 4
        "tau": 1.0,
        "epsilon_schedule": "linear",
        "epsilon_unit": "step",
        "epsilon_start": 1.0,
        "epsilon_end": 0.01,
        "epsilon_duration": 1_000_000,
        "eval_every": 250_000,
        "eval_episodes": 10,
        "eval_epsilon": 0.05,
        "checkpoint_every": 500_000,
        # with collectors >= 1: publish the Nature CNN's weights (6.7 MB) every 8 updates (32 env
        # steps of policy lag) instead of every update; in bench_pixels --part atari a collector
        # run's time above its own updates went from +6.8% / +9.9% (fp32 / bf16, every update) to
        # +3.8% / +5.4% (2026-12-06, two runs on different minutes of a drifting machine)
        "sync_every": 8,
    },
}


# Named alternatives to a preset, chosen with ``preset(algo, env_id, name)`` or ``fastrl train
# --preset NAME``; keys are (algo, env id or fnmatch pattern, name). "default" is always the preset above.
NAMED_PRESETS: dict[tuple[str, str, str], dict[str, Any]] = {
    # ``--preset m-dqn``: Munchausen-DQN as its paper ran it on Atari
    # (Vieillard et al. 2020, on Dopamine's DQN with Adam): 1-step soft targets with the scaled,
    # clipped log-policy bonus (m_alpha 0.9, m_tau 0.03, m_clip -1), Adam lr 5e-5 with eps 3.125e-4
    # (0.01 / batch), learning from 20k steps, epsilon 1 -> 0.01 over 250k steps, the target copied
    # every 8,000 env steps, a 1M-transition buffer (about 7.1 GB: each frame stored once; set
    # storage_path to keep it on disk). Picked because Munchausen fixed the collapse of MinAtar
    # Freeway's 3-step Double DQN preset (see above), and the M-DQN paper reports it above DQN and
    # C51 over the Atari suite. Not fastrl's tuned Atari preset (there is none yet): on Breakout's
    # first 250k steps (seed 0, CPU) it learned slower than the default, 0.3 against 13.0 in
    # evaluation at 250k (README); a 10M-step comparison needs a GPU.
    ("dqn", "ALE/*", "m-dqn"): {
        **PATTERN_PRESETS[("dqn", "ALE/*")],
        "munchausen": True,
        "m_alpha": 0.9,
        "m_tau": 0.03,
        "m_clip": -1.0,
        "n_step": 1,
        "learning_rate": 5e-5,
        "adam_eps": 3.125e-4,
        "buffer_size": 1_000_000,
        "learning_starts": 20_000,
        "epsilon_duration": 250_000,
        "target_update_interval": 2_000,  # gradient steps: 8,000 env steps at train_freq 4
    },
}


def preset_names(algo: str, env_id: str) -> list[str]:
    """The preset names for ``(algo, env_id)``: ``"default"`` and any named alternative."""
    named = (n for a, pat, n in NAMED_PRESETS if a == algo and fnmatch.fnmatchcase(env_id, pat))
    return ["default", *dict.fromkeys(named)]


def preset_settings(algo: str, env_id: str, name: str = "default") -> dict[str, Any]:
    """The preset fields of ``(algo, env_id)``: the exact key's, else the first matching pattern's, else
    none; ``name`` picks a named alternative (ConfigError, listing the names, if there is none)."""
    if name != "default":
        for (a, pat, n), v in NAMED_PRESETS.items():
            if (a, n) == (algo, name) and fnmatch.fnmatchcase(env_id, pat):
                return v
        raise ConfigError(
            f"preset: no {name!r} preset for {algo} on {env_id}; its presets: {', '.join(preset_names(algo, env_id))}"
        )
    if (algo, env_id) in PRESETS:
        return PRESETS[(algo, env_id)]
    return next((v for (a, pat), v in PATTERN_PRESETS.items() if a == algo and fnmatch.fnmatchcase(env_id, pat)), {})


def preset(algo: str, env_id: str, name: str = "default") -> Any:
    """The config of ``algo`` for ``env_id``: the tuned preset if there is one (an exact id, or a
    pattern such as ``ALE/*``), else the algorithm's defaults (``sail-dqn``: DQN's with
    ``sail=True``; ``td3``: DDPG's with the TD3 options). ``name`` picks a named alternative
    (:func:`preset_names`), e.g. ``preset("dqn", "ALE/Pong-v5", "m-dqn")``."""

    return with_overrides(default_config(algo), {"env_id": env_id, **preset_settings(algo, env_id, name)})
