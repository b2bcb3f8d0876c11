"""Return computation over time-major rollouts, in C++: discounted returns, GAE, TD(lambda).

Every function takes time-major arrays of shape ``[T]`` (one stream) or ``[T, N]`` (N env
streams, as a gymnasium vector env produces them step by step), as numpy arrays, CPU torch
tensors or anything ``numpy.asarray`` reads. Results are numpy arrays, or torch tensors sharing
their memory (``torch.from_numpy``) when any input was a tensor.

Episode ends (gymnasium >= 1.0 semantics):

* ``terminated[t]``: the episode ended in a terminal state; nothing is bootstrapped after step t.
* ``truncated[t]``: the episode was cut (time limit); the recursion restarts before step t, but
  the value after step t is the value of the true final observation (``bootstrap[t]`` /
  ``next_values[t]``), not 0.
* the last step ``t = T - 1`` is cut by the end of the rollout and bootstraps like a truncated
  step unless it is terminated. ``terminated`` wins when both flags are set.

Dtypes: the computation runs in float64 if any floating input is float64 (or no input is
floating), else in float32; float inputs are never narrowed. Integer rewards are converted.
Flags must be bool (or integers equal to 0 / 1). ``out=`` arrays must already have that dtype and
the shape of ``rewards`` and be C-contiguous and writable: they are filled in place, never through
a converted copy. An output may be one of the inputs itself (in place), but must not partially
overlap an input. The GIL is released while C++ runs. Cost: O(T * N).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from fastrl import _core
from fastrl._util import as_numpy, check_unit, out_array

__all__ = ["discounted_returns", "gae", "lambda_returns"]


class _Args:
    """Collects, converts and checks the arrays of one call."""

    def __init__(self) -> None:
        self.any_torch = False
        self.shape: tuple[int, ...] | None = None
        self.floats: list[tuple[str, np.ndarray]] = []
        self.dt = np.dtype(np.float64)

    def read(self, values: Mapping[str, Any], terminated: Any, truncated: Any) -> tuple[Any, ...]:
        """The float inputs (None stays None), converted to the computation's dtype, then the flags."""
        arrays = [None if x is None else self.value(name, x) for name, x in values.items()]
        te, tr = self.flag("terminated", terminated), self.flag("truncated", truncated)
        self.dt = self.dtype()
        return (*(None if a is None else np.ascontiguousarray(a, dtype=self.dt) for a in arrays), te, tr)

    def _numpy(self, name: str, x: Any) -> np.ndarray:
        self.any_torch |= isinstance(x, torch.Tensor)
        return as_numpy(name, x)

    def value(self, name: str, x: Any) -> np.ndarray:
        a = self._numpy(name, x)
        if a.dtype.kind not in "fiub":
            raise TypeError(f"{name}: expected real numbers, got dtype {a.dtype}")
        if self.shape is None:
            if a.ndim not in (1, 2):
                raise ValueError(f"{name}: expected shape [T] or [T, N], got {a.shape}")
            if a.ndim == 2 and a.shape[1] == 0:
                raise ValueError(f"{name}: expected N >= 1 streams, got shape {a.shape}")
            self.shape = a.shape
        elif a.shape != self.shape:
            raise ValueError(f"{name}: expected shape {self.shape} (that of rewards), got {a.shape}")
        self.floats.append((name, a))
        return a

    def flag(self, name: str, x: Any) -> np.ndarray:
        a = self._numpy(name, x)
        if a.shape != self.shape:
            raise ValueError(f"{name}: expected shape {self.shape} (that of rewards), got {a.shape}")
        if a.dtype.kind == "b":
            return np.ascontiguousarray(a)
        if a.dtype.kind in "iu":
            if a.size and (a.min() < 0 or a.max() > 1):
                raise ValueError(f"{name}: integer flags must be 0 or 1")
            return a.astype(bool)
        raise TypeError(f"{name}: expected bool flags, got dtype {a.dtype}")

    def dtype(self) -> np.dtype:
        kinds = [a.dtype for _, a in self.floats if a.dtype.kind == "f"]
        if kinds and all(d.itemsize <= 4 for d in kinds):
            return np.dtype(np.float32)
        return np.dtype(np.float64)

    def out(self, name: str, out: Any, dtype: np.dtype, inputs: list[np.ndarray]) -> np.ndarray:
        a = out_array(name, out)
        if a.dtype != dtype:
            raise TypeError(
                f"{name}: expected dtype {dtype} (the dtype of the computation), got {a.dtype}; nothing is converted"
            )
        if a.shape != self.shape:
            raise ValueError(f"{name}: expected shape {self.shape} (that of rewards), got {a.shape}")
        if not (a.flags.c_contiguous and a.flags.aligned and a.flags.writeable):
            raise ValueError(f"{name}: must be C-contiguous, aligned and writable")
        for x in inputs:
            if np.may_share_memory(a, x) and not _same_view(a, x):
                raise ValueError(f"{name}: partially overlaps an input (only exact in-place use is allowed)")
        return a


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.shape == b.shape
        and a.strides == b.strides
        and a.dtype == b.dtype
    )


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_BOOL = np.dtype(bool)


