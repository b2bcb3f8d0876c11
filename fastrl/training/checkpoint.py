"""Checkpoint files: written atomically (temp file, fsync, rename), read with ``weights_only=True``.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts (no pickled objects) with a
BLAKE2 digest of all of it, checked on load: damage anywhere (even inside tensor data, which the
zip container does not check) is reported instead of loading wrong weights. The
replay buffer is stored beside it in its own format (:meth:`fastrl.ReplayBuffer.save`), under a
name the checkpoint records, so a checkpoint never points at a buffer from another moment.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from fastrl._util import atomic_write
from fastrl.agents.registry import ALGOS
from fastrl.config import ConfigError, from_dict

FORMAT = "fastrl-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be read (damaged, truncated, or not a fastrl checkpoint)."""


def save(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a crash leaves the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "version": VERSION, **state}
    state["digest"] = _digest(state)
    with atomic_write(path, "wb", fsync=True) as f:
        torch.save(state, f)


def load(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save`; CheckpointError if it is damaged or foreign."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ... on damage
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path} is damaged or not a fastrl checkpoint ({first[:200]}); "
            "use another checkpoint of the run (checkpoints/step_*.pt)"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a fastrl checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint version {state.get('version')!r}")
    digest = state.pop("digest", None)
    if digest != _digest(state):
        raise CheckpointError(
            f"{path} is damaged (checksum mismatch); use another checkpoint of the run (checkpoints/step_*.pt)"
        )
    return state


def _digest(obj: Any) -> str:
    """BLAKE2b over every value of a nested checkpoint dict (tensors by dtype, shape and bytes)."""
    h = hashlib.blake2b(digest_size=20)

    def walk(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(x, dict):
            h.update(b"{")
            for k in sorted(x, key=str):
                h.update(repr(k).encode())
                walk(x[k])
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                walk(v)
            h.update(b"]")
        else:
            h.update(repr(x).encode())

    walk(obj)
    return h.hexdigest()


def find(run_or_file: str | os.PathLike[str], prefer: tuple[str, ...] = ("last.pt",)) -> Path:
    """A checkpoint file: ``run_or_file`` itself, or the first of ``prefer`` in its checkpoints/ folder."""
    p = Path(run_or_file)
    if p.is_file():
        return p
    if not p.is_dir():
        raise CheckpointError(f"{p}: no such run directory or checkpoint file")
    for name in prefer:
        for cand in (p / "checkpoints" / name, p / name):
            if cand.is_file():
                return cand
    raise CheckpointError(f"{p}: no checkpoint found (looked for {', '.join(prefer)} in checkpoints/)")


def saved_run(ckpt: dict[str, Any], path: Any) -> tuple[str, Any]:
    """``(algo, config)`` recorded in a loaded checkpoint, both checked: ConfigError for an
    algorithm this fastrl does not know or a config it rejects, CheckpointError for no config."""
    algo = ckpt.get("algo")
    if not isinstance(algo, str) or algo not in ALGOS:
        raise ConfigError(
            f"{path}: checkpoint algorithm {algo!r} is unknown to this fastrl (known: {', '.join(ALGOS)})"
        )
    if not isinstance(ckpt.get("config"), dict):
        raise CheckpointError(f"{path}: checkpoint has no config")
    return algo, from_dict(ALGOS[algo].config, ckpt["config"])
