"""IQM and stratified bootstrap intervals (fastrl.experiments.stats) against slow loops in
tests/reference.py, and the sweep report's columns built from them."""

import math

import numpy as np
import pytest
from reference import bootstrap_slow, iqm_slow, percentile_slow

from fastrl.experiments.manifest import prepare_dir, write_result
from fastrl.experiments.report import collect, format_table
from fastrl.experiments.stats import bootstrap_ci, bootstrap_distribution, iqm, summarize
from fastrl.experiments.sweep import plan_sweep


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 13])
def test_iqm_matches_the_slow_model(n):
    x = np.random.default_rng(n).normal(size=n) * 10
    assert iqm(x) == pytest.approx(iqm_slow(x))


def test_iqm_by_hand():
    assert iqm([1, 2, 3, 4]) == 2.5  # drops 1 and 4
    assert iqm([1, 2, 3, 4, 100, -100, 7, 8]) == pytest.approx((2 + 3 + 4 + 7) / 4)
    assert iqm([5, 1, 9]) == 5  # fewer than 4: nothing dropped
    assert iqm(np.array([[1, 10], [2, 20], [3, 30], [4, 40]])) == pytest.approx((3 + 4 + 10 + 20) / 4)


@pytest.mark.parametrize("statistic", ["iqm", "mean"])
@pytest.mark.parametrize("shape", [(5,), (2,), (6, 3), (3, 2)])
def test_bootstrap_matches_the_slow_model(statistic, shape):
    scores = np.random.default_rng(1).normal(size=shape) * 50 + 100
    reps, seed = 300, 7
    runs = shape[0]
    tasks = shape[1] if len(shape) > 1 else 1
    idx = np.random.default_rng(seed).integers(0, runs, size=(reps, runs, tasks))  # the documented draws
    fast = bootstrap_distribution(scores, statistic, reps, seed)
    slow = bootstrap_slow(scores, statistic, idx)
    np.testing.assert_allclose(fast, slow, rtol=1e-12)
    lo, hi = bootstrap_ci(scores, statistic, reps=reps, seed=seed)
    assert (lo, hi) == (pytest.approx(percentile_slow(slow, 2.5)), pytest.approx(percentile_slow(slow, 97.5)))


def test_stratified_resampling_keeps_each_task_in_its_column():
    # task 0 scores near 0, task 1 near 1000: every resample takes runs/2 of each, so the mean of
    # every resample is about 500 (an unstratified bootstrap would range widely)
    scores = np.array([[0.0, 1000.0], [1.0, 1001.0], [2.0, 1002.0], [3.0, 1003.0]])
    dist = bootstrap_distribution(scores, "mean", reps=2000, seed=0)
    assert dist.min() >= 500 and dist.max() <= 503


def test_bootstrap_interval_of_the_mean_is_about_the_normal_one():
    x = np.random.default_rng(3).normal(10.0, 2.0, size=400)
    lo, hi = bootstrap_ci(x, "mean", reps=4000, seed=1)
    half = 1.96 * x.std() / math.sqrt(x.size)
    assert lo == pytest.approx(x.mean() - half, abs=0.05) and hi == pytest.approx(x.mean() + half, abs=0.05)


def test_summarize_and_bad_input():
    s = summarize([3.0, None, 1.0, float("nan"), 2.0])
    assert (s["mean"], s["std"], s["iqm"]) == (2.0, pytest.approx(math.sqrt(2 / 3)), 2.0)
    assert 1.0 <= s["iqm_lo"] <= s["iqm"] <= s["iqm_hi"] <= 3.0
    assert summarize([None]) == dict.fromkeys(("mean", "std", "iqm", "iqm_lo", "iqm_hi", "mean_lo", "mean_hi"))
    assert summarize([4.0])["iqm_lo"] == summarize([4.0])["iqm_hi"] == 4.0  # one seed: no spread
    with pytest.raises(ValueError, match="finite"):
        iqm([1.0, float("inf")])
    with pytest.raises(ValueError, match="at least one run"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="size"):
        bootstrap_ci([1.0, 2.0], size=1.0)


def _ok(finals):
    return {"status": "ok", "error": "", "env_steps": 2000, "episodes": 5, "solved": False, "train_seconds": 1.0,
            "resumed_from": None, "wall_seconds": 2.0,
            "evals": [{"step": 1000, "episodes": 1, "train_seconds": 0.5, "mean": 0.0, "std": 0.0},
                      {"step": 2000, "episodes": 2, "train_seconds": 1.0, "mean": finals, "std": 0.0}]}


def test_sweep_report_has_iqm_and_intervals(tmp_path):
    plan = plan_sweep("dqn", "CartPole-v1", seeds=5, steps=2000, out=tmp_path / "s")
    prepare_dir(plan)
    finals = [10.0, 50.0, 20.0, 40.0, 30.0]
    for seed, f in zip(plan.seeds, finals):
        write_result(plan.out / f"{plan.labels[0]}/seed{seed}", _ok(f))
    rep = collect(plan.out, metric="final")
    row = rep.summary[0]
    assert row["final_mean"] == 30.0 and row["final_iqm"] == pytest.approx(iqm_slow(finals)) == 30.0
    idx = np.random.default_rng(0).integers(0, 5, size=(10_000, 5, 1))
    slow = bootstrap_slow(finals, "iqm", idx)
    assert row["final_iqm_lo"] == pytest.approx(percentile_slow(slow, 2.5))
    assert row["final_iqm_hi"] == pytest.approx(percentile_slow(slow, 97.5))
    assert row["final_mean_lo"] < 30.0 < row["final_mean_hi"]
    assert "final IQM [95% CI]" in format_table(rep) and f"[{row['final_iqm_lo']:.1f}," in format_table(rep)