def _fast(floats: tuple[Any, ...], flags: tuple[Any, ...]) -> np.dtype | None:
    """The dtype when every input already is what C++ takes: contiguous numpy arrays of one shape,
    one float dtype and bool flags (None floats are skipped). Saves the general path's checks."""
    a0 = floats[0]
    if type(a0) is not np.ndarray or a0.dtype not in _FLOATS or not a0.flags.c_contiguous:
        return None
    dt, shape = a0.dtype, a0.shape
    for a in floats[1:]:
        if a is not None and (
            type(a) is not np.ndarray or a.dtype != dt or a.shape != shape or not a.flags.c_contiguous
        ):
            return None
    for a in flags:
        if type(a) is not np.ndarray or a.dtype != _BOOL or a.shape != shape or not a.flags.c_contiguous:
            return None
    return dt


def _wrap(result: np.ndarray, out: Any, any_torch: bool) -> Any:
    if out is not None:
        return out
    return torch.from_numpy(result) if any_torch else result


def discounted_returns(
    rewards: Any, terminated: Any, truncated: Any, gamma: float, bootstrap: Any = None, out: Any = None
) -> Any:
    """Discounted returns-to-go, restarting after every episode end.

    ``G[t] = r[t] + gamma * next`` where ``next`` is 0 after a terminated step, ``bootstrap[t]``
    after a truncated step and at the last step ``T - 1``, and ``G[t + 1]`` otherwise.

    Args:
        rewards: ``float[T]`` or ``float[T, N]``, time-major.
        terminated, truncated: ``bool`` of the same shape.
        gamma: discount in [0, 1].
        bootstrap: optional ``float`` of the same shape: the value of the observation after step
            t (its true final observation when the episode was truncated); only read at truncated
            steps and at the last step. ``None`` bootstraps 0.
        out: optional output array (see the module docstring).

    Returns:
        ``float[T]`` or ``float[T, N]`` returns (``out`` itself when given).
    """
    if out is None and (dt := _fast((rewards, bootstrap), (terminated, truncated))) is not None:
        o = np.empty(rewards.shape, dt)
        _core.discounted_returns(rewards, terminated, truncated, check_unit("gamma", gamma), bootstrap, o)
        return o
    args = _Args()
    r, b, te, tr = args.read({"rewards": rewards, "bootstrap": bootstrap}, terminated, truncated)
    g, dt = check_unit("gamma", gamma), args.dt
    inputs = [x for x in (r, b, te, tr) if x is not None]
    o = args.out("out", out, dt, inputs) if out is not None else np.empty(r.shape, dt)
    _core.discounted_returns(r, te, tr, g, b, o)
    return _wrap(o, out, args.any_torch)


