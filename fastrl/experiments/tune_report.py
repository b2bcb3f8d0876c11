"""A tune directory's report: ``trials.csv``, ``best.json`` and the plots.

- ``trials.csv``: one row per trial (number order): state, value (the objective: the mean over
  seeds), the parameters, and for complete trials the objective's mean, std, interquartile mean and
  stratified bootstrap 95% intervals over seeds (:mod:`fastrl.experiments.stats`), env steps spent,
  the step it was pruned at, retries, errors.
- ``best.json``: the best complete trial's config (``{"algo": ..., <field>: ...}``, its first
  seed), which ``fastrl train --config best.json`` runs.
- ``optimization_history.png``, ``param_importances.png`` (Optuna's matplotlib plots; the latter
  needs two complete trials that differ) and ``best_curves.png`` (evaluation return of the best
  five complete trials, mean and range over seeds).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastrl._util import write_text_atomic
from fastrl.experiments.manifest import read_result
from fastrl.experiments.plan import fmt_value
from fastrl.experiments.report import band, pyplot, write_csv
from fastrl.experiments.stats import summarize

OBJECTIVE_WORDS = {
    "auc": "auc, the mean greedy-evaluation return over [first evaluation, {budget}] env steps",
    "final": "final, the last greedy-evaluation return",
    "steps_to_threshold": "steps_to_threshold, env steps to the first greedy evaluation >= {threshold} "
    "(a seed that never reached it counts as {budget})",
}


def objective_text(objective: str, seeds: int, budget: int, threshold: float | None) -> str:
    """``mean over 2 seeds of auc, the mean greedy-evaluation return over ... (maximize)``."""
    words = OBJECTIVE_WORDS[objective].format(budget=budget, threshold=threshold)
    direction = "minimize" if objective == "steps_to_threshold" else "maximize"
    return f"mean over {seeds} seed{'s' * (seeds > 1)} of {words} ({direction})"


@dataclass
class TuneReport:
    """``rows``: one per trial, as in trials.csv (``_evals``: per-seed evaluation rows, not written)."""

    out: Path
    objective: str
    keys: list[str]
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    env_steps: int
    text: str
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def write_tune_report(plan: Any, study: Any) -> TuneReport:
    """Write trials.csv, best.json and the plots of ``plan``'s study; return the report."""
    keys = list(plan.space)
    name = plan.objective
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name == "WAITING":
            continue
        runs = t.user_attrs.get("runs", "")
        res = read_result(plan.out / runs) if runs else None
        complete = t.state.name == "COMPLETE"
        values = (res or {}).get("values") or []
        st = summarize(values if complete else [])
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value if complete else None,
                **{k: t.params.get(k) for k in keys},
                "seeds": len(values) if complete else None,
                **{f"{name}_{k}": v for k, v in st.items()},
                "env_steps": t.user_attrs.get("env_steps"),
                "last_step": t.last_step,
                "pruned_at": t.last_step if t.state.name == "PRUNED" else None,
                "wall_seconds": t.user_attrs.get("wall_seconds"),
                "retry_of": t.user_attrs.get("retry_of"),
                "rerun_of": t.user_attrs.get("rerun_of"),
                "runs": runs,
                "error": t.user_attrs.get("error", ""),
                "_evals": [s["evals"] for s in (res or {}).get("seeds", [])] if complete else [],
            }
        )
    out = plan.out
    report = TuneReport(
        out,
        name,
        keys,
        rows,
        None,
        sum(int(r["env_steps"] or 0) for r in rows),
        objective_text(name, len(plan.seeds), plan.base.total_steps, plan.threshold),
    )
    report.files.append(write_csv(out / "trials.csv", rows))
    done = [r for r in rows if r["state"] == "complete"]
    if done:
        pick = min if name == "steps_to_threshold" else max
        report.best = pick(done, key=lambda r: r["value"])
        cfg = json.loads((out / report.best["runs"] / f"seed{plan.seeds[0]}" / "config.json").read_text())
        write_text_atomic(out / "best.json", json.dumps(cfg, indent=2) + "\n")
        report.files.append(out / "best.json")
    if done:
        report.files += _optuna_plots(study, out, report.notes)
        report.files.append(plot_best_curves(report, plan.base.total_steps, plan.threshold, out / "best_curves.png"))
    return report


