"""Small helpers every layer uses: one atomic file writer, one set of argument validators, one
array -> numpy helper. Imports nothing of fastrl (the bottom of the import graph)."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np


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


def check_real(name: str, value: Any, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < low:
        raise ValueError(f"{name} must be a finite number >= {low:g}, got {value!r}")
    return v
