"""A sweep's report: per-run metrics, per-configuration statistics over seeds, CSVs and plots.

Per run, from its greedy evaluations ``(step_i, mean_i)`` (see ``TrainResult.evals``):

- ``final``: the last evaluation's mean return; ``best``: the highest one.
- ``auc``: area under the evaluation curve divided by its length: the mean evaluation return over
  ``[step_1, total_steps]`` by the trapezoid rule. A run that stopped early (it reached its
  ``solved_threshold``) keeps its last evaluation to ``total_steps``, so runs of one sweep are
  compared over the same budget. In return units (500 = solved from the first evaluation on).
- ``steps_to_threshold`` / ``seconds_to_threshold``: env steps and training seconds (evaluations and
  checkpoints excluded) at the first evaluation whose mean is >= the threshold (``--threshold``,
  else the config's ``solved_threshold``); empty when it never got there.

Per configuration: ``<metric>_mean`` and ``<metric>_std`` over its finished seeds (population std,
ddof = 0, like the evaluation std) and, for ``final``, ``best`` and ``auc``, the interquartile mean
``<metric>_iqm`` with stratified bootstrap 95% intervals ``<metric>_iqm_lo/_hi`` and
``<metric>_mean_lo/_hi`` (rliable's method, :mod:`fastrl.experiments.stats`; seeded, so a report
redrawn is the same); the threshold columns average over the seeds that reached it (``reached``
counts them). Failed runs are counted (``failed``) and left out of the statistics.
Timing columns (:data:`TIMING_COLUMNS`) are the only ones that differ between two runs of a sweep.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from fastrl.config import ConfigError
from fastrl.experiments.manifest import load_manifest, read_result
from fastrl.experiments.stats import summarize

METRICS = {  # name -> higher is better
    "final": True,
    "best": True,
    "auc": True,
    "steps_to_threshold": False,
    "seconds_to_threshold": False,
}
RUN_METRICS = ("final", "best", "auc", "steps_to_threshold", "seconds_to_threshold")
TIMING_COLUMNS = frozenset(
    {
        "seconds_to_threshold",
        "train_seconds",
        "wall_seconds",
        "seconds_to_threshold_mean",
        "seconds_to_threshold_std",
        "train_seconds_mean",
    }
)


def check_metric(metric: str) -> str:
    """``auc`` / ``auc_mean`` -> ``auc``; ConfigError for an unknown metric."""
    name = metric.removesuffix("_mean")
    if name not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    return name


# ---------------------------------------------------------------------------- per run
def area_under_curve(steps: Sequence[float], means: Sequence[float], budget: float) -> float:
    """Mean of the piecewise-linear curve through ``(steps, means)`` over ``[steps[0], budget]``,
    the last value held from ``steps[-1]`` to ``budget``; NaN without points."""
    s, m = np.asarray(steps, dtype=float), np.asarray(means, dtype=float)
    if s.size == 0:
        return math.nan
    if s[-1] < budget:
        s, m = np.append(s, budget), np.append(m, m[-1])
    if s[-1] <= s[0]:
        return float(m[0])
    return float(np.sum((m[1:] + m[:-1]) / 2 * np.diff(s)) / (s[-1] - s[0]))


def run_metrics(
    evals: Sequence[Mapping[str, float]], budget: float, threshold: float | None
) -> dict[str, float | None]:
    """``final, best, auc, steps_to_threshold, seconds_to_threshold`` of one run's evaluations."""
    if not evals:
        return dict.fromkeys(RUN_METRICS)
    means = [float(e["mean"]) for e in evals]
    hit = next((e for e in evals if threshold is not None and e["mean"] >= threshold), None)
    return {
        "final": means[-1],
        "best": max(means),
        "auc": area_under_curve([e["step"] for e in evals], means, budget),
        "steps_to_threshold": float(hit["step"]) if hit else None,
        "seconds_to_threshold": float(hit["train_seconds"]) if hit else None,
    }