def _optuna_plots(study: Any, out: Path, notes: list[str]) -> list[Path]:
    """Optuna's optimization history and parameter importances (matplotlib), where they apply."""
    import optuna
    from optuna.visualization import matplotlib as ovm

    plt = pyplot()
    files = []
    for fname, draw in (
        ("optimization_history.png", ovm.plot_optimization_history),
        ("param_importances.png", ovm.plot_param_importances),
    ):
        try:
            with warnings.catch_warnings(), plt.style.context("default"):  # Optuna sets ggplot globally
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                warnings.filterwarnings("ignore", "No artists with labels", UserWarning)
                ax = draw(study)
            fig: Any = ax.figure
            fig.set_size_inches(7, 4.5)
            fig.tight_layout()
            fig.savefig(out / fname, dpi=90)
            plt.close(fig)
            files.append(out / fname)
        except (ValueError, RuntimeError, ZeroDivisionError) as e:  # e.g. importances of fewer than 2 trials
            plt.close("all")
            notes.append(f"{fname} not drawn: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    return files


def plot_best_curves(report: TuneReport, budget: int, threshold: float | None, path: Path, top: int = 5) -> Path:
    """Greedy-evaluation return of the best ``top`` complete trials (mean over seeds, shaded:
    mean +- std), best first."""
    plt = pyplot()
    done = [r for r in report.rows if r["state"] == "complete" and r["_evals"]]
    done.sort(key=lambda r: r["value"], reverse=report.objective != "steps_to_threshold")
    fig, ax = plt.subplots(figsize=(7.5, 4.5), constrained_layout=True)
    colors = plt.get_cmap("tab10")
    for i, r in enumerate(done[:top]):
        runs = [{"_evals": ev} for ev in r["_evals"]]
        grid, mu, sd = band(runs, budget)
        params = ", ".join(f"{k}={fmt_value(r[k])}" for k in report.keys)
        ax.plot(grid, mu, color=colors(i), label=f"trial {r['number']} ({r['value']:.4g}): {params}", linewidth=1.6)
        ax.fill_between(grid, mu - sd, mu + sd, color=colors(i), alpha=0.15)
    if threshold is not None:
        ax.axhline(threshold, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"greedy eval return (mean +- std, {len(done[0]['_evals']) if done else 0} seeds)")
    ax.set_title(f"best trials by {report.objective}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="best")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def format_tune_table(report: TuneReport, limit: int = 10) -> str:
    """The best ``limit`` complete trials, one line each, then the counts by state."""
    name = report.objective
    done = [r for r in report.rows if r["state"] == "complete"]
    done.sort(key=lambda r: r["value"], reverse=name != "steps_to_threshold")
    lines = [f"{'trial':>5} {name + ' mean+-std':>22} {'IQM [95% CI]':>28}  parameters"]
    for r in done[:limit]:
        ms = f"{r[f'{name}_mean']:.4g}+-{r[f'{name}_std']:.3g}"
        ci = f"{r[f'{name}_iqm']:.4g} [{r[f'{name}_iqm_lo']:.4g}, {r[f'{name}_iqm_hi']:.4g}]"
        params = " ".join(f"{k}={fmt_value(r[k])}" for k in report.keys)
        lines.append(f"{r['number']:>5} {ms:>22} {ci:>28}  {params}")
    counts: dict[str, int] = {}
    for r in report.rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    lines.append(
        f"{len(report.rows)} trials: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f"; {report.env_steps:,} env steps in all"
        + (f" (mean {np.mean([r['env_steps'] or 0 for r in report.rows]):,.0f} per trial)" if report.rows else "")
    )
    return "\n".join(lines)


__all__ = ["TuneReport", "format_tune_table", "objective_text", "plot_best_curves", "write_tune_report"]
