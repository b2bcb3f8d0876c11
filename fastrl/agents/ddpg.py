"""DDPG (Lillicrap et al., 2015) with the TD3 options (Fujimoto et al., 2018) for Box action spaces.

TD3 is this agent with three switches: ``twin_critics`` (two critics, the target takes their
minimum), ``policy_delay`` (the actor and the target networks move every d-th critic step) and
``target_policy_noise`` (clipped Gaussian noise on the target action). The networks work in
[-1, 1]; :meth:`DDPG.to_env` / :meth:`DDPG.from_env` map between that and the env's bounds.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from fastrl.agents.nets import (
    Actor,
    Critic,
    adam,
    agent_state,
    clear_grads_,
    clip_grads_,
    load_agent_state,
    polyak_,
    step_,
)
from fastrl.agents.noise import GaussianNoise, OUNoise
from fastrl.config import ConfigError, TrainConfig, check_bounds, check_common, check_schedule, check_sizes
from fastrl.replay.batch import Batch
from fastrl.replay.spec import ReplaySpec
from fastrl.schedules import Schedule


@dataclass(frozen=True)
class DDPGConfig(TrainConfig):
    """Everything a DDPG / TD3 run needs: the shared loop settings plus the agent's own."""

    env_id: str = "Pendulum-v1"
    """gymnasium environment id (a Box action space with finite bounds)."""
    actor_hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the actor MLP."""
    critic_hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each critic MLP (input: observation and action)."""
    final_layer_init: float = 3e-3
    """Final layers of actor and critics start at U(-v, v) (0: torch's default init)."""
    gamma: float = 0.99
    """Discount factor."""
    actor_learning_rate: float = 1e-3
    """Adam step size of the actor."""
    critic_learning_rate: float = 1e-3
    """Adam step size of the critic(s)."""
    tau: float = 0.005
    """Polyak step of the target networks: target += tau * (online - target)."""
    noise: Literal["gaussian", "ou"] = "gaussian"
    """Exploration noise added to the actor's action in [-1, 1]: gaussian or ou (Ornstein-Uhlenbeck)."""
    noise_sigma: float = 0.1
    """Noise scale (standard deviation of each step's Gaussian draw), in units of half the action range."""
    noise_sigma_end: float | None = None
    """If set, the noise scale decays linearly to this over noise_decay_steps env steps."""
    noise_decay_steps: int = 10_000
    """Env steps of the linear noise decay (with noise_sigma_end)."""
    ou_theta: float = 0.15
    """OU mean-reversion rate per env step (state reset to 0 when an episode ends)."""
    twin_critics: bool = False
    """TD3: two critics; the target uses the smaller of their target values."""
    policy_delay: int = 1
    """TD3: critic steps per actor and target-network step (1 = DDPG)."""
    target_policy_noise: float = 0.0
    """TD3: std of the Gaussian noise added to the target action (0: off)."""
    target_noise_clip: float = 0.5
    """TD3: the target-action noise is clipped to [-c, c]."""
    n_step: int = 1
    """n-step returns for the critic target."""
    max_grad_norm: float = 0.0
    """Clip each network's global gradient norm to this (0: off)."""

    def replay(self) -> ReplaySpec:
        """The replay this agent's update needs: uniform, with n-step sums when n_step > 1."""
        return ReplaySpec(
            self.buffer_size,
            n_step=self.n_step,
            gamma=self.gamma if self.n_step > 1 else None,
            terminated_next_observations=self.replay_terminated_next,
        )

    def check(self) -> None:
        """ConfigError naming the first out-of-range field."""
        check_common(self)
        check_sizes(self, ("actor_hidden_sizes", "critic_hidden_sizes"))
        check_bounds(self, ("gamma",), 0.0, high=1.0)
        check_bounds(self, ("tau", "ou_theta"), 0.0, strict=True, high=1.0)
        check_bounds(self, ("actor_learning_rate", "critic_learning_rate"), 0.0, strict=True)
        check_bounds(self, ("final_layer_init", "target_policy_noise", "target_noise_clip", "max_grad_norm"), 0.0)
        check_bounds(self, ("policy_delay", "n_step"), 1)
        check_schedule(self.make_schedule, "noise")

    def make_schedule(self) -> Schedule:
        """The exploration-noise scale per env step (constant, or linear to noise_sigma_end)."""
        if self.noise_sigma_end is None:
            return Schedule(kind="constant", start=self.noise_sigma, end=self.noise_sigma)
        return Schedule(
            kind="linear",
            start=self.noise_sigma,
            end=self.noise_sigma_end,
            duration=self.noise_decay_steps,
        )


