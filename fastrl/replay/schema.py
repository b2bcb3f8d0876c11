"""Field schemas: names, per-row shapes and dtypes of what a replay buffer stores."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fastrl._util import check_int, is_int

TORCH_DTYPES = {
    "bool": torch.bool,
    "uint8": torch.uint8,
    "int32": torch.int32,
    "int64": torch.int64,
    "float32": torch.float32,
    "float64": torch.float64,
}
"""The field dtypes the core stores (names as numpy spells them) and their torch dtypes: the one table."""
SUPPORTED_DTYPES = tuple(TORCH_DTYPES)
STANDARD_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminated", "truncated")


@dataclass(frozen=True)
class Field:
    """One stored field: ``name``, per-row ``shape`` and numpy ``dtype`` name."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def as_shape(value: Any, arg: str) -> tuple[int, ...]:
    """``value`` as a tuple of non-negative ints (an int is a 1-d shape)."""
    if is_int(value):
        value = (int(value),)
    try:
        shape = tuple(value)
    except TypeError:
        raise TypeError(f"{arg} must be a tuple of ints, got {value!r}") from None
    try:
        return tuple(check_int(arg, d, 0) for d in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{arg} must be a tuple of non-negative ints, got {value!r}") from None


def as_dtype(value: Any, arg: str) -> str:
    """``value`` as one of the supported dtype names."""
    try:
        name = np.dtype(value).name
    except TypeError:
        raise TypeError(f"{arg} must be a numpy dtype, got {value!r}") from None
    if name not in SUPPORTED_DTYPES:
        raise TypeError(f"{arg} must be one of {', '.join(SUPPORTED_DTYPES)}, got {name}")
    return name


def build_fields(
    observation_shape: Any,
    action_shape: Any,
    observation_dtype: Any,
    action_dtype: Any,
    reward_dtype: Any,
    extra_fields: Mapping[str, tuple[Any, Any]] | None,
) -> tuple[Field, ...]:
    obs_shape = as_shape(observation_shape, "observation_shape")
    obs_dtype = as_dtype(observation_dtype, "observation_dtype")
    fields = [
        Field("observations", obs_shape, obs_dtype),
        Field("actions", as_shape(action_shape, "action_shape"), as_dtype(action_dtype, "action_dtype")),
        Field("rewards", (), as_dtype(reward_dtype, "reward_dtype")),
        Field("next_observations", obs_shape, obs_dtype),
        Field("terminated", (), "bool"),
        Field("truncated", (), "bool"),
    ]
    for name, spec in (extra_fields or {}).items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"extra_fields: field names must be identifiers, got {name!r}")
        if name in STANDARD_FIELDS or name in ("indices", "extras"):
            raise ValueError(f"extra_fields: {name!r} is a reserved field name")
        try:
            shape, dtype = spec
        except (TypeError, ValueError):
            raise TypeError(f"extra_fields[{name!r}] must be a (shape, dtype) pair, got {spec!r}") from None
        fields.append(
            Field(
                name, as_shape(shape, f"extra_fields[{name!r}] shape"), as_dtype(dtype, f"extra_fields[{name!r}] dtype")
            )
        )
    return tuple(fields)
