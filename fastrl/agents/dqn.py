"""DQN (Mnih et al., 2015) and its family as options: Double DQN, dueling heads, n-step targets,
prioritized replay, SAIL (self-imitation advantage learning, Ferret et al., 2021), distributional
heads (C51, Bellemare et al., 2017; QR-DQN, Dabney et al., 2018), noisy nets (Fortunato et al.,
2018) and Munchausen-DQN (Vieillard et al., 2020). Rainbow (Hessel et al., 2018) is C51 + noisy +
dueling + Double + 3-step + PER (the ``rainbow`` name in the registry)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from fastrl.agents.losses import categorical_projection, check_support, munchausen_target, quantile_huber_loss
from fastrl.agents.nets import (
    QNetwork,
    adam,
    agent_state,
    clear_grads_,
    clip_grads_,
    copy_buffers_,
    is_small_grid,
    load_agent_state,
    polyak_,
    step_,
)
from fastrl.config import ConfigError, TrainConfig, check_bounds, check_common, check_schedule, check_sizes
from fastrl.replay.batch import Batch
from fastrl.replay.spec import ReplaySpec
from fastrl.schedules import Schedule


@dataclass(frozen=True)
class DQNConfig(TrainConfig):
    """Everything a DQN run needs: the shared loop settings plus the agent's own."""

    hidden_sizes: tuple[int, ...] = (128, 128)
    """Hidden layer widths of the MLP (with dueling, the last one is each stream's width)."""
    network: Literal["auto", "mlp", "cnn", "minatar"] = "auto"
    """Torso: cnn (Nature DQN, uint8[C, H, W] frames), minatar (the MinAtar paper's: one 3x3 conv of 16
    channels and a 128-unit layer, channels-last grids), mlp; auto: minatar for bool / uint8 grids
    [H, W, C] of at most 16x16, cnn for other uint8 [C, H, W] observations, else mlp."""
    dueling: bool = False
    """Dueling head: Q = V + A - mean(A)."""
    double_dqn: bool = True
    """Double DQN: the online network picks the next action, the target network values it."""
    gamma: float = 0.99
    """Discount factor."""
    learning_rate: float = 1e-3
    """Adam step size."""
    adam_eps: float = 1e-8
    """Adam epsilon."""
    loss: Literal["huber", "mse"] = "huber"
    """TD loss: huber (smooth L1, delta 1) or mse."""
    max_grad_norm: float = 10.0
    """Clip the global gradient norm to this (0: off)."""
    clip_grad_value: float = 0.0
    """Clip each gradient element to [-v, v] (0: off)."""
    target_update_interval: int = 500
    """Gradient steps between target updates."""
    tau: float = 1.0
    """Target update: 1 copies the online network; < 1 is Polyak averaging target += tau * (online - target)."""
    epsilon_schedule: Literal["constant", "linear", "exponential"] = "linear"
    """How exploration epsilon decays."""
    epsilon_start: float = 1.0
    """Initial epsilon (and the constant value)."""
    epsilon_end: float = 0.05
    """Final epsilon."""
    epsilon_duration: int = 10_000
    """Linear schedule: units (steps or episodes) from start to end."""
    epsilon_decay: float = 0.995
    """Exponential schedule: factor per unit."""
    epsilon_unit: Literal["step", "episode"] = "step"
    """Advance epsilon per env step or per finished episode."""
    n_step: int = 1
    """n-step returns (needs a buffer with n-step sampling)."""
    prioritized: bool = False
    """Prioritized experience replay (needs fastrl's PrioritizedReplayBuffer)."""
    per_alpha: float = 0.6
    """Prioritization exponent."""
    per_beta_start: float = 0.4
    """Importance-sampling exponent at the start, annealed linearly to 1 over total_steps."""
    per_eps: float = 1e-6
    """Added to |TD error| to form new priorities."""
    collector_priorities: bool = False
    """prioritized with collectors (Ape-X): new transitions enter the buffer with the |n-step TD
    error| their collector computed with its copy of the online network (see
    :meth:`DQN.fresh_priorities`), instead of the running maximum priority."""
    sail: bool = False
    """SAIL: add sail_alpha * (max(G, Q_target(s, a)) - max_b Q_target(s, b)) to the target, G the
    observed discounted return from s (the trainer's buffer keeps it, episode_returns_gamma = gamma);
    transitions whose episode has not ended yet (no G) get the plain target."""
    sail_alpha: float = 0.9
    """SAIL bonus weight (0 gives plain DQN)."""
    distributional: Literal["none", "c51", "qr"] = "none"
    """Distributional head: c51 (a categorical distribution over ``atoms`` fixed returns from v_min
    to v_max, cross-entropy to the projected target) or qr (``quantiles`` quantiles, the quantile
    Huber loss); Q is the distribution's mean. Not with sail or munchausen."""
    atoms: int = 51
    """C51: number of atoms of the support."""
    v_min: float = -10.0
    """C51: lowest return of the support."""
    v_max: float = 10.0
    """C51: highest return of the support (> v_min)."""
    quantiles: int = 200
    """QR-DQN: number of quantiles."""
    qr_kappa: float = 1.0
    """QR-DQN: Huber threshold of the quantile loss (0: the plain quantile loss)."""
    noisy: bool = False
    """Noisy nets: factorised Gaussian noisy linear layers in the head, new noise before each
    update from the agent's own seeded generator; greedy evaluation uses the mean weights. Epsilon
    is then 0 unless an epsilon field is set away from its default."""
    noisy_sigma0: float = 0.5
    """Noisy nets: initial noise scale sigma0 (sigma starts at sigma0 / sqrt(fan_in))."""
    munchausen: bool = False
    """Munchausen-DQN: the soft (log-sum-exp) target plus m_alpha * clip(m_tau * log pi(a|s),
    m_clip, 0), pi = softmax(Q_target / m_tau). Scalar head and 1-step targets only."""
    m_alpha: float = 0.9
    """Munchausen: weight of the log-policy bonus."""
    m_tau: float = 0.03
    """Munchausen: entropy temperature (> 0)."""
    m_clip: float = -1.0
    """Munchausen: lower clip of the scaled log-policy (<= 0)."""
    cuda_graph: bool = False
    """CUDA only (ConfigError on another device): after 3 eager warm-up updates, capture the whole
    update (forward, loss, backward, clipping, capturable fused Adam step, and the target update
    when target_update_interval is 1) in a CUDA graph and replay it, each batch copied into static
    input tensors. Every batch must then have the first one's shapes and fields."""
    amp: Literal["auto", "none", "bf16"] = "auto"
    """bf16: the update's forward passes (online and target networks) run under bfloat16 autocast
    on the agent's device; Q-values are cast back to float32 for the targets, losses and gradients,
    and Adam keeps float32 weights. ~1.7x faster Nature-CNN updates on a CPU with avx512_bf16 (see
    benchmarks/bench_pixels.py --part precision); no gain for MLPs or MinAtar's CNN. Acting stays
    float32. auto: bf16 for the Nature CNN (pixel observations) on a CPU with bf16 instructions
    (Breakout learned at the same pace over 3 seeds: docs/studies/pixels_bf16.md), none otherwise (MLPs,
    MinAtar, your own network, CUDA until it has been measured there, cuda_graph)."""

    def check(self) -> None:
        """ConfigError naming the first out-of-range field."""
        check_common(self)
        check_sizes(self, ("hidden_sizes",))
        check_bounds(self, ("gamma", "sail_alpha"), 0.0, high=1.0)
        check_bounds(self, ("tau",), 0.0, strict=True, high=1.0)
        check_bounds(self, ("learning_rate", "adam_eps"), 0.0, strict=True)
        check_bounds(self, ("max_grad_norm", "clip_grad_value", "per_alpha", "per_beta_start", "per_eps"), 0.0)
        check_bounds(self, ("target_update_interval", "n_step"), 1)
        check_schedule(self.make_schedule, "epsilon")
        check_bounds(self, ("atoms", "quantiles"), 2)
        check_bounds(self, ("qr_kappa",), 0.0)
        check_bounds(self, ("noisy_sigma0",), 0.0, strict=True)
        check_bounds(self, ("m_alpha",), 0.0, high=1.0)
        check_bounds(self, ("m_tau",), 0.0, strict=True)
        if self.distributional == "c51":
            try:
                check_support(self.v_min, self.v_max, self.atoms)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if not self.m_clip <= 0.0:
            raise ConfigError(f"m_clip must be <= 0, got {self.m_clip}")
        if self.collector_priorities and not (self.prioritized and self.n_collectors):
            raise ConfigError(
                "collector_priorities needs prioritized=true and collectors >= 1 "
                f"(got prioritized={self.prioritized}, collectors={self.n_collectors})"
            )
        if self.amp == "bf16" and self.cuda_graph:
            raise ConfigError("amp=bf16 is not captured in CUDA graphs: use amp=none with cuda_graph=true")
        if self.distributional != "none" and self.sail:
            raise ConfigError(
                f"sail adds a scalar bonus to the target; it has no distributional form: "
                f"use sail with distributional=none (got {self.distributional})"
            )
        if self.munchausen:
            for bad, why in (
                (self.distributional != "none", f"a scalar head (got distributional={self.distributional})"),
                (self.n_step > 1, f"1-step targets (got n_step={self.n_step}): the bonus is per step"),
                (self.sail, "sail off (both change the target)"),
            ):
                if bad:
                    raise ConfigError(f"munchausen needs {why}")

    def replay(self) -> ReplaySpec:
        """The replay this agent's update needs: n-step sums, prioritized replay, episode returns (SAIL)."""
        return ReplaySpec(
            self.buffer_size,
            n_step=self.n_step,
            gamma=self.gamma if self.n_step > 1 else None,
            prioritized=self.prioritized,
            alpha=self.per_alpha,
            eps=self.per_eps,
            beta_start=self.per_beta_start,
            episode_returns_gamma=self.gamma if self.sail else None,
            terminated_next_observations=self.replay_terminated_next,
        )

    def make_schedule(self) -> Schedule:
        """Epsilon's schedule (constant 0 with noisy nets unless an epsilon field was set)."""
        if self.noisy and all(getattr(self, f) == _EPSILON_DEFAULTS[f] for f in _EPSILON_DEFAULTS):
            return Schedule(kind="constant", start=0.0, end=0.0, duration=1, decay=1.0, unit=self.epsilon_unit)
        return Schedule(
            kind=self.epsilon_schedule,
            start=self.epsilon_start,
            end=self.epsilon_end,
            duration=self.epsilon_duration,
            decay=self.epsilon_decay,
            unit=self.epsilon_unit,
        )