def gae(
    rewards: Any,
    values: Any,
    next_values: Any,
    terminated: Any,
    truncated: Any,
    gamma: float,
    lam: float,
    out: Any = None,
) -> tuple[Any, Any]:
    """Generalised advantage estimates (Schulman et al. 2016) and the matching returns.

    ``delta[t] = r[t] + gamma * (0 if terminated[t] else next_values[t]) - values[t]``;
    ``A[t] = delta[t] + gamma * lam * (0 if the episode ended at t or t = T - 1 else A[t + 1])``;
    ``returns = A + values`` (the targets of the value function).

    Args:
        rewards, values, next_values: ``float[T]`` or ``float[T, N]``, time-major; ``values[t]``
            is V(s_t), ``next_values[t]`` is V of the observation after step t (the true final
            observation after a truncated step; ignored after a terminated one).
        terminated, truncated: ``bool`` of the same shape.
        gamma, lam: in [0, 1].
        out: optional ``(advantages, returns)`` pair of output arrays.

    Returns:
        ``(advantages, returns)``, both of the shape of ``rewards``.
    """
    if out is None and (dt := _fast((rewards, values, next_values), (terminated, truncated))) is not None:
        a, ret = np.empty(rewards.shape, dt), np.empty(rewards.shape, dt)
        _core.gae(
            rewards,
            values,
            next_values,
            terminated,
            truncated,
            check_unit("gamma", gamma),
            check_unit("lam", lam),
            a,
            ret,
        )
        return a, ret
    args = _Args()
    r, v, nv, te, tr = args.read(
        {"rewards": rewards, "values": values, "next_values": next_values}, terminated, truncated
    )
    g, lm, dt = check_unit("gamma", gamma), check_unit("lam", lam), args.dt
    inputs = [r, v, nv, te, tr]
    if out is None:
        a, ret = np.empty(r.shape, dt), np.empty(r.shape, dt)
    else:
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError(f"out: expected an (advantages, returns) pair, got {type(out).__name__}")
        a = args.out("out[0] (advantages)", out[0], dt, inputs)
        ret = args.out("out[1] (returns)", out[1], dt, inputs)
        if np.may_share_memory(a, ret):
            raise ValueError("out: the advantages and returns outputs must not overlap")
    _core.gae(r, v, nv, te, tr, g, lm, a, ret)
    if out is not None:
        return out[0], out[1]
    return (torch.from_numpy(a), torch.from_numpy(ret)) if args.any_torch else (a, ret)


def lambda_returns(
    rewards: Any, next_values: Any, terminated: Any, truncated: Any, gamma: float, lam: float, out: Any = None
) -> Any:
    """TD(lambda) returns: the lambda-weighted mix of n-step returns, restarting at episode ends.

    ``G[t] = r[t] + gamma * next`` where ``next`` is 0 after a terminated step, ``next_values[t]``
    after a truncated step and at the last step, and ``(1 - lam) * next_values[t] + lam * G[t + 1]``
    otherwise. ``lam = 0`` gives one-step TD targets, ``lam = 1`` Monte-Carlo returns bootstrapped at
    truncation. Equals :func:`gae`'s returns when ``next_values[t] == values[t + 1]`` inside episodes.

    Args:
        rewards, next_values: ``float[T]`` or ``float[T, N]``, time-major.
        terminated, truncated: ``bool`` of the same shape.
        gamma, lam: in [0, 1].
        out: optional output array.
    """
    if out is None and (dt := _fast((rewards, next_values), (terminated, truncated))) is not None:
        o = np.empty(rewards.shape, dt)
        _core.lambda_returns(
            rewards, next_values, terminated, truncated, check_unit("gamma", gamma), check_unit("lam", lam), o
        )
        return o
    args = _Args()
    r, nv, te, tr = args.read({"rewards": rewards, "next_values": next_values}, terminated, truncated)
    g, lm, dt = check_unit("gamma", gamma), check_unit("lam", lam), args.dt
    o = args.out("out", out, dt, [r, nv, te, tr]) if out is not None else np.empty(r.shape, dt)
    _core.lambda_returns(r, nv, te, tr, g, lm, o)
    return _wrap(o, out, args.any_torch)