def _stats(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    v = [x for x in values if x is not None and not math.isnan(x)]
    if not v:
        return None, None
    return float(np.mean(v)), float(np.std(v))


# ---------------------------------------------------------------------------- the report
@dataclass
class Report:
    """``runs``: one row per configuration x seed; ``summary``: one row per configuration."""

    sweep_dir: Path
    keys: list[str]
    runs: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    metric: str = "auc"
    files: list[Path] = field(default_factory=list)

    def best(self, metric: str | None = None) -> dict[str, Any] | None:
        """The configuration with the best ``metric`` mean (None if no configuration has one)."""
        name = check_metric(metric or self.metric)
        rows = [r for r in self.summary if r[f"{name}_mean"] is not None]
        if not rows:
            return None
        pick = max if METRICS[name] else min
        return pick(rows, key=lambda r: r[f"{name}_mean"])


def collect(sweep_dir: str | Path, threshold: float | None = None, metric: str = "auc") -> Report:
    """Read a sweep directory (manifest and result.json files) into a :class:`Report`."""
    sweep_dir = Path(sweep_dir)
    m = load_manifest(sweep_dir)
    keys = list(m["keys"])
    runs, summary = [], []
    for ci, c in enumerate(m["configs"]):
        cfg = c["config"]
        thr = threshold if threshold is not None else cfg.get("solved_threshold")
        params = {k: _cell(c["params"].get(k)) for k in keys}
        rows = []
        for seed in m["seeds"]:
            rel = f"{c['label']}/seed{seed}"
            res = read_result(sweep_dir / rel)
            status = res["status"] if res else "pending"
            ok = res is not None and status == "ok"
            met = run_metrics(res["evals"] if ok else [], cfg["total_steps"], thr)  # type: ignore[index]
            rows.append(
                {
                    "config": ci,
                    "label": c["label"],
                    **params,
                    "seed": seed,
                    "status": status,
                    "env_steps": res["env_steps"] if ok else None,  # type: ignore[index]
                    "episodes": res["episodes"] if ok else None,  # type: ignore[index]
                    **met,
                    "train_seconds": res["train_seconds"] if ok else None,  # type: ignore[index]
                    "wall_seconds": res.get("wall_seconds") if res else None,
                    "run_dir": rel,
                    "error": res.get("error", "") if res else "",
                    "_evals": res["evals"] if ok else [],  # type: ignore[index]
                }
            )
        runs.extend(rows)
        good = [r for r in rows if r["status"] == "ok"]
        n_failed = sum(r["status"] == "failed" for r in rows)
        n_pending = sum(r["status"] == "pending" for r in rows)
        row: dict[str, Any] = {
            "config": ci,
            "label": c["label"],
            **params,
            "runs": len(rows),
            "ok": len(good),
            "failed": n_failed,
            "pending": n_pending,
            "threshold": thr,
            "_budget": cfg["total_steps"],
        }
        for name in ("final", "best", "auc"):
            st = summarize(r[name] for r in good)
            row.update({f"{name}_{k}": v for k, v in st.items()})
        row["reached"] = sum(r["steps_to_threshold"] is not None for r in good)
        for name in ("steps_to_threshold", "seconds_to_threshold"):
            row[f"{name}_mean"], row[f"{name}_std"] = _stats(r[name] for r in good)
        row["env_steps_mean"] = _stats(r["env_steps"] for r in good)[0]
        row["train_seconds_mean"] = _stats(r["train_seconds"] for r in good)[0]
        row["status"] = (
            "ok"
            if len(good) == len(rows)
            else "failed"
            if not good and n_failed
            else "partial"
            if n_failed
            else "incomplete"
        )
        row["error"] = next((r["error"] for r in rows if r["status"] == "failed"), "")
        summary.append(row)
    return Report(sweep_dir, keys, runs, summary, check_metric(metric))


def write_report(sweep_dir: str | Path, threshold: float | None = None, metric: str = "auc") -> Report:
    """Write runs.csv, summary.csv, curves.png and (2-D grids) heatmap.png; returns the report."""
    report = collect(sweep_dir, threshold, metric)
    d = report.sweep_dir
    report.files = [write_csv(d / "runs.csv", report.runs), write_csv(d / "summary.csv", report.summary)]
    m = load_manifest(d)
    report.files.append(plot_curves(report, d / "curves.png"))
    if m["mode"] == "grid" and len(report.keys) == 2:
        report.files.append(plot_heatmap(report, d / "heatmap.png", report.metric))
    return report


def _cell(v: Any) -> Any:
    return "x".join(map(str, v)) if isinstance(v, list) else v


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.10g}"
    return str(v)


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    cols = [c for c in (rows[0] if rows else {}) if not c.startswith("_")]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([_csv_value(r[c]) for c in cols])
    return path


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def differences(
    a: Sequence[Mapping[str, Any]],
    b: Sequence[Mapping[str, Any]],
    ignore: Iterable[str] = TIMING_COLUMNS,
) -> list[str]:
    """Cells that differ between two tables (e.g. two summary.csv files), ignoring ``ignore``."""
    skip = set(ignore)
    if len(a) != len(b):
        return [f"{len(a)} rows vs {len(b)}"]
    out = []
    for i, (ra, rb) in enumerate(zip(a, b)):
        for k in sorted((set(ra) | set(rb)) - skip):
            if k.startswith("_"):
                continue
            if ra.get(k) != rb.get(k):
                out.append(f"row {i} {k}: {ra.get(k)!r} vs {rb.get(k)!r}")
    return out