_EPSILON_DEFAULTS = {
    f: getattr(DQNConfig, f)
    for f in ("epsilon_schedule", "epsilon_start", "epsilon_end", "epsilon_duration", "epsilon_decay")
}


def bf16_helps(device: torch.device) -> bool:
    """Whether ``amp="auto"`` picks bf16 on ``device`` for the Nature CNN: a CPU whose oneDNN has
    bf16 kernels (avx512_bf16 or AMX). CUDA is left float32 until measured on a GPU."""
    if device.type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class DQN:
    """A DQN agent for a discrete action space.

    Args:
        obs_shape: shape of one observation; n_actions: number of discrete actions.
        config: a :class:`DQNConfig` (its agent fields are used here).
        device: torch device of the networks.
        pixels: use the Nature CNN torso (True, observations ``uint8[B, C, H, W]``) or the MinAtar
            one (``"minatar"``, observations ``bool / uint8[B, H, W, C]``).
        seed: seeds the exploration generator (numpy) used by :meth:`act`.
        network: your own Q-network (``[B, *obs_shape] -> float32[B, n_actions]``) instead of
            :class:`fastrl.agents.nets.QNetwork`; the target network is a deep copy of it.
    """

    def __init__(
        self,
        obs_shape: Sequence[int],
        n_actions: int,
        config: DQNConfig | None = None,
        device: Any = "cpu",
        pixels: bool | str = False,
        seed: int | None = None,
        network: torch.nn.Module | None = None,
    ) -> None:
        self.config = cfg = config if config is not None else DQNConfig()
        cfg.check()
        self.device = torch.device(device)
        self.n_actions = int(n_actions)
        self.atoms = {"none": 1, "c51": cfg.atoms, "qr": cfg.quantiles}[cfg.distributional]
        own_network = network is not None
        if network is None:
            network = QNetwork(
                obs_shape, n_actions, cfg.hidden_sizes, cfg.dueling, pixels, self.atoms, cfg.noisy, cfg.noisy_sigma0
            )
        if cfg.cuda_graph and self.device.type != "cuda":
            raise ConfigError(
                f"cuda_graph=True needs a CUDA device, but the agent is on {self.device}; "
                "set cuda_graph=False (or use --device cuda)"
            )
        self.q = network.to(self.device)
        self.bf16 = cfg.amp == "bf16" or (
            cfg.amp == "auto"
            and not own_network
            and pixels in (True, "nature")
            and not cfg.cuda_graph
            and bf16_helps(self.device)
        )
        """Whether the update runs under bfloat16 autocast (``config.amp`` resolved)."""
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self._params: list[torch.Tensor] = list(self.q.parameters())
        self._target_params: list[torch.Tensor] = list(self.q_target.parameters())
        self._buffers = list(self.q.buffers())
        self._target_buffers = list(self.q_target.buffers())
        self.optimizer = adam(self._params, cfg.learning_rate, cfg.adam_eps, self.device, capturable=cfg.cuda_graph)
        self._graph = _GraphedUpdate(self) if cfg.cuda_graph else None
        self.exploration = cfg.make_schedule()
        self.rng = np.random.default_rng(seed)
        self.updates = 0
        self._q_y: tuple[torch.Tensor, torch.Tensor] | None = None  # Q(s, a) and y of the last update
        self._per_sample: torch.Tensor | None = None  # the last update's distributional loss per sample
        self.noise_rng: torch.Generator | None = None
        if cfg.noisy:
            if not hasattr(self.q, "reset_noise"):
                raise ConfigError("noisy=True needs a network with reset_noise(generator) and set_noise(on)")
            self.noise_rng = torch.Generator(self.device)
            self.noise_rng.manual_seed(int(self.rng.integers(2**63)))
            self.reset_noise()
        if cfg.distributional == "c51":
            self.support = torch.linspace(cfg.v_min, cfg.v_max, cfg.atoms, device=self.device)

    @classmethod
    def from_spaces(cls, obs_space: Any, action_space: Any, config: DQNConfig, device: Any, seed: int | None) -> DQN:
        """The agent for a gymnasium env's spaces (ConfigError for a non-Discrete action space);
        the torso by ``config.network`` (auto: see :class:`DQNConfig`)."""
        import gymnasium as gym

        if not isinstance(action_space, gym.spaces.Discrete):
            raise ConfigError(
                f"DQN needs a discrete action space but {config.env_id} has "
                f"{type(action_space).__name__} actions; use ddpg or td3 for continuous actions"
            )
        shape = tuple(obs_space.shape or ())
        pixels: bool | str = config.network == "cnn"
        if config.network == "minatar" or (config.network == "auto" and is_small_grid(shape, obs_space.dtype)):
            pixels = "minatar"
        elif config.network == "auto":
            pixels = obs_space.dtype == np.uint8 and len(shape) == 3
        return cls(shape, int(action_space.n), config, device, pixels=pixels, seed=seed)

    @property
    def epsilon(self) -> float:
        return self.exploration.value

    # ------------------------------------------------------------------ what the training loop calls
    def random_actions(self, n: int) -> np.ndarray:
        """Uniformly random actions ``int64[n]`` (the burn-in before ``learning_starts``)."""
        return self.rng.integers(self.n_actions, size=n)

    def after_env_step(self, done: np.ndarray) -> None:
        """Advance epsilon after one vector-env step (``done: bool[N]``, episodes that ended)."""
        self.exploration.next_step(len(done))
        if done.any():
            self.exploration.next_episode(int(done.sum()))

    def progress(self) -> dict[str, float]:
        """Scalars for the log and the progress bar."""
        return {"charts/epsilon": self.epsilon}

    # ------------------------------------------------------------------ acting
    def act(self, obs: Any, explore: bool = True) -> np.ndarray:
        """Epsilon-greedy (``explore``) or greedy actions ``int64[N]`` for observations ``[N, *obs_shape]``."""
        obs = np.asarray(obs)
        n = obs.shape[0]
        if explore:
            eps = self.exploration.value
            random_mask = self.rng.random(n) < eps
            random_actions = self.rng.integers(self.n_actions, size=n)
            if random_mask.all():
                return random_actions
        actions = self._argmax(obs, noise=True)
        if explore and random_mask.any():
            actions = np.where(random_mask, random_actions, actions)
        return actions

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """argmax_a Q(obs, a) as ``int64[N]`` (noisy nets: with the mean weights)."""
        return self._argmax(obs, noise=False)

    @torch.inference_mode()
    def _argmax(self, obs: np.ndarray, noise: bool) -> np.ndarray:
        x = torch.as_tensor(obs, device=self.device)
        if self.noise_rng is None or noise:  # (the noise is on between calls)
            return self.q_values(self.q(x)).argmax(dim=1).cpu().numpy()
        self.q.set_noise(noise)  # type: ignore[operator]
        try:
            return self.q_values(self.q(x)).argmax(dim=1).cpu().numpy()
        finally:
            self.q.set_noise(True)  # type: ignore[operator]

    def q_values(self, out: torch.Tensor) -> torch.Tensor:
        """Q-values ``[B, A]`` from the network's output: itself, the mean of C51's distribution
        (softmax of the logits ``[B, A, atoms]`` times the support) or of QR's quantiles."""
        if self.atoms == 1:
            return out
        if self.config.distributional == "c51":
            return torch.softmax(out, dim=2) @ self.support
        return out.mean(dim=2)

    @torch.inference_mode()
    def fresh_priorities(
        self, obs: Any, actions: Any, returns: Any, discounts: Any, bootstrap_obs: Any, terminated: Any
    ) -> np.ndarray:
        """Initial priorities of new transitions, as Ape-X's actors compute them: ``float32[B]``
        ``|returns + discounts * ~terminated * max_a Q(bootstrap_obs, a) - Q(obs, actions)|`` with the
        online network alone (an actor has no target network; noisy nets act with their current
        noise), Q the mean of a distributional head. ``returns``: the discounted reward sums,
        ``discounts``: gamma ** (steps summed), ``terminated``: of the last summed step, whose next
        observation is ``bootstrap_obs``."""
        b = len(obs)
        q = self.q_values(self.q(torch.as_tensor(np.concatenate([obs, bootstrap_obs]), device=self.device)))
        q_sa = q[:b].gather(1, torch.as_tensor(actions, device=self.device).long().view(-1, 1)).squeeze(1)
        v_next = q[b:].max(dim=1).values.masked_fill_(torch.as_tensor(terminated, device=self.device), 0.0)
        y = torch.as_tensor(returns, device=self.device) + torch.as_tensor(discounts, device=self.device) * v_next
        return (y - q_sa).abs().float().cpu().numpy()

    def reset_noise(self) -> None:
        """New noise for the online and the target network (noisy nets), from ``noise_rng``."""
        self.q.reset_noise(self.noise_rng)  # type: ignore[operator]
        self.q_target.reset_noise(self.noise_rng)  # type: ignore[operator]

    # ------------------------------------------------------------------ learning
    def td_target(self, batch: Batch, q_next_online: torch.Tensor | None = None) -> torch.Tensor:
        """y = r + discount * (1 - terminated) * Q_target(s', a*) [+ SAIL bonus]: ``float32[B]``.

        ``a*`` is argmax of the online network with Double DQN (``q_next_online``, the online
        Q-values of the next observations, may be passed in), of the target network otherwise.
        ``discount`` is gamma, or ``batch.discounts`` (gamma**k of each n-step sample) when present.
        Truncated transitions bootstrap like any other; only ``terminated`` stops it. With ``sail``
        the :meth:`sail_bonus` is added (one target-network pass over s and s').
        """
        with torch.no_grad():
            next_obs = batch.next_observations
            if self.config.sail:
                b = batch.observations.shape[0]
                q_t = self.q_target(torch.cat([batch.observations, next_obs]))
                q_obs_target, q_next_target = q_t[:b].float(), q_t[b:]
            else:
                q_next_target = self.q_target(next_obs)
            if self.config.double_dqn:
                if q_next_online is None:
                    q_next_online = self.q(next_obs)
                a_star = q_next_online.argmax(dim=1, keepdim=True)
            else:
                a_star = q_next_target.argmax(dim=1, keepdim=True)
            q_next = q_next_target.gather(1, a_star).squeeze(1).float()  # float32 under amp too
            discount = getattr(batch, "discounts", None)
            if discount is None:
                discount = self.config.gamma
            y = batch.rewards.float() + discount * q_next.masked_fill_(batch.terminated, 0.0)
            if self.config.sail:
                y = y + self.sail_bonus(batch, q_obs_target)
            return y

    def sail_bonus(self, batch: Batch, q_obs_target: torch.Tensor) -> torch.Tensor:
        """``alpha * (max(G, Q_target(s, a)) - max_b Q_target(s, b))`` where the transition has an
        observed return G (``batch.extras["returns"]``, ``["has_return"]``), 0 where it has not:
        ``float32[B]``. ``q_obs_target``: ``float32[B, n_actions]``, the target network at s.

        With n-step targets G is still the return from s (its own discounted return-to-go), so the
        bonus is the same. G of a truncated episode is its observed partial return.
        """
        extras = batch.extras
        if "returns" not in extras or "has_return" not in extras:
            raise ValueError(
                "SAIL needs episode returns in the batch: sample from a buffer made with "
                "ReplayBuffer(..., episode_returns_gamma=gamma)"
            )
        q_sa = q_obs_target.gather(1, batch.actions.long().view(-1, 1)).squeeze(1)
        v = q_obs_target.max(dim=1).values
        bonus = self.config.sail_alpha * (torch.maximum(extras["returns"].float(), q_sa) - v)
        return torch.where(extras["has_return"], bonus, torch.zeros_like(bonus))

    def distributional_target(self, batch: Batch, out_next_online: torch.Tensor | None = None) -> torch.Tensor:
        """The target distribution of C51 (``float32[B, atoms]``: the next state's distribution
        under the target network, projected by :func:`~fastrl.agents.losses.categorical_projection`)
        or of QR-DQN (``float32[B, quantiles]``: ``r + discount * (1 - terminated) * theta(s', a*)``).
        ``a*`` maximises the mean of the online network's output (Double DQN; ``out_next_online``
        may be passed in) or of the target network's."""
        cfg = self.config
        with torch.no_grad():
            out_next = self.q_target(batch.next_observations)  # [B, A, atoms]
            if cfg.double_dqn:
                if out_next_online is None:
                    out_next_online = self.q(batch.next_observations)
                a_star = self.q_values(out_next_online).argmax(dim=1)
            else:
                a_star = self.q_values(out_next).argmax(dim=1)
            next_sa = out_next.gather(1, a_star.view(-1, 1, 1).expand(-1, 1, self.atoms)).squeeze(1).float()
            discount = getattr(batch, "discounts", None)
            if discount is None:
                discount = cfg.gamma
            if cfg.distributional == "c51":
                probs = torch.softmax(next_sa, dim=1)
                return categorical_projection(probs, batch.rewards, discount, batch.terminated, cfg.v_min, cfg.v_max)
            bootstrap = (~batch.terminated).float() * discount
            return batch.rewards.float().unsqueeze(1) + bootstrap.unsqueeze(1) * next_sa

    def munchausen_target(self, batch: Batch) -> torch.Tensor:
        """The Munchausen-DQN target ``float32[B]`` (:func:`~fastrl.agents.losses.munchausen_target`)
        from the target network at s and s' (one pass over both)."""
        cfg = self.config
        with torch.no_grad():
            b = batch.observations.shape[0]
            q_t = self.q_target(torch.cat([batch.observations, batch.next_observations])).float()
            discount = getattr(batch, "discounts", None)
            return munchausen_target(
                q_t[:b],
                q_t[b:],
                batch.actions,
                batch.rewards,
                cfg.gamma if discount is None else discount,
                batch.terminated,
                cfg.m_alpha,
                cfg.m_tau,
                cfg.m_clip,
            )

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step on ``batch``; returns 0-d tensors ``losses/td_loss``, ``losses/q_values``
        (call ``float()`` only when logging: it waits for the device). Noisy nets draw new noise
        for both networks first."""
        if self.noise_rng is not None:
            self.reset_noise()
        if self._graph is not None:
            loss, q, y, per_sample, target_updated = self._graph.run(batch)
        else:
            loss, q, y, per_sample = self._learn(batch)
            target_updated = False
        self.updates += 1
        if self.updates % self.config.target_update_interval == 0 and not target_updated:
            self.update_target()
        self._q_y = q, y
        self._per_sample = per_sample
        return {"losses/td_loss": loss, "losses/q_values": q.mean()}

    def _learn(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Loss, backward, clipping, Adam step: (loss, Q(s, a), target y, the distributional loss
        per sample or None), all detached."""
        cfg = self.config
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
            out_obs = self.q(batch.observations)
            out_next_online = None
            if cfg.double_dqn and not cfg.munchausen:
                # s' apart and without autograd: backward then runs over B rows, not 2B (a forward
                # over cat([s, s']) saved a call but doubled the backward's matmuls; measured in
                # bench_learning.py --update-cost)
                with torch.no_grad():
                    out_next_online = self.q(batch.next_observations)
            if self.atoms == 1:
                y = self.munchausen_target(batch) if cfg.munchausen else self.td_target(batch, out_next_online)
            else:
                y = self.distributional_target(batch, out_next_online)
        out_obs, y = out_obs.float(), y.float()  # no-ops without amp
        a = batch.actions.long()
        if self.atoms == 1:
            q = out_obs.gather(1, a.view(-1, 1)).squeeze(1)
            per_sample = F.smooth_l1_loss(q, y, reduction="none") if cfg.loss == "huber" else (q - y).square()
            dist_loss = None
        else:
            pred = out_obs.gather(1, a.view(-1, 1, 1).expand(-1, 1, self.atoms)).squeeze(1)  # [B, atoms]
            if cfg.distributional == "c51":  # cross-entropy to the projected target
                log_p = torch.log_softmax(pred, dim=1)
                per_sample = -(y * log_p).sum(dim=1)
                q = log_p.detach().exp() @ self.support  # the mean of the predicted distribution
            else:
                per_sample = quantile_huber_loss(pred, y, cfg.qr_kappa)
                q = pred.detach().mean(dim=1)
            dist_loss = per_sample.detach()
        weights = getattr(batch, "weights", None)
        loss = (per_sample * weights).mean() if weights is not None else per_sample.mean()

        clear_grads_(self.optimizer)
        loss.backward()
        clip_grads_(self._params, cfg.max_grad_norm, cfg.clip_grad_value)
        step_(self.optimizer)
        return loss.detach(), q.detach(), y, dist_loss

    @property
    def td_abs(self) -> torch.Tensor | None:
        """New priorities for PER of the last update's batch, ``float32[B]``: |TD error| (computed
        when asked), or the per-sample loss of a distributional head (C51's cross-entropy, QR's
        quantile Huber loss)."""
        if self._graph is not None and self._graph.td_abs is not None and self._graph.replayed:
            return self._graph.td_abs  # computed in the graph (prioritized replay)
        if self._per_sample is not None:
            return self._per_sample
        if self._q_y is None:
            return None
        q, y = self._q_y
        return (q - y).abs()

    @property
    def static_batch(self) -> Batch | None:
        """With ``cuda_graph``, after the first update: the graph's input tensors. A loop may fill
        them itself (``buffer.sample_into(agent.static_batch, ...)``) and pass them to
        :meth:`update`, which then copies nothing. None without ``cuda_graph``."""
        return None if self._graph is None else self._graph.static

    def update_target(self) -> None:
        """Hard copy (tau == 1) or Polyak step (tau < 1) of the online into the target network
        (both helpers work without autograd)."""
        polyak_(self._target_params, self._params, self.config.tau)
        if self._buffers:
            copy_buffers_(self._target_buffers, self._buffers)

    # ------------------------------------------------------------------ state
    _STATE = ("q", "q_target", "optimizer", "exploration")
    """The attributes whose state_dict() a checkpoint holds (with the generator and update count)."""

    def state_dict(self) -> dict[str, Any]:
        state = agent_state(self, self._STATE)
        if self.noise_rng is not None:
            state["noise_rng"] = self.noise_rng.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.noise_rng is not None and "noise_rng" not in state:
            raise ValueError("this agent has noisy nets but the state has no noise_rng (not a noisy-net agent's)")
        load_agent_state(self, self._STATE, state)
        if self.noise_rng is not None:
            self.noise_rng.set_state(state["noise_rng"].cpu())
        if self._graph is not None:
            self._graph = _GraphedUpdate(self)  # the graph read the old optimizer state tensors


