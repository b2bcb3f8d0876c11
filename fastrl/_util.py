"""Small helpers every layer uses: one atomic file writer, one set of argument validators, one
array -> numpy helper. Imports nothing of fastrl (the bottom of the import graph)."""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", fsync: bool = False) -> Iterator[IO[Any]]:
    """Open ``path.tmp`` for writing and rename it over ``path`` when the block ends without an
    error, so a crash leaves the old file or the new one, never half of one. ``fsync``: flush the
    data to disk before the rename (checkpoints, replay files)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, mode) as f:
        yield f
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """``path.write_text(text)``, atomically (see :func:`atomic_write`)."""
    with atomic_write(path) as f:
        f.write(text)


# ---------------------------------------------------------------------------- argument validators
# Each names the argument and what was expected; a bool is never taken for a number.
_INTS = (int, np.integer)


def is_int(value: Any) -> bool:
    """An int or numpy integer, not a bool."""
    return isinstance(value, _INTS) and not isinstance(value, bool)


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (either bound optional)."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if (low is not None and value < low) or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"<= {high}" if low is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def check_real(name: str, value: Any, low: float = 0.0, high: float | None = None) -> float:
    """``value`` as a finite float >= ``low`` (and <= ``high`` when given)."""
    if type(value) is not float and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if high is not None:
        if not low <= v <= high:
            raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value}")
    elif not math.isfinite(v) or v < low:
        raise ValueError(f"{name} must be a finite number >= {low:g}, got {value!r}")
    return v


def check_unit(name: str, value: Any) -> float:
    """A discount or mixing factor: a real number in [0, 1]."""
    return check_real(name, value, 0.0, 1.0)


def seed_value(seed: Any) -> int:
    """A generator seed in [0, 2**64); None draws one from the OS."""
    if seed is None:
        return secrets.randbits(64)
    if not is_int(seed):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return int(seed)


def check_nstep(n_step: Any, gamma: Any) -> tuple[int, float | None]:
    """``(n_step, gamma)`` of an n-step sampling call: gamma may be None only with n_step 1."""
    n_step = check_int("n_step", n_step, 1)
    if gamma is None:
        if n_step > 1:
            raise ValueError(f"n_step={n_step} needs the discount: pass gamma=")
        return 1, None
    return n_step, check_unit("gamma", gamma)


# ---------------------------------------------------------------------------- arrays
_VIEWABLE = frozenset(
    {torch.float32, torch.float64, torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool}
)


def as_numpy(name: str, x: Any, *, any_device: bool = False) -> np.ndarray:
    """``x`` as a numpy array to read: numpy arrays and CPU tensors as views (shared memory),
    half floats as float32 copies, anything else through ``np.asarray``. A tensor on another
    device is copied to the CPU with ``any_device=True``, else refused (TypeError)."""
    if type(x) is np.ndarray:
        return x
    if type(x) is torch.Tensor and x.is_cpu and not x.requires_grad and x.dtype in _VIEWABLE:
        return x.numpy()  # the common case (batch.indices, TD errors), checked cheaply
    if isinstance(x, torch.Tensor):
        if not x.is_cpu and not any_device:
            raise TypeError(f"{name}: expected a CPU tensor, got one on {x.device} (move it with .cpu())")
        x = x.detach()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # numpy may lack them; exact
        return x.cpu().resolve_conj().resolve_neg().numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: expected an array of numbers, got {type(x).__name__} ({e})") from None


def out_array(name: str, t: Any) -> np.ndarray:
    """The numpy view of a caller-owned output (numpy array or CPU tensor) to write into: never a
    converted copy, whose contents would be lost."""
    if isinstance(t, np.ndarray):
        return t
    if isinstance(t, torch.Tensor):
        if t.device.type != "cpu":
            raise TypeError(f"{name}: expected a CPU tensor here, got one on {t.device}")
        if t.requires_grad:
            raise TypeError(f"{name}: must not require grad")
        return t.numpy()
    raise TypeError(f"{name}: expected a numpy array or CPU tensor, got {type(t).__name__}")


def as_ids(indices: Any) -> np.ndarray:
    """Row ids (any integer array, list or tensor) as a contiguous ``int64[B]`` array."""
    ids = as_numpy("indices", indices, any_device=True)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"indices must be integers, got dtype {ids.dtype}")
    return np.ascontiguousarray(ids.reshape(-1), dtype=np.int64)


def first_line(e: BaseException) -> str:
    """An exception's message, its first line only (at most 300 characters)."""
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else "(no message)"
