"""Metrics logging: ``log(step, **metrics)`` to TensorBoard and a CSV (``step,wall_time,key,value``).

Keys are namespaced: ``charts/episodic_return``, ``eval/mean_return``, ``losses/td_loss``,
``perf/sps``. Pass them with ``**{"losses/td_loss": x}`` or as a dict to :meth:`Logger.log_dict`.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class Logger:
    """Writes every metric to ``<run_dir>/metrics.csv`` and, if tensorboard is installed, to event files."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True, append: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / "metrics.csv"
        new = not (append and path.exists())
        self._file = open(path, "w" if new else "a", newline="")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(["step", "wall_time", "key", "value"])
            self._file.flush()
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                pass
            else:
                self._tb = SummaryWriter(str(self.run_dir))

    def log(self, step: int, **metrics: Any) -> None:
        """Record scalar ``metrics`` at env step ``step`` (tensors are converted here, once)."""
        self.log_dict(step, metrics)

    def log_dict(self, step: int, metrics: Mapping[str, Any]) -> None:
        now = time.time()
        for key, value in metrics.items():
            v = float(value)
            self._csv.writerow([int(step), f"{now:.3f}", key, repr(v)])
            if self._tb is not None:
                self._tb.add_scalar(key, v, int(step), walltime=now)

    def flush(self) -> None:
        self._file.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_metrics(run_dir: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """``{key: (steps, values)}`` from a run's metrics.csv (a last row cut short by a kill is skipped)."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        for row in csv.reader(f):
            if len(row) != 4 or row[0] == "step":
                continue
            try:
                step, value = int(row[0]), float(row[3])
            except ValueError:
                continue
            steps, values = out.setdefault(row[2], ([], []))
            steps.append(step)
            values.append(value)
    return out


class MetricMeans:
    """Update metrics summed on their device (no host sync per update) and averaged at log time;
    a metric an update does not return (TD3's delayed actor loss) is averaged over the updates
    that did."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def add(self, metrics: Mapping[str, Any]) -> None:
        sums, counts = self.sums, self.counts
        for k, v in metrics.items():
            if k in sums:
                sums[k] += v  # a tensor in place (ours: copied at the first add), the same sum as sums[k] + v
                counts[k] += 1
            else:
                sums[k] = v.clone() if hasattr(v, "clone") else v
                counts[k] = 1

    def __bool__(self) -> bool:
        return bool(self.sums)

    def pop_means(self) -> dict[str, Any]:
        """The means since the last call (tensors; ``float()`` them to sync), and start afresh."""
        means = {k: v / self.counts[k] for k, v in self.sums.items()}
        self.sums.clear()
        self.counts.clear()
        return means
