"""Sweeps: expansion, seeding, statistics, failed runs, resume after a kill, Ray, the CLI.

Runs are tiny (1000-3000 CartPole steps); the local executor's worker processes and Ray's startup
cost most of the time here.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

import fastrl as fr
from fastrl.agents import DQNConfig
from fastrl.cli import main
from fastrl.config import ConfigError, from_dict
from fastrl.experiments.manifest import prepare_dir, write_result
from fastrl.experiments.plan import Range, grid_points, parse_grid, parse_ranges, random_points
from fastrl.experiments.report import area_under_curve, collect, differences, read_csv, run_metrics
from fastrl.experiments.sweep import plan_sweep, run_sweep

TINY = {"learning_starts": 100, "eval_every": 250, "eval_episodes": 2, "batch_size": 16,
        "checkpoint_every": 250}
TINY_FLAGS = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]


def fastrl(*args, **kw):
    return subprocess.run([sys.executable, "-P", "-m", "fastrl", *map(str, args)],
                          capture_output=True, text=True, timeout=300, check=False, **kw)


# ---------------------------------------------------------------------------- expansion
def test_grid_parsing_and_product_order():
    g = parse_grid(DQNConfig, ["buffer_capacity=1000,1e4", "target_update_interval=10,100",
                               "hidden_sizes=64,64;32", "double_dqn=true,false"])
    assert g == {"buffer_size": [1000, 10000], "target_update_interval": [10, 100],
                 "hidden_sizes": [(64, 64), (32,)], "double_dqn": [True, False]}
    pts = grid_points({"a": [1, 2], "b": ["x", "y", "z"]})
    assert pts == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"},
                   {"a": 2, "b": "x"}, {"a": 2, "b": "y"}, {"a": 2, "b": "z"}]


def test_random_points_are_seeded_distinct_and_in_range():
    space = parse_ranges(DQNConfig, ["learning_rate=1e-4:1e-2:log", "buffer_size=1000:100000:log",
                                     "gamma=0.9:0.999", "loss=huber,mse"])
    assert space["learning_rate"] == Range(1e-4, 1e-2, log=True)
    assert space["buffer_size"].integer and not space["gamma"].log
    a, b = random_points(space, 20, seed=3), random_points(space, 20, seed=3)
    assert a == b and a != random_points(space, 20, seed=4)
    assert len({repr(p) for p in a}) == 20
    for p in a:
        assert 1e-4 <= p["learning_rate"] <= 1e-2 and 0.9 <= p["gamma"] <= 0.999
        assert isinstance(p["buffer_size"], int) and 1000 <= p["buffer_size"] <= 100_000
        assert p["loss"] in ("huber", "mse")
    # log-uniform: about half the draws below the geometric middle (1e-3)
    lr = [p["learning_rate"] for p in random_points(space, 200, seed=0)]
    assert 70 < sum(x < 1e-3 for x in lr) < 130
    with pytest.raises(ConfigError, match="only 2 distinct"):
        random_points({"loss": ["huber", "mse"]}, 3)


def test_plan_seeds_and_configs(tmp_path):
    plan = plan_sweep("dqn", "CartPole-v1", grid=["buffer_size=1000,2000"], seeds=3, steps=5000,
                      overrides={"seed": "7", "learning_rate": "1e-3"}, out=tmp_path / "s")
    assert plan.seeds == [7, 8, 9]
    tasks = plan.tasks()
    assert [t["id"] for t in tasks] == [f"c0{c}_buffer_size={b}/seed{s}"
                                        for c, b in ((0, 1000), (1, 2000)) for s in (7, 8, 9)]
    assert [t["config"]["seed"] for t in tasks] == [7, 8, 9] * 2
    assert {t["config"]["buffer_size"] for t in tasks[3:]} == {2000}
    c = tasks[0]["config"]
    assert (c["total_steps"], c["learning_rate"], c["train_freq"]) == (5000, 1e-3, 256)  # preset kept
    assert c["checkpoint_every"] == 1000  # a tenth of the budget (at least 1000) unless set
    # the default directory is a digest of the sweep: the same command finds the same directory
    a = plan_sweep("dqn", "CartPole-v1", grid=["buffer_size=1000,2000"], seeds=2)
    b = plan_sweep("dqn", "CartPole-v1", grid={"buffer_size": [1000, 2000]}, seeds=2)
    c2 = plan_sweep("dqn", "CartPole-v1", grid=["buffer_size=1000,3000"], seeds=2)
    assert a.out == b.out != c2.out


def test_named_preset_sweep_is_recorded_and_kept_apart(tmp_path):
    kw = dict(grid=["learning_rate=1e-5,5e-5"], steps=1000, overrides={"buffer_size": 1000})
    plan = plan_sweep("dqn", "ALE/Pong-v5", preset="m-dqn", out=tmp_path / "s", **kw)
    c = plan.tasks()[0]["config"]
    assert (c["munchausen"], c["learning_starts"], c["buffer_size"], c["learning_rate"]) == (True, 20_000, 1000, 1e-5)
    prepare_dir(plan)
    assert json.loads((tmp_path / "s" / "sweep.json").read_text())["preset"] == "m-dqn"
    # the default preset is not recorded (manifests from before --preset existed still match)
    default = plan_sweep("dqn", "ALE/Pong-v5", out=tmp_path / "s", **kw)
    assert "preset" not in json.dumps(default.tasks()[0]["config"]) and default.preset == "default"
    assert plan_sweep("dqn", "ALE/Pong-v5", **kw).out != plan_sweep("dqn", "ALE/Pong-v5", preset="m-dqn", **kw).out
    with pytest.raises(ConfigError, match="holds a different sweep .*--preset m-dqn"):
        prepare_dir(default)
    with pytest.raises(ConfigError, match="no 'm-dqn' preset for dqn on CartPole-v1; its presets: default"):
        plan_sweep("dqn", "CartPole-v1", preset="m-dqn")
    assert main(["sweep", "--report", str(tmp_path / "s"), "--preset", "m-dqn"]) == 2


@pytest.mark.parametrize("kw, match", [
    ({"grid": ["buffer_size"]}, "--grid expects key=v1,v2"),
    ({"grid": ["buffer_size="]}, "--grid expects key=v1,v2"),
    ({"grid": ["buffer_size=1000,,10"]}, "empty value"),
    ({"grid": ["buffer_size=1000,abc"]}, "bad value for buffer_size: 'abc'"),
    ({"grid": ["bufer_size=1000"]}, "did you mean buffer_size"),
    ({"grid": ["buffer_size=1000", "buffer_capacity=10"]}, "buffer_size is given twice"),
    ({"grid": ["buffer_size=10,10"]}, "repeated"),
    ({"grid": ["seed=1,2"]}, "--seeds"),
    ({"grid": ["env_id=CartPole-v1"]}, "ENV argument"),
    ({"grid": ["buffer_size=0,10"]}, "buffer_size=0: buffer_size must be >= 1"),
    ({"grid": ["loss=huber,l1"]}, "must be one of huber, mse"),
    ({"ranges": ["learning_rate=1e-4:1e-2"]}, "needs --random"),
    ({"ranges": ["learning_rate=1e-2:1e-4"], "random": 2}, "must be < high"),
    ({"ranges": ["learning_rate=0:1:log"], "random": 2}, "log range needs low > 0"),
    ({"ranges": ["learning_rate=1:2:ln"], "random": 2}, "lo:hi:log"),
    ({"ranges": ["loss=a:b"], "random": 2}, "not a numeric field"),
    ({"random": 2}, "needs at least one"),
    ({"seeds": 0}, "--seeds must be >= 1"),
])
def test_bad_sweeps_are_refused_before_any_run(kw, match):
    with pytest.raises(ConfigError, match=match):
        plan_sweep("dqn", "CartPole-v1", **kw)


def test_bad_env_and_algo():
    with pytest.raises(ConfigError, match="cannot make env"):
        plan_sweep("dqn", "NoSuchEnv-v0")
    with pytest.raises(ConfigError, match="unknown algorithm"):
        plan_sweep("nope", "CartPole-v1")


# ---------------------------------------------------------------------------- statistics
def test_area_under_curve_by_hand():
    # (1000, 10) -> (2000, 30) -> (3000, 20): trapezoids 20000 + 25000 over 2000 steps
    assert area_under_curve([1000, 2000, 3000], [10, 30, 20], 3000) == pytest.approx(22.5)
    # stopped at 2000 with 30: held to 4000 -> (20000 + 60000) / 3000
    assert area_under_curve([1000, 2000], [10, 30], 4000) == pytest.approx(80000 / 3000)
    assert area_under_curve([500], [7], 500) == 7
    assert math.isnan(area_under_curve([], [], 100))
    m = run_metrics([{"step": 1000, "train_seconds": 1.5, "mean": 10.0},
                     {"step": 2000, "train_seconds": 3.0, "mean": 30.0},
                     {"step": 3000, "train_seconds": 4.5, "mean": 20.0}], 3000, threshold=25)
    assert m == {"final": 20.0, "best": 30.0, "auc": pytest.approx(22.5),
                 "steps_to_threshold": 2000.0, "seconds_to_threshold": 3.0}


def _ok(evals):
    return {"status": "ok", "error": "", "env_steps": evals[-1][0], "episodes": 5, "solved": False,
            "train_seconds": 1.0, "resumed_from": None, "wall_seconds": 2.0,
            "evals": [{"step": s, "episodes": 1, "train_seconds": t, "mean": m, "std": 0.0}
                      for s, t, m in evals]}


def test_summary_statistics_by_hand(tmp_path):
    plan = plan_sweep("dqn", "CartPole-v1", grid=["buffer_size=1000,2000"], seeds=3, steps=3000,
                      overrides={"solved_threshold": "25"}, out=tmp_path / "s")
    prepare_dir(plan)
    d = plan.out
    write_result(d / "c00_buffer_size=1000/seed0", _ok([(1000, 1, 10), (2000, 2, 30), (3000, 3, 20)]))
    write_result(d / "c00_buffer_size=1000/seed1", _ok([(1000, 1, 20), (2000, 2, 20), (3000, 3, 20)]))
    write_result(d / "c00_buffer_size=1000/seed2", _ok([(1000, 2, 40), (2000, 4, 50), (3000, 6, 60)]))
    fail = {**_ok([(1000, 1, 0)]), "status": "failed", "error": "RuntimeError: boom", "evals": []}
    write_result(d / "c01_buffer_size=2000/seed0", fail)
    write_result(d / "c01_buffer_size=2000/seed1", _ok([(1000, 1, 30), (2000, 2, 10)]))  # stopped early
    # c01 seed2 has no result: pending
    rep = collect(d)
    s0, s1 = rep.summary
    # finals 20, 20, 60: mean 100/3, population std sqrt(((40/3)^2 * 2 + (80/3)^2) / 3)
    assert s0["final_mean"] == pytest.approx(100 / 3)
    assert s0["final_std"] == pytest.approx(math.sqrt((2 * (40 / 3) ** 2 + (80 / 3) ** 2) / 3))
    assert (s0["best_mean"], s0["best_std"]) == (pytest.approx(110 / 3), pytest.approx(math.sqrt(
        ((30 - 110 / 3) ** 2 + (20 - 110 / 3) ** 2 + (60 - 110 / 3) ** 2) / 3)))
    # aucs 22.5, 20, (45000 + 55000) / 2000 = 50
    assert s0["auc_mean"] == pytest.approx((22.5 + 20 + 50) / 3)
    # threshold 25: seed0 at 2000 steps (2 s), seed1 never, seed2 at 1000 steps (2 s)
    assert (s0["reached"], s0["steps_to_threshold_mean"], s0["steps_to_threshold_std"]) == (2, 1500, 500)
    assert s0["seconds_to_threshold_mean"] == 2 and s0["status"] == "ok" and s0["ok"] == 3
    assert (s1["ok"], s1["failed"], s1["pending"], s1["status"]) == (1, 1, 1, "partial")
    assert s1["error"] == "RuntimeError: boom"
    assert s1["final_mean"] == 10 and s1["final_std"] == 0
    assert s1["auc_mean"] == pytest.approx((20000 + 10 * 1000) / 2000)  # 10 held to 3000
    assert [r["status"] for r in rep.runs] == ["ok", "ok", "ok", "failed", "ok", "pending"]
    assert rep.best("auc")["label"] == "c00_buffer_size=1000"
    assert rep.best("steps_to_threshold")["label"] == "c01_buffer_size=2000"  # 1000 < 1500


# ---------------------------------------------------------------------------- real runs
@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """2 x 2 grid, 1 seed, 1000 steps: two runs train, two fail (a CNN for vector observations)."""
    out = tmp_path_factory.mktemp("sweep") / "local"
    plan = plan_sweep("dqn", "CartPole-v1", grid=["buffer_size=500,1000", "network=mlp,cnn"],
                      steps=1000, overrides=TINY, out=out)
    lines = []
    report = run_sweep(plan, workers=2, tensorboard=False, log=lines.append)
    return plan, report, lines


def test_failed_runs_are_reported_and_the_sweep_goes_on(local_sweep):
    plan, report, lines = local_sweep
    assert len([ln for ln in lines if ln.startswith("[")]) == 4
    assert [r["status"] for r in report.summary] == ["ok", "failed", "ok", "failed"]
    bad = report.summary[1]
    assert bad["ok"] == 0 and bad["failed"] == 1 and "NatureCNN" in bad["error"]
    runs = read_csv(plan.out / "runs.csv")
    assert [r["status"] for r in runs] == ["ok", "failed", "ok", "failed"]
    assert "NatureCNN" in runs[1]["error"] and runs[1]["final"] == ""
    assert (plan.out / "c01_buffer_size=500_network=cnn/seed0/error.txt").is_file()
    good = plan.out / "c00_buffer_size=500_network=mlp/seed0"
    for name in ("config.json", "metrics.csv", "training.png", "checkpoints/last.pt", "result.json"):
        assert (good / name).is_file(), name
    for name in ("summary.csv", "runs.csv", "curves.png", "heatmap.png", "sweep.json"):
        assert (plan.out / name).is_file(), name
    assert float(runs[0]["final"]) == report.summary[0]["final_mean"]
    assert json.loads((good / "config.json").read_text())["buffer_size"] == 500


def test_report_redraws(local_sweep, capsys):
    plan, _, _ = local_sweep
    (plan.out / "heatmap.png").unlink()
    assert main(["sweep", "--report", str(plan.out), "--metric", "best", "--threshold", "9"]) == 0
    out = capsys.readouterr().out
    assert "best by best" in out and "2 run(s) failed" in out
    assert (plan.out / "heatmap.png").is_file()
    assert read_csv(plan.out / "summary.csv")[0]["threshold"] == "9"


def test_ray_executor_gives_the_same_summary(local_sweep, tmp_path):
    pytest.importorskip("ray")
    plan, _report, _ = local_sweep
    ray_plan = plan_sweep("dqn", "CartPole-v1", grid=["buffer_size=500,1000", "network=mlp,cnn"],
                          steps=1000, overrides=TINY, out=tmp_path / "ray")
    run_sweep(ray_plan, executor="ray", workers=2, tensorboard=False, log=lambda s: None)
    a, b = collect(plan.out), collect(ray_plan.out)  # (another test redraws with --threshold)
    assert differences(a.summary, b.summary) == []
    assert differences(a.runs, b.runs) == []
    assert a.summary[0]["final_mean"] == b.summary[0]["final_mean"] is not None
    assert a.runs[0]["_evals"][-1]["mean"] == b.runs[0]["_evals"][-1]["mean"]
    assert differences(a.summary, b.summary, ignore=()) != []  # only timings differ


def test_resume_after_kill_skips_finished_runs(tmp_path):
    out = tmp_path / "s"
    args = ["sweep", "dqn", "CartPole-v1", "--grid", "buffer_size=500,1000", "--steps", "2000",
            "--workers", "1", "--no-tensorboard", "--out", out, *TINY_FLAGS]
    proc = subprocess.Popen([sys.executable, "-P", "-m", "fastrl", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    first, second = out / "c00_buffer_size=500/seed0", out / "c01_buffer_size=1000/seed0"
    deadline = time.monotonic() + 240
    try:
        while not ((first / "result.json").is_file() and (second / "checkpoints/last.pt").is_file()):
            assert proc.poll() is None, "the sweep ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the sweep process only: its worker stops by itself
        proc.wait()
    assert not (second / "result.json").is_file()
    stamp = (first / "result.json").stat().st_mtime_ns

    p = fastrl(*args)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 finished (skipped), 1 to resume, 0 new" in p.stdout
    assert (first / "result.json").stat().st_mtime_ns == stamp
    resumed = json.loads((second / "result.json").read_text())
    assert resumed["status"] == "ok" and resumed["resumed_from"] > 0
    assert [r["status"] for r in read_csv(out / "summary.csv")] == ["ok", "ok"]

    # the resumed run is the run that was never interrupted (CPU runs are deterministic)
    saved = json.loads((second / "config.json").read_text())
    saved.pop("algo")
    cfg = from_dict(DQNConfig, saved)
    straight = fr.train(cfg, run_dir=tmp_path / "straight", progress=False, tensorboard=False)
    strip = [{k: v for k, v in e.items() if k != "train_seconds"} for e in straight.evals]
    assert [{k: v for k, v in e.items() if k != "train_seconds"} for e in resumed["evals"]] == strip

    # another grid into the same directory is refused before anything runs
    p = fastrl(*[a if a != "buffer_size=500,1000" else "buffer_size=500,2000" for a in args])
    assert p.returncode == 2 and "Traceback" not in p.stderr
    line, = p.stderr.strip().splitlines()
    assert "holds a different sweep" in line and "buffer_size=500,1000" in line


def test_cli_bad_grid_is_one_line_and_runs_nothing(tmp_path):
    p = fastrl("sweep", "dqn", "CartPole-v1", "--grid", "buffer_size=1000;10000",
               "--out", tmp_path / "s")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    line, = p.stderr.strip().splitlines()
    assert line.startswith("fastrl: error: --grid: bad value for buffer_size")
    assert not (tmp_path / "s").exists()
