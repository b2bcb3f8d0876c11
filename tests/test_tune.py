"""fastrl tune: bad searches refused before any run, a real search (lockstep seeds equal to single
runs, trials.csv, best.json that `fastrl train --config` runs, plots), pruning, resume and extension,
a killed tuner and a killed worker, Ray, and `fastrl train --config` errors.

Runs are tiny (1000-2000 CartPole steps); worker and interpreter start-up cost most of the time.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("optuna")

import fastrl as fr  # noqa: E402
from fastrl.agents import DQNConfig  # noqa: E402
from fastrl.cli import main  # noqa: E402
from fastrl.config import ConfigError, from_dict  # noqa: E402
from fastrl.experiments.report import area_under_curve, read_csv  # noqa: E402
from fastrl.experiments.trial import round_value  # noqa: E402
from fastrl.experiments.tune import plan_tune, run_tune  # noqa: E402

TINY = {"learning_starts": 100, "eval_every": 250, "eval_episodes": 2, "batch_size": 16, "checkpoint_every": 250}
TINY_FLAGS = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
LR = "learning_rate=1e-4:1e-2:log"


def fastrl(*args, **kw):
    return subprocess.run([sys.executable, "-P", "-m", "fastrl", *map(str, args)],
                          capture_output=True, text=True, timeout=300, check=False, **kw)


def strip(evals):
    return [{k: v for k, v in e.items() if k != "train_seconds"} for e in evals]


# ---------------------------------------------------------------------------- refused searches
@pytest.mark.parametrize("kw, match", [
    ({"params": ["lr=1e-4:1e-2"]}, "unknown config key 'lr'"),
    ({"params": ["learning_rate=1e-2:1e-4"]}, "low 1e-2 must be < high 1e-4"),
    ({"params": ["learning_rate=1e-3:1e-3"]}, "must be < high"),
    ({"params": ["learning_rate=0:1e-2:log"]}, "a log range needs low > 0"),
    ({"params": ["learning_rate=-1:1e-2:log"]}, "a log range needs low > 0"),
    ({"params": ["learning_rate=1e-4:1e-2:ln"]}, "expected lo:hi or lo:hi:log"),
    ({"params": ["learning_rate=-1:1"]}, "--param learning_rate=-1: "),
    ({"params": ["batch_size=32"]}, "a choice needs at least 2 values"),
    ({"params": ["batch_size=32,,64"]}, "empty value"),
    ({"params": ["batch_size=32,32"]}, "repeated"),
    ({"params": ["batch_size=32,many"]}, "bad value for batch_size"),
    ({"params": ["batch_size=0,32"]}, "--param batch_size=0: "),
    ({"params": ["loss=1:2"]}, "not a numeric field"),
    ({"params": ["total_steps=1000:2000"]}, "total_steps cannot be tuned"),
    ({"params": ["seed=1,2"]}, "seed cannot be swept"),
    ({"params": [LR, "learning_rate=0.1,0.2"]}, "given twice"),
    ({"params": []}, "at least one --param"),
    ({"trials": 0}, "--trials must be >= 1"),
    ({"seeds": 0}, "--seeds must be >= 1"),
    ({"objective": "best"}, "unknown objective 'best'"),
    ({"pruner": "hyperband"}, "unknown pruner"),
    ({"overrides": {**TINY, "eval_every": 0}}, "needs evaluations during the runs"),
    ({"overrides": {**TINY, "solved_threshold": None}, "objective": "steps_to_threshold"}, "needs --threshold"),
    ({"overrides": {"nope": 1}}, "unknown config key 'nope'"),
])
def test_bad_searches_are_refused_before_any_run(tmp_path, kw, match):
    args = {"params": [LR], "trials": 2, "steps": 1000, "overrides": TINY, "out": tmp_path / "t", **kw}
    with pytest.raises(ConfigError, match=match):
        plan_tune("dqn", "CartPole-v1", **args)
    assert not (tmp_path / "t").exists()


def test_named_preset_search_is_recorded(tmp_path):
    kw = dict(params=["learning_rate=1e-5:1e-4:log"], trials=2, steps=1000, out=tmp_path / "t",
              overrides={"buffer_size": 1000, "eval_every": 500})
    plan = plan_tune("dqn", "ALE/Pong-v5", preset="m-dqn", **kw)
    assert (plan.base.munchausen, plan.base.adam_eps, plan.base.buffer_size) == (True, 3.125e-4, 1000)
    assert plan.manifest()["preset"] == "m-dqn"
    default = plan_tune("dqn", "ALE/Pong-v5", **kw)
    assert "preset" not in default.manifest() and not default.base.munchausen
    with pytest.raises(ConfigError, match="no 'm-dqn' preset for dqn on CartPole-v1"):
        plan_tune("dqn", "CartPole-v1", preset="m-dqn", **kw)
    from fastrl.experiments.tune import prepare_tune_dir
    prepare_tune_dir(plan)
    with pytest.raises(ConfigError, match='holds a different search .its preset is "m-dqn", this search\'s null'):
        prepare_tune_dir(default)


def test_bad_executor_and_workers_are_refused(tmp_path):
    plan = plan_tune("dqn", "CartPole-v1", params=[LR], trials=1, steps=1000, overrides=TINY, out=tmp_path / "t")
    with pytest.raises(ConfigError, match="--workers must be >= 1"):
        run_tune(plan, workers=0)
    with pytest.raises(ConfigError, match="unknown executor"):
        run_tune(plan, executor="slurm")
    assert not (tmp_path / "t").exists()


def test_without_optuna_one_line_names_the_extra(tmp_path):
    out = tmp_path / "t"
    code = ("import sys; sys.modules['optuna'] = None; from fastrl.cli import main; "
            f"sys.exit(main(['tune', 'dqn', 'CartPole-v1', '--trials', '2', '--param', '{LR}', '--out', '{out}']))")
    p = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 2, p.stderr
    line, = p.stderr.strip().splitlines()
    assert line == 'fastrl: error: fastrl tune needs Optuna: pip install "fastrl[tune]"'
    assert not out.exists()


def test_round_values_by_hand():
    def rows(*pairs):
        return [{"step": s, "mean": m} for s, m in pairs]
    a = rows((100, 10), (200, 30), (300, 20))
    b = rows((100, 20), (200, 40))  # stopped early (solved) after 200
    # round 1: a's AUC over [100, 200] is 20, b's 30 -> 25
    assert round_value("auc", [a, b], [False, True], 1, 300, None) == (200, 25.0)
    # round 2: b holds 40 to 300: AUC 30 + ... = (30 * 100 + 40 * 100) / 200 = 35; a's 22.5
    assert round_value("auc", [a, b], [False, True], 2, 300, None) == (300, pytest.approx((22.5 + 35) / 2))
    assert round_value("auc", [a, b], [False, True], 2, 300, None)[1] == pytest.approx(
        (area_under_curve([100, 200, 300], [10, 30, 20], 300) + area_under_curve([100, 200], [20, 40], 300)) / 2)
    assert round_value("final", [a, b], [False, True], 2, 300, None) == (300, 30.0)
    # threshold 25: a reaches it at 200, b at 200; before that each counts as the current step
    assert round_value("steps_to_threshold", [a, b], [False, False], 0, 300, 25) == (100, 100.0)
    assert round_value("steps_to_threshold", [a, b], [False, True], 2, 300, 25) == (300, 200.0)
    # a seed that ended without reaching it counts as the budget
    c = rows((100, 0), (200, 0))
    assert round_value("steps_to_threshold", [c], [True], 1, 1000, 25) == (200, 1000.0)
    assert round_value("steps_to_threshold", [c], [False], 1, 1000, 25) == (200, 200.0)


# ---------------------------------------------------------------------------- a real search
@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune") / "t"
    plan = plan_tune("dqn", "CartPole-v1", params=[LR, "hidden_sizes=32,32;64,64"], trials=2, seeds=2,
                     steps=1000, overrides=TINY, out=out)
    lines = []
    report = run_tune(plan, workers=1, tensorboard=False, log=lines.append)
    return plan, report, lines


def test_search_writes_its_report(tuned):
    plan, report, lines = tuned
    assert lines[0].startswith(f"tune {plan.out}: 2 trials x 2 seeds of 1000 steps; 0 finished (kept)")
    assert lines[1] == ("objective: mean over 2 seeds of auc, the mean greedy-evaluation return over "
                        "[first evaluation, 1000] env steps (maximize)")
    assert len([ln for ln in lines if ln.startswith("[")]) == 2
    for name in ("tune.json", "study.db", "trials.csv", "best.json", "optimization_history.png",
                 "param_importances.png", "best_curves.png", "trials/0000/result.json",
                 "trials/0001/seed1/checkpoints/last.pt"):
        assert (plan.out / name).is_file(), name
    rows = read_csv(plan.out / "trials.csv")
    assert [r["state"] for r in rows] == ["complete", "complete"] and rows[0]["seeds"] == "2"
    for r in rows:
        res = json.loads((plan.out / r["runs"] / "result.json").read_text())
        aucs = [area_under_curve([e["step"] for e in s["evals"]], [e["mean"] for e in s["evals"]], 1000)
                for s in res["seeds"]]
        assert float(r["value"]) == pytest.approx(sum(aucs) / 2) == pytest.approx(float(r["auc_mean"]))
        assert float(r["auc_iqm_lo"]) <= float(r["auc_iqm"]) <= float(r["auc_iqm_hi"])
        assert int(r["env_steps"]) == 2000 and r["pruned_at"] == ""
        assert r["hidden_sizes"] in ("32x32", "64x64")
        assert [s["seed"] for s in res["seeds"]] == [0, 1]
        assert [x for x, _ in res["intermediate"]] == [250, 500, 750, 1000]  # one report per round
    best = max(rows, key=lambda r: float(r["value"]))
    assert report.best["number"] == int(best["number"])
    cfg = json.loads((plan.out / "best.json").read_text())
    assert cfg["algo"] == "dqn" and cfg["learning_rate"] == pytest.approx(float(best["learning_rate"]))
    assert cfg["seed"] == 0 and cfg["total_steps"] == 1000


def test_lockstep_seeds_are_the_runs_fastrl_train_makes(tuned, tmp_path):
    plan, report, _ = tuned
    res = json.loads((plan.out / report.best["runs"] / "result.json").read_text())
    cfg = json.loads((plan.out / "best.json").read_text())
    cfg.pop("algo")
    straight = fr.train(from_dict(DQNConfig, {**cfg, "seed": 1}), run_dir=tmp_path / "r", progress=False,
                        tensorboard=False)
    assert strip(straight.evals) == strip(res["seeds"][1]["evals"])


def test_train_config_runs_best_json_with_overrides(tuned, tmp_path, capsys):
    plan, _, _ = tuned
    best = plan.out / "best.json"
    assert main(["train", "--config", str(best), "--steps", "500", "--set", "eval_every=500",
                 "--run-dir", str(tmp_path / "r"), "--no-progress"]) == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    want = json.loads(best.read_text())
    assert saved == {**want, "total_steps": 500, "eval_every": 500}
    assert "final greedy evaluation" in capsys.readouterr().out


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object of config fields, got list"),
    ('{"algo": "dqn", "learning_rat": 0.1}', "unknown dqn config key\\(s\\) 'learning_rat'"),
    ('{"algo": "ppo"}', "unknown algorithm 'ppo'"),
    ('{"algo": "dqn", "batch_size": "many"}', "bad value for batch_size"),
    ('{"algo": "ddpg"}', "is a ddpg config; the command line asks for dqn"),
])
def test_train_config_errors_are_one_line(tmp_path, capsys, content, match):
    path = tmp_path / "c.json"
    path.write_text(content)
    args = ["train", "dqn", "--config", str(path)] if "ddpg" in content else ["train", "--config", str(path)]
    assert main([*args, "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    line, = err.strip().splitlines()
    assert line.startswith(f"fastrl: error: --config {path}") or "is a ddpg config" in line
    import re
    assert re.search(match, line), line
    assert not (tmp_path / "r").exists()
    assert main(["train", "--config", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_rerun_keeps_finished_trials_extends_and_refuses_another_search(tuned):
    plan, report, _ = tuned
    before = read_csv(plan.out / "trials.csv")
    stamp = (plan.out / "trials/0000/result.json").stat().st_mtime_ns
    more = plan_tune("dqn", "CartPole-v1", params=[LR, "hidden_sizes=32,32;64,64"], trials=3, seeds=2,
                     steps=1000, overrides=TINY, out=plan.out)
    lines = []
    run_tune(more, workers=1, tensorboard=False, log=lines.append)
    assert "3 trials x 2 seeds of 1000 steps; 2 finished (kept), 0 interrupted (re-run)" in lines[0]
    assert [ln.split(":")[0] for ln in lines if ln.startswith("[")] == [
        "[3/3] trial 2 " + ln.split(" ", 3)[3].split(":")[0] for ln in lines if ln.startswith("[")]
    after = read_csv(plan.out / "trials.csv")
    assert len(after) == 3 and after[:2] == before
    assert (plan.out / "trials/0000/result.json").stat().st_mtime_ns == stamp

    other = plan_tune("dqn", "CartPole-v1", params=["learning_rate=1e-3:1e-2:log"], trials=2, seeds=2,
                      steps=1000, overrides=TINY, out=plan.out)
    with pytest.raises(ConfigError, match="holds a different search \\(its space is"):
        run_tune(other, workers=1, tensorboard=False, log=lambda s: None)
    assert read_csv(plan.out / "trials.csv") == after


def test_pruning_stops_trials_early(tmp_path):
    plan = plan_tune("dqn", "CartPole-v1", params=["learning_rate=1e-5:1e-1:log"], trials=5, seeds=1,
                     steps=1000, overrides=TINY, pruner="halving", out=tmp_path / "t")
    lines = []
    report = run_tune(plan, workers=1, tensorboard=False, log=lines.append)
    rows = read_csv(plan.out / "trials.csv")
    pruned = [r for r in rows if r["state"] == "pruned"]
    assert pruned, lines
    for r in pruned:
        res = json.loads((plan.out / r["runs"] / "result.json").read_text())
        assert res["status"] == "pruned" and int(r["pruned_at"]) == res["pruned_at"] < 1000
        assert int(r["env_steps"]) == res["env_steps"] == res["seeds"][0]["env_steps"] < 1000
        assert r["value"] == ""
    assert report.env_steps < 5 * 1000


# ---------------------------------------------------------------------------- crashes
def _tune_args(out, trials=1):
    return ["tune", "dqn", "CartPole-v1", "--trials", trials, "--param", LR, "--steps", "2000", "--seeds", "1",
            "--workers", "1", "--no-tensorboard", "--out", out, *TINY_FLAGS]


def _start(args):
    return subprocess.Popen([sys.executable, "-P", "-m", "fastrl", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(path: Path, proc, timeout=240):
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert proc.poll() is None, "the tuner ended before it could be interrupted: " + proc.stdout.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _workers_of(pid):
    """The pool's worker processes among ``pid``'s children (not multiprocessing's resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
            if "spawn_main" in cmd:
                found.append(int(child))
    return found


def test_killed_worker_is_retried_once_and_a_killed_tuner_resumes(tmp_path):
    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs /proc to find the worker")
    out, ckpt = tmp_path / "t", tmp_path / "t/trials/0000/seed0/checkpoints/last.pt"
    proc = _start(_tune_args(out))
    try:
        _wait_for(ckpt, proc)
        first, = _workers_of(proc.pid)
        os.kill(first, signal.SIGKILL)  # trial 0 fails; trial 1 retries it from its checkpoint
        killed_at = ckpt.stat().st_mtime_ns
        deadline = time.monotonic() + 240
        while ckpt.stat().st_mtime_ns == killed_at:  # the retry has resumed and saved again
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.005)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # now the tuner: its worker stops by itself
        proc.wait()
    text = proc.stdout.read().decode()
    assert "trial 0 learning_rate=" in text and "FAILED: worker process died" in text and "(retried once)" in text
    assert not (out / "trials/0000/result.json").is_file() or "lost" in (out / "trials/0000/result.json").read_text()

    p = fastrl(*_tune_args(out))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 finished (kept), 1 interrupted (re-run)" in p.stdout
    rows = read_csv(out / "trials.csv")
    assert [(r["state"], r["retry_of"], r["rerun_of"], r["runs"]) for r in rows] == [
        ("fail", "", "", "trials/0000"), ("fail", "0", "", "trials/0000"), ("complete", "0", "1", "trials/0000")]
    assert "worker process died" in rows[0]["error"] and "interrupted" in rows[1]["error"]
    res = json.loads((out / "trials/0000/result.json").read_text())
    assert res["status"] == "ok" and res["seeds"][0]["resumed_from"] > 0
    assert "best: trial 2" in p.stdout and (out / "best.json").is_file()

    # the resumed run is the run that was never interrupted
    cfg = json.loads((out / "best.json").read_text())
    cfg.pop("algo")
    straight = fr.train(from_dict(DQNConfig, cfg), run_dir=tmp_path / "r", progress=False, tensorboard=False)
    assert strip(straight.evals) == strip(res["seeds"][0]["evals"])


def test_ray_executor(tmp_path):
    pytest.importorskip("ray")
    plan = plan_tune("dqn", "CartPole-v1", params=[LR], trials=2, seeds=1, steps=500, overrides=TINY,
                     pruner="none", out=tmp_path / "t")
    report = run_tune(plan, executor="ray", workers=2, tensorboard=False, log=lambda s: None)
    assert [r["state"] for r in report.rows] == ["complete", "complete"]
    assert (plan.out / "best.json").is_file()


def test_cli_tune_bad_param_is_one_line_and_runs_nothing(tmp_path):
    p = fastrl("tune", "dqn", "CartPole-v1", "--trials", "2", "--param", "learning_rate=0:1:log",
               "--out", tmp_path / "t")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    line, = p.stderr.strip().splitlines()
    assert line == "fastrl: error: --param learning_rate: a log range needs low > 0, got 0"
    assert not (tmp_path / "t").exists()