def iqm_ci(row: Mapping[str, Any], name: str, digits: int = 1) -> str:
    """``123.4 [100.2, 140.0]``: the IQM over seeds and its bootstrap 95% interval."""
    v = row.get(f"{name}_iqm")
    if v is None:
        return "-"
    return f"{v:.{digits}f} [{row[f'{name}_iqm_lo']:.{digits}f}, {row[f'{name}_iqm_hi']:.{digits}f}]"


def format_table(report: Report, limit: int = 30) -> str:
    """A plain-text table of the summary (one line per configuration)."""
    names = [", ".join(f"{k}={row[k]}" for k in report.keys) or row["label"] for row in report.summary]
    w = min(max([len("configuration"), *map(len, names)]), 72)
    iq = report.metric if report.metric in ("final", "best", "auc") else "auc"
    lines = [
        f"{'configuration':<{w}} {'runs':>5} {'final':>13} {'best':>13} {'auc':>13} {'steps to thr':>17} "
        f"{iq + ' IQM [95% CI]':>26}"
    ]

    def ms(row: Mapping[str, Any], name: str, digits: int = 1) -> str:
        mu, sd = row[f"{name}_mean"], row[f"{name}_std"]
        return "-" if mu is None else f"{mu:.{digits}f}+-{sd:.{digits}f}"

    for name, row in list(zip(names, report.summary))[:limit]:
        thr = f"{ms(row, 'steps_to_threshold', 0)} ({row['reached']}/{row['ok']})"
        runs = f"{row['ok']}/{row['runs']}"
        lines.append(
            f"{name[:w]:<{w}} {runs:>5} {ms(row, 'final'):>13} {ms(row, 'best'):>13} {ms(row, 'auc'):>13} {thr:>17} "
            f"{iqm_ci(row, iq):>26}"
        )
    if len(report.summary) > limit:
        lines.append(f"... {len(report.summary) - limit} more in summary.csv")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- plots
