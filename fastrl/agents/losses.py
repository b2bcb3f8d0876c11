"""The targets and losses of the DQN family beyond the scalar TD error, as plain torch functions of
tensors (no networks inside): the categorical projection of C51 (Bellemare et al., 2017), the
quantile Huber loss of QR-DQN (Dabney et al., 2018) and the Munchausen target (Vieillard et al.,
2020). tests/reference.py holds a slow loop for each, and tests/test_dqn_family.py checks them."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_support(v_min: float, v_max: float, atoms: int) -> None:
    """ValueError unless ``v_min < v_max`` (finite) and ``atoms >= 2``."""
    if not (-float("inf") < v_min < v_max < float("inf")):
        raise ValueError(f"v_min must be < v_max (both finite), got v_min={v_min}, v_max={v_max}")
    if atoms < 2:
        raise ValueError(f"atoms must be >= 2, got {atoms}")


def categorical_projection(
    probs: torch.Tensor,
    rewards: torch.Tensor,
    discounts: torch.Tensor | float,
    terminated: torch.Tensor,
    v_min: float,
    v_max: float,
) -> torch.Tensor:
    """The distribution of ``r + discount * (1 - terminated) * Z`` projected onto the support.

    ``probs``: ``float32[B, N]``, the next state's distribution over the ``N`` atoms
    ``z_j = v_min + j * (v_max - v_min) / (N - 1)``; ``rewards``, ``terminated``: ``[B]``;
    ``discounts``: gamma, or ``float32[B]`` (gamma**k of each n-step sample). Each shifted atom is
    clipped to ``[v_min, v_max]`` and its mass split between the two nearest atoms in proportion to
    closeness (all of it to one atom when it lands exactly on it). Returns ``float32[B, N]``, each
    row summing to its row of ``probs``. ValueError when ``v_min >= v_max``.
    """
    n = probs.shape[1]
    check_support(v_min, v_max, n)
    dz = (v_max - v_min) / (n - 1)
    bootstrap = (~terminated).float() * discounts  # no host tensor made: safe in a CUDA graph capture
    # the fractional atom index of r + bootstrap * z_j, z_j = v_min + j * dz, computed in index space:
    # (r - v_min + bootstrap * v_min) / dz + bootstrap * j, clipped to [0, n - 1] (= tz clipped to the support)
    offset = (rewards.float() - v_min).add_(bootstrap, alpha=v_min).div_(dz)
    j = torch.arange(n, device=probs.device, dtype=torch.float32)
    b = torch.addcmul(offset.unsqueeze(1), bootstrap.unsqueeze(1), j).clamp_(0, n - 1)
    lower = b.long()  # floor (b >= 0)
    p_upper = probs * b.frac_()  # frac 0 when b is on an atom: all the mass to the lower (= that) atom
    m = torch.zeros_like(probs).scatter_add_(1, lower, probs - p_upper)
    return m.scatter_add_(1, (lower + 1).clamp_(max=n - 1), p_upper)


def quantile_huber_loss(quantiles: torch.Tensor, targets: torch.Tensor, kappa: float = 1.0) -> torch.Tensor:
    """QR-DQN's loss per sample: ``sum_i mean_j rho_kappa(tau_i, T_j - theta_i)`` with
    ``rho_kappa(tau, u) = |tau - 1{u < 0}| * huber_kappa(u) / kappa`` (``|tau - 1{u < 0}| * |u|``
    for ``kappa == 0``) and the quantile midpoints ``tau_i = (2i + 1) / 2N``.

    ``quantiles``: ``float32[B, N]`` (theta, the prediction); ``targets``: ``float32[B, M]``
    (no gradient flows into them). Returns ``float32[B]``.
    """
    n, m = quantiles.shape[1], targets.shape[1]
    taus = ((torch.arange(n, device=quantiles.device, dtype=torch.float32) + 0.5) / n).view(1, n, 1)
    theta = quantiles.unsqueeze(2).expand(-1, n, m)
    t = targets.detach().unsqueeze(1).expand(-1, n, m)  # [B, N, M]: u = t - theta
    # F.huber_loss: one fused kernel forward and backward (5x faster than the formula at N = 200)
    loss = F.huber_loss(theta, t, reduction="none", delta=kappa) / kappa if kappa > 0 else (t - theta).abs()
    weight = torch.where(t < theta, 1.0 - taus, taus)  # |tau - 1{u < 0}|
    return (weight * loss).sum(dim=(1, 2)) / m


def scaled_log_policy(q: torch.Tensor, tau: float) -> torch.Tensor:
    """``tau * log softmax(q / tau)`` over the last dimension, computed stably:
    ``q - max q - tau * logsumexp((q - max q) / tau)``."""
    adv = q - q.max(dim=-1, keepdim=True).values
    return adv - tau * torch.logsumexp(adv / tau, dim=-1, keepdim=True)


def munchausen_target(
    q_obs_target: torch.Tensor,
    q_next_target: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    discounts: torch.Tensor | float,
    terminated: torch.Tensor,
    alpha: float,
    tau: float,
    clip: float,
) -> torch.Tensor:
    """The Munchausen-DQN target ``float32[B]``:

    ``r + alpha * clip(tau * log pi(a | s), clip, 0)
    + discount * (1 - terminated) * sum_a' pi(a' | s') * (q(s', a') - tau * log pi(a' | s'))``

    with ``pi = softmax(q / tau)`` of the target network (``q_obs_target``, ``q_next_target``:
    ``float32[B, A]``), ``actions``: ``int[B]``, the rest as in :func:`categorical_projection`.
    """
    log_pi_obs = scaled_log_policy(q_obs_target, tau).gather(1, actions.long().view(-1, 1)).squeeze(1)
    bonus = alpha * log_pi_obs.clamp(min=clip, max=0.0)
    log_pi_next = scaled_log_policy(q_next_target, tau)
    soft_v = (torch.softmax(q_next_target / tau, dim=1) * (q_next_target - log_pi_next)).sum(dim=1)
    return rewards.float() + bonus + discounts * soft_v.masked_fill(terminated, 0.0)
