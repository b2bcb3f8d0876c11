"""Statistics over seeds for reports: the interquartile mean and stratified bootstrap confidence
intervals, rliable's method (Agarwal et al., "Deep RL at the edge of the statistical precipice",
NeurIPS 2021).

Scores are a matrix ``float[runs, tasks]`` (one column per task, e.g. per environment; a sweep or
tune report has one task and the seeds as runs); a 1-D array is one task.

- :func:`iqm`: the mean of the middle half of all scores (``int(0.25 * n)`` cut from each end of
  the sorted scores, as ``scipy.stats.trim_mean(scores, 0.25, axis=None)``, rliable's
  ``aggregate_iqm``).
- :func:`bootstrap_ci`: a percentile bootstrap interval: ``reps`` times, resample the runs of each
  task with replacement, independently per task (stratified: each task keeps its number of runs),
  and take the statistic; the interval is the (1 - size) / 2 and (1 + size) / 2 percentiles of
  those ``reps`` values (rliable's ``get_interval_estimates`` with its default percentile method).

rliable itself is not used: it installs here but does not import (its dependency ``arch`` 7.2 fails
on import under pandas 3: ``deprecate_kwarg() missing 1 required positional argument``), and this is
a few lines of numpy. ``tests/test_stats.py`` checks both against slow loops.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import numpy as np

Statistic = Literal["iqm", "mean"]
REPS = 10_000
"""Bootstrap resamples in reports (rliable's default is 50,000; 10,000 moves a 95% bound of a few
seeds by well under its own width, and keeps reports fast)."""


def _matrix(scores: Iterable[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(scores if isinstance(scores, np.ndarray) else list(scores), dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"scores must be float[runs, tasks] with at least one run, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("scores must be finite (leave failed runs out)")
    return x


def _rows_stat(x: np.ndarray, statistic: Statistic) -> np.ndarray:
    """The statistic of each row of ``x: float[R, N]`` (all scores of one resample per row)."""
    if statistic == "mean":
        return np.asarray(x.mean(axis=1))
    if statistic == "iqm":
        n = x.shape[1]
        k = int(0.25 * n)
        return np.asarray(np.sort(x, axis=1)[:, k : n - k].mean(axis=1))
    raise ValueError(f"unknown statistic {statistic!r}; use iqm or mean")


def iqm(scores: Iterable[float] | np.ndarray) -> float:
    """Interquartile mean of all scores (the middle half; for fewer than 4 scores, the mean)."""
    x = _matrix(scores)
    return float(_rows_stat(x.reshape(1, -1), "iqm")[0])


def bootstrap_distribution(
    scores: Iterable[float] | np.ndarray, statistic: Statistic = "iqm", reps: int = REPS, seed: int = 0
) -> np.ndarray:
    """``float[reps]``: the statistic of ``reps`` stratified resamples. The resample indices are
    ``default_rng(seed).integers(0, runs, size=(reps, runs, tasks))``: resample ``r`` takes run
    ``idx[r, i, t]`` of task ``t`` as its ``i``-th run of that task."""
    x = _matrix(scores)
    n, m = x.shape
    idx = np.random.default_rng(seed).integers(0, n, size=(reps, n, m))
    boot = x[idx, np.arange(m)]  # [reps, runs, tasks]
    return _rows_stat(boot.reshape(reps, n * m), statistic)


def bootstrap_ci(
    scores: Iterable[float] | np.ndarray,
    statistic: Statistic = "iqm",
    size: float = 0.95,
    reps: int = REPS,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile stratified bootstrap interval of ``statistic`` (see the module docstring)."""
    if not 0 < size < 1:
        raise ValueError(f"size must be in (0, 1), got {size}")
    dist = bootstrap_distribution(scores, statistic, reps, seed)
    lo, hi = np.percentile(dist, [100 * (1 - size) / 2, 100 * (1 + size) / 2])
    return float(lo), float(hi)


def summarize(values: Iterable[float | None], seed: int = 0) -> dict[str, float | None]:
    """``mean, std`` (population, ddof = 0), ``iqm`` and the 95% intervals ``iqm_lo, iqm_hi,
    mean_lo, mean_hi`` of the values that are not None / NaN (all None when there are none)."""
    v = [float(x) for x in values if x is not None and not math.isnan(x)]
    keys = ("mean", "std", "iqm", "iqm_lo", "iqm_hi", "mean_lo", "mean_hi")
    if not v:
        return dict.fromkeys(keys)
    iqm_lo, iqm_hi = bootstrap_ci(v, "iqm", seed=seed)
    mean_lo, mean_hi = bootstrap_ci(v, "mean", seed=seed)
    return dict(zip(keys, (float(np.mean(v)), float(np.std(v)), iqm(v), iqm_lo, iqm_hi, mean_lo, mean_hi)))


__all__ = ["REPS", "bootstrap_ci", "bootstrap_distribution", "iqm", "summarize"]