class _GraphedUpdate:
    """``DQN._learn`` in a CUDA graph (``DQNConfig.cuda_graph``), after torch's recipe
    (https://pytorch.org/docs/stable/notes/cuda.html#cuda-graphs): every call copies the batch
    into static tensors (non-blocking); the first ``WARMUP`` calls run the update eagerly on a side
    stream (Adam's state, cuBLAS workspaces and autograd's buffers are created outside the
    capture), the next one captures it, and each call from then on replays it. With
    ``target_update_interval == 1`` the target update is captured too."""

    WARMUP = 3

    def __init__(self, agent: DQN) -> None:
        self.agent = agent
        self.static: Batch | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None
        self.td_abs: torch.Tensor | None = None  # |q - y| captured too with prioritized replay
        self.replayed = False  # whether the last call replayed the graph
        self.warmups = 0
        self.stream = torch.cuda.Stream(agent.device)
        self.with_target = agent.config.target_update_interval == 1

    def run(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
        """(loss, Q(s, a), y, the distributional loss per sample or None, whether the target
        network was updated); all but the loss are the static outputs, overwritten by the next call."""
        # the agent's device made current: the streams, the capture's side stream and the replay
        # below are the current device's (an agent on cuda:1 while cuda:0 is current)
        with torch.cuda.device(self.agent.device):
            return self._run(batch)

    def _run(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
        if self.static is None:
            self.static = _map_batch(batch, lambda x: torch.empty_like(x, device=self.agent.device))
        if batch is not self.static:
            _copy_batch_(self.static, batch)
        self.replayed = False
        if self.warmups < self.WARMUP:
            self.warmups += 1
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                loss, q, y, per_sample = self.agent._learn(self.static)
            torch.cuda.current_stream().wait_stream(self.stream)
            return loss, q, y, per_sample, False
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            clear_grads_(self.agent.optimizer)  # backward allocates the gradients in the graph's pool
            with torch.cuda.graph(self.graph):
                self.out = self.agent._learn(self.static)
                if self.agent.config.prioritized:
                    per_sample = self.out[3]
                    self.td_abs = per_sample if per_sample is not None else (self.out[1] - self.out[2]).abs()
                if self.with_target:
                    self.agent.update_target()
        self.graph.replay()
        self.replayed = True
        assert self.out is not None
        loss, q, y, per_sample = self.out
        return loss.clone(), q, y, per_sample, self.with_target


def _map_batch(batch: Batch, fn: Any) -> Batch:
    """``batch`` with ``fn`` applied to every tensor (in ``extras`` too)."""

    def one(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return fn(v)
        if isinstance(v, dict):
            return {k: fn(t) for k, t in v.items()}
        return v

    return type(batch)(*(one(v) for v in batch))


def _copy_batch_(dst: Batch, src: Batch) -> None:
    """Non-blocking copies of ``src``'s tensors into ``dst``'s (ValueError on another layout)."""
    pairs = []
    for d, s in zip(dst, src):
        if isinstance(d, dict) and isinstance(s, dict) and d.keys() == s.keys():
            pairs += [(d[k], s[k]) for k in d]
        elif isinstance(d, torch.Tensor) and isinstance(s, torch.Tensor):
            pairs.append((d, s))
        elif d is not None or s is not None:
            raise ValueError("cuda_graph: every batch must have the fields of the first one")
    for d, s in pairs:
        if d.shape != s.shape or d.dtype != s.dtype:
            raise ValueError(
                f"cuda_graph: every batch must have the shapes and dtypes of the first one "
                f"(got {tuple(s.shape)} {s.dtype}, captured {tuple(d.shape)} {d.dtype})"
            )
        d.copy_(s, non_blocking=True)