def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def band(runs: Sequence[Mapping[str, Any]], budget: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps, mean and std over runs of the evaluation curves (each interpolated on the union of
    their steps, last value held to ``budget`` as in the AUC)."""
    curves = [([e["step"] for e in r["_evals"]], [e["mean"] for e in r["_evals"]]) for r in runs]
    grid = np.unique(np.concatenate([np.asarray(s, dtype=float) for s, _ in curves] + [[budget]]))
    ys = np.stack([np.interp(grid, s, v) for s, v in curves])
    return grid, ys.mean(axis=0), ys.std(axis=0)


def plot_curves(report: Report, out: Path) -> Path:
    """Evaluation return (mean +- std over seeds) per configuration; for a 2-D grid one panel per
    value of the first key."""
    plt = pyplot()
    keys = report.keys
    panel_key = keys[0] if len(keys) == 2 else None
    panels = list(dict.fromkeys(r[panel_key] for r in report.summary)) if panel_key else [None]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels) + 1, 4.5), sharey=True, squeeze=False, constrained_layout=True
    )
    colors = plt.get_cmap("tab10")
    for row in report.summary:
        runs = [r for r in report.runs if r["config"] == row["config"] and r["_evals"]]
        if not runs:
            continue
        grid, mu, sd = band(runs, row["_budget"])
        ax = axes[0][panels.index(row[panel_key]) if panel_key else 0]
        others = [k for k in keys if k != panel_key]
        label = ", ".join(f"{k}={row[k]}" for k in others) or "base config"
        label += f" ({len(runs)} seeds)"
        c = colors(len(ax.lines) % 10)
        ax.plot(grid, mu, color=c, label=label, linewidth=1.6)
        ax.fill_between(grid, mu - sd, mu + sd, color=c, alpha=0.18)
    thr = next((r["threshold"] for r in report.summary if r["threshold"] is not None), None)
    for ax, p in zip(axes[0], panels):
        if thr is not None:
            ax.axhline(thr, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(f"{panel_key}={p}" if panel_key else "greedy evaluation return")
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    axes[0][0].set_ylabel("evaluation return (mean +- std over seeds)")
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def plot_heatmap(report: Report, out: Path, metric: str = "auc") -> Path:
    """``metric`` mean over seeds for each cell of a 2-D grid (rows: first key)."""
    plt = pyplot()
    name = check_metric(metric)
    k0, k1 = report.keys
    rows = list(dict.fromkeys(r[k0] for r in report.summary))
    cols = list(dict.fromkeys(r[k1] for r in report.summary))
    val = np.full((len(rows), len(cols)), np.nan)
    text = [["" for _ in cols] for _ in rows]
    for r in report.summary:
        i, j = rows.index(r[k0]), cols.index(r[k1])
        mu, sd = r[f"{name}_mean"], r[f"{name}_std"]
        if mu is not None:
            val[i, j] = mu
            text[i][j] = f"{mu:.3g}\n+-{sd:.2g}"
        elif not r["ok"]:
            text[i][j] = "failed" if r["failed"] else "not run"
        if "threshold" in name and r["ok"]:
            text[i][j] += f"\n({r['reached']}/{r['ok']})" if mu is not None else f"0/{r['ok']}"
    fig, ax = plt.subplots(figsize=(1.6 * len(cols) + 2.5, 1.2 * len(rows) + 1.8), constrained_layout=True)
    im = ax.imshow(np.ma.masked_invalid(val), cmap="viridis" if METRICS[name] else "viridis_r", aspect="auto")
    finite = val[np.isfinite(val)]
    mid = float(np.mean([finite.min(), finite.max()])) if finite.size else 0.0
    for i in range(len(rows)):
        for j in range(len(cols)):
            light = np.isfinite(val[i, j]) and (val[i, j] < mid) == METRICS[name]
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=8, color="white" if light else "black")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.set_xlabel(k1)
    ax.set_ylabel(k0)
    n = max((r["ok"] for r in report.summary), default=0)
    ax.set_title(f"{name} (mean over {n} seeds{'; lower is better' if not METRICS[name] else ''})", fontsize=10)
    fig.colorbar(im, ax=ax)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


__all__ = [
    "METRICS",
    "TIMING_COLUMNS",
    "Report",
    "area_under_curve",
    "collect",
    "differences",
    "band",
    "format_table",
    "iqm_ci",
    "pyplot",
    "read_csv",
    "run_metrics",
    "write_report",
]