class DDPG:
    """A DDPG / TD3 agent for a Box action space with finite bounds.

    Args:
        obs_shape: shape of one observation (flattened into the MLPs).
        action_low, action_high: the env's action bounds, ``float[action_dim]``.
        config: a :class:`DDPGConfig`.
        device: torch device of the networks.
        seed: seeds the generator of the exploration noise and of the burn-in actions (numpy).
    """

    def __init__(
        self,
        obs_shape: Sequence[int],
        action_low: Any,
        action_high: Any,
        config: DDPGConfig | None = None,
        device: Any = "cpu",
        seed: int | None = None,
    ) -> None:
        self.config = cfg = config if config is not None else DDPGConfig()
        self.device = torch.device(device)
        low = np.asarray(action_low, dtype=np.float64).reshape(-1)
        high = np.asarray(action_high, dtype=np.float64).reshape(-1)
        if low.shape != high.shape or not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError("action bounds must be finite and of the same shape")
        if not (high > low).all():
            raise ValueError("action_high must be > action_low in every dimension")
        self.action_dim = len(low)
        self._center, self._half = (high + low) / 2, (high - low) / 2
        self._center_t = torch.tensor(self._center, dtype=torch.float32, device=self.device)
        self._half_t = torch.tensor(self._half, dtype=torch.float32, device=self.device)

        init = cfg.final_layer_init
        self.actor = Actor(obs_shape, self.action_dim, cfg.actor_hidden_sizes, init).to(self.device)
        n_critics = 2 if cfg.twin_critics else 1
        self.critic = Critic(obs_shape, self.action_dim, cfg.critic_hidden_sizes, n_critics, init).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self._actor_params = list(self.actor.parameters())
        self._critic_params = list(self.critic.parameters())
        self._online = self._actor_params + self._critic_params
        self._target = list(self.actor_target.parameters()) + list(self.critic_target.parameters())
        self.actor_optimizer = adam(self._actor_params, cfg.actor_learning_rate, 1e-8, self.device)
        self.critic_optimizer = adam(self._critic_params, cfg.critic_learning_rate, 1e-8, self.device)

        self.rng = np.random.default_rng(seed)
        self.exploration = cfg.make_schedule()
        self.noise: GaussianNoise | OUNoise = (
            OUNoise(self.action_dim, self.rng, theta=cfg.ou_theta)
            if cfg.noise == "ou"
            else GaussianNoise(self.action_dim, self.rng)
        )
        self.updates = 0
        self._q_y: tuple[torch.Tensor, torch.Tensor] | None = None  # Q1(s, a) and y of the last update

    @classmethod
    def from_spaces(cls, obs_space: Any, action_space: Any, config: DDPGConfig, device: Any, seed: int | None) -> DDPG:
        """The agent for a gymnasium env's spaces (ConfigError unless the actions are a 1-D Box
        with finite bounds)."""
        import gymnasium as gym

        if not isinstance(action_space, gym.spaces.Box):
            raise ConfigError(
                f"DDPG / TD3 need a continuous (Box) action space but {config.env_id} has "
                f"{type(action_space).__name__} actions; use dqn or sail-dqn for discrete actions"
            )
        if len(action_space.shape) != 1 or not action_space.is_bounded("both"):
            raise ConfigError(
                f"DDPG / TD3 need a 1-D Box action space with finite bounds; {config.env_id} has {action_space}"
            )
        return cls(tuple(obs_space.shape or ()), action_space.low, action_space.high, config, device, seed)

    # ------------------------------------------------------------------ action scaling
    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """Actions in [-1, 1] -> the env's bounds: ``float32[N, action_dim]``."""
        return (self._center + self._half * np.asarray(actions, dtype=np.float64)).astype(np.float32)

    def from_env(self, actions: torch.Tensor) -> torch.Tensor:
        """Env-scale actions (as stored in the buffer) -> [-1, 1]: ``float32[B, action_dim]``."""
        return (actions.float().view(-1, self.action_dim) - self._center_t) / self._half_t

    # ------------------------------------------------------------------ acting
    def act(self, obs: Any, explore: bool = True) -> np.ndarray:
        """Actor output plus exploration noise (``explore``), clipped to [-1, 1] and scaled to the
        env's bounds: ``float32[N, action_dim]`` for observations ``[N, *obs_shape]``."""
        a = self._actor_numpy(obs)
        if explore:
            a = np.clip(a + self.noise.sample(len(a), self.exploration.value), -1.0, 1.0)
        return self.to_env(a)

    def greedy(self, obs: Any) -> np.ndarray:
        """The actor's action (no noise) in the env's bounds: ``float32[N, action_dim]``."""
        return self.to_env(self._actor_numpy(obs))

    @torch.inference_mode()
    def _actor_numpy(self, obs: Any) -> np.ndarray:
        return self.actor(torch.as_tensor(np.asarray(obs), device=self.device)).cpu().numpy()

    # ------------------------------------------------------------------ what the training loop calls
    def random_actions(self, n: int) -> np.ndarray:
        """Uniform actions over the env's bounds, ``float32[n, action_dim]`` (the burn-in)."""
        return self.to_env(self.rng.uniform(-1.0, 1.0, size=(n, self.action_dim)))

    def after_env_step(self, done: np.ndarray) -> None:
        """Advance the noise scale after one vector-env step; restart the OU process of every env
        whose episode ended (``done: bool[N]``)."""
        self.exploration.next_step(len(done))
        if done.any():
            self.noise.reset(done)

    def progress(self) -> dict[str, float]:
        """Scalars for the log and the progress bar."""
        return {"charts/noise_scale": self.exploration.value}

    # ------------------------------------------------------------------ learning
    def td_target(self, batch: Batch) -> torch.Tensor:
        """y = r + discount * (1 - terminated) * min_i Q_target_i(s', a'): ``float32[B]``.

        ``a' = clip(actor_target(s') + clip(N(0, target_policy_noise^2), -c, c), -1, 1)`` (the noise
        only with TD3's target policy smoothing); the minimum runs over the twin critics (one
        critic: its value). ``discount`` is gamma, or ``batch.discounts`` for n-step samples; only
        ``terminated`` stops bootstrapping.
        """
        cfg = self.config
        with torch.no_grad():
            next_obs = batch.next_observations
            next_a = self.actor_target(next_obs)
            if cfg.target_policy_noise > 0:
                eps = torch.randn_like(next_a) * cfg.target_policy_noise
                next_a = (next_a + eps.clamp(-cfg.target_noise_clip, cfg.target_noise_clip)).clamp(-1.0, 1.0)
            q_next = self.critic_target(next_obs, next_a).min(dim=0).values
            discount = getattr(batch, "discounts", None)
            if discount is None:
                discount = cfg.gamma
            return batch.rewards.float() + discount * q_next.masked_fill_(batch.terminated, 0.0)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One critic step on ``batch`` and, every ``policy_delay`` calls, one actor step and a Polyak
        step of both target networks. Returns 0-d tensors ``losses/td_loss`` (critic MSE, summed
        over the critics), ``losses/q_values`` and, on actor steps, ``losses/actor_loss``
        (call ``float()`` only when logging: it waits for the device)."""
        cfg = self.config
        obs = batch.observations
        y = self.td_target(batch)
        qs = self.critic(obs, self.from_env(batch.actions))  # [n_critics, B]
        per_sample = (qs - y).square().sum(dim=0)
        weights = getattr(batch, "weights", None)
        critic_loss = (per_sample * weights).mean() if weights is not None else per_sample.mean()
        clear_grads_(self.critic_optimizer)
        critic_loss.backward()
        clip_grads_(self._critic_params, cfg.max_grad_norm)
        step_(self.critic_optimizer)
        q1 = qs[0].detach()
        self._q_y = q1, y
        metrics = {"losses/td_loss": critic_loss.detach(), "losses/q_values": q1.mean()}

        self.updates += 1
        if self.updates % cfg.policy_delay == 0:
            actor_loss = -self.critic.q1(obs, self.actor(obs)).mean()
            clear_grads_(self.actor_optimizer)
            # dQ/da flows through the critic, but only the actor's parameters get gradients
            actor_loss.backward(inputs=self._actor_params)
            clip_grads_(self._actor_params, cfg.max_grad_norm)
            step_(self.actor_optimizer)
            polyak_(self._target, self._online, cfg.tau)
            metrics["losses/actor_loss"] = actor_loss.detach()
        return metrics

    @property
    def td_abs(self) -> torch.Tensor | None:
        """|TD error| of the first critic on the last update's batch, ``float32[B]``; computed
        when asked."""
        if self._q_y is None:
            return None
        q1, y = self._q_y
        return (q1 - y).abs()

    # ------------------------------------------------------------------ state
    _STATE = (
        "actor",
        "critic",
        "actor_target",
        "critic_target",
        "actor_optimizer",
        "critic_optimizer",
        "exploration",
        "noise",
    )
    """The attributes whose state_dict() a checkpoint holds (with the generator and update count)."""

    def state_dict(self) -> dict[str, Any]:
        return agent_state(self, self._STATE)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_agent_state(self, self._STATE, state)
