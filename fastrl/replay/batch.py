"""The sampled batch: torch tensors that share memory with the arrays the C++ core filled."""

from __future__ import annotations

from typing import NamedTuple

import torch

from fastrl.replay.schema import STANDARD_FIELDS

N_STD = len(STANDARD_FIELDS)
"""observations, actions, rewards, next_observations, terminated, truncated."""


class Batch(NamedTuple):
    """A sampled batch. Tensors share memory with the arrays C++ filled (no copy on CPU).

    observations: ``obs_dtype[B, *obs_shape]``; actions: ``act_dtype[B, *action_shape]``;
    rewards: ``float32[B]``; next_observations: ``obs_dtype[B, *obs_shape]``;
    terminated, truncated: ``bool[B]``; indices: ``int64[B]`` ids of the sampled rows (the
    slot in the storage is ``indices % capacity``); extras: the user-declared fields by name,
    plus ``returns: float32[B]`` and ``has_return: bool[B]`` when the buffer keeps episode
    returns (``episode_returns_gamma``); weights: ``float32[B]`` importance weights from a
    prioritized buffer, None otherwise.

    With n-step sampling (``sample(..., n_step=n, gamma=g)``) ``rewards`` is the discounted sum of
    the k <= n rewards summed (float32, or float64 for a float64 reward field);
    ``next_observations``, ``terminated`` and ``truncated`` are those of the last summed step, and
    ``discounts: float[B]`` is ``g ** k``, so the target is
    ``rewards + discounts * ~terminated * V(next_observations)`` (``terminated`` is bool: ``~``
    negates it and the product promotes it to float; ``1 - terminated`` raises in torch).
    ``discounts`` is None without ``gamma``; the one-step target is then
    ``rewards + gamma * ~terminated * V(next_observations)``.

    Frame stacks (``frame_stack=k > 1``), one-step CPU batches (``sample``, and an unpinned
    ``empty_batch`` for ``sample_into``): the next stack is the observation stack shifted by one
    frame, so both are views of one ``[B, k + 1, ...]`` array of frame windows
    (``observations = w[:, :k]``, ``next_observations = w[:, 1:]``): k + 1 frames are copied per
    row instead of 2k. The two tensors share memory and are not contiguous (a row is k + 1 frames
    apart); an in-place change of one shows in the other. n-step batches, pinned staging for CUDA
    and device batches are separate contiguous tensors.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    indices: torch.Tensor
    extras: dict[str, torch.Tensor]
    weights: torch.Tensor | None = None
    discounts: torch.Tensor | None = None


def to_device(b: Batch, device: torch.device) -> Batch:
    def move(t: torch.Tensor) -> torch.Tensor:
        return t.to(device, non_blocking=True)

    return Batch(
        move(b.observations),
        move(b.actions),
        move(b.rewards),
        move(b.next_observations),
        move(b.terminated),
        move(b.truncated),
        move(b.indices),
        {k: move(v) for k, v in b.extras.items()},
        weights=None if b.weights is None else move(b.weights),
        discounts=None if b.discounts is None else move(b.discounts),
    )


def copy_batch(src: Batch, dst: Batch) -> None:
    for s, d in zip(src[:7], dst[:7]):
        d.copy_(s, non_blocking=True)
    for k, d in dst.extras.items():
        d.copy_(src.extras[k], non_blocking=True)
    if dst.weights is not None and src.weights is not None:
        dst.weights.copy_(src.weights, non_blocking=True)
    if src.discounts is not None and dst.discounts is not None:
        dst.discounts.copy_(src.discounts, non_blocking=True)
