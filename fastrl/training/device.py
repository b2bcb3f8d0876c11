"""The torch device of a run, and the config of an agent placed on another device than the run's."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import torch

from fastrl.config import ConfigError

C = TypeVar("C")


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda, then mps, then cpu; otherwise the named device (ConfigError if unusable)."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but torch sees no CUDA GPU; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device {device!r} asked for but torch sees {torch.cuda.device_count()} CUDA GPU(s): "
            f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} asked for but MPS is not available; use --device cpu")
    return dev


def flushes_denormals() -> bool:
    """Whether this thread's CPU float math treats denormals as zero (``torch.set_flush_denormal``,
    which has no getter): a denormal times one reads back as zero then."""
    return float(torch.tensor([1e-40]).mul_(1.0)) == 0.0


def config_for_device(config: C, device: Any) -> C:
    """``config`` for an agent on ``device``, with the CUDA-only options off when it is not CUDA:
    ``cuda_graph`` changes how an update runs, not what it computes, so the checkpoint of a
    CUDA-graph run evaluates on the CPU and a concurrent run's collector acts on the CPU."""
    if getattr(config, "cuda_graph", False) and torch.device(device).type != "cuda":
        return dataclasses.replace(config, cuda_graph=False)  # type: ignore[type-var]
    return config
