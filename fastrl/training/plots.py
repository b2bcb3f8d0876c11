"""Learning curves of one or several runs in one PNG (training and evaluation returns, TD loss,
exploration: DQN's epsilon or DDPG's noise scale)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fastrl.training.logger import read_metrics

PANELS = (
    (("charts/episodic_return",), "training return (10-episode mean)"),
    (("eval/mean_return",), "evaluation return (mean +- std)"),
    (("losses/td_loss",), "TD loss (DDPG / TD3: critic)"),
    (("charts/epsilon", "charts/noise_scale"), "exploration (epsilon or noise scale)"),
)


def _smooth(values: list[float], k: int) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if len(v) < 2 or k <= 1:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    out = np.empty_like(v)
    for i in range(len(v)):
        lo = max(0, i + 1 - k)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Draw the curves of every run in ``run_dirs`` into ``out`` (PNG); returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8), constrained_layout=True)
    for run in run_dirs:
        run = Path(run)
        data = read_metrics(run)
        for ax, (keys, _title) in zip(axes.flat, PANELS):
            key = next((k for k in keys if k in data), None)
            if key is None:
                continue
            steps, values = data[key]
            if key == "charts/episodic_return":
                ax.plot(steps, values, alpha=0.15, linewidth=0.8)
                ax.plot(steps, _smooth(values, 10), label=run.name, color=ax.lines[-1].get_color())
            elif key == "eval/mean_return":
                (line,) = ax.plot(steps, values, marker="o", markersize=3, label=run.name)
                std = data.get("eval/std_return")
                if std is not None and len(std[1]) == len(values):
                    v, s = np.asarray(values), np.asarray(std[1])
                    ax.fill_between(steps, v - s, v + s, alpha=0.2, color=line.get_color())
            else:
                ax.plot(steps, values, label=run.name)
    for ax, (keys, title) in zip(axes.flat, PANELS):
        ax.set_title(title)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
        if keys == ("losses/td_loss",) and ax.lines:
            ax.set_yscale("log")
        if ax.lines:
            ax.legend(fontsize=7)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
