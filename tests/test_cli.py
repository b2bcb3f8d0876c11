"""The fastrl command, run in a subprocess with tiny step counts."""

import subprocess
import sys

import pytest

TINY = [
    "--steps",
    "250",
    "--set",
    "learning_starts=100",
    "--set",
    "eval_every=0",
    "--set",
    "eval_episodes=2",
    "--set",
    "batch_size=16",
    "--no-progress",
]


def fastrl(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "fastrl", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def assert_one_line_error(p, match):
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastrl: error:") and match in lines[0], p.stderr


def test_train_eval_plot_resume(tmp_path):
    run = tmp_path / "run"
    p = fastrl("train", *TINY, "--seed", "3", "--run-dir", run, "--set", "checkpoint_every=100")
    assert p.returncode == 0, p.stderr
    assert "final greedy evaluation" in p.stdout
    for name in (
        "config.json",
        "metrics.csv",
        "training.png",
        "checkpoints/best.pt",
        "checkpoints/last.pt",
    ):
        assert (run / name).is_file()

    p = fastrl("eval", run, "--episodes", "3", "--video")
    assert p.returncode == 0, p.stderr
    assert "3 greedy episodes: mean" in p.stdout
    video = p.stdout.strip().splitlines()[-1].split("video: ")[1]
    assert video.endswith((".mp4", ".gif"))

    p = fastrl("plot", run, run, "--out", tmp_path / "curves.png")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "curves.png").stat().st_size > 1000

    p = fastrl("train", "--resume", run, "--steps", "300", "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "300 env steps" in p.stdout


def test_help_lists_config_fields():
    p = fastrl("train", "--help")
    assert p.returncode == 0
    for field in (
        "learning_rate",
        "target_update_interval",
        "double_dqn",
        "epsilon_schedule",
        "learning_starts",
    ):
        assert field in p.stdout


def test_print_config_uses_preset():
    p = fastrl("train", "dqn", "LunarLander-v3", "--print-config", "--set", "dueling=true")
    assert p.returncode == 0, p.stderr
    assert '"env_id": "LunarLander-v3"' in p.stdout and '"dueling": true' in p.stdout


@pytest.mark.parametrize(
    "args,match",
    [
        (["train", "dqn", "NoSuchEnv-v9", "--steps", "10"], "NoSuchEnv-v9"),
        (["train", "dqn", "Pendulum-v1", "--steps", "10"], "discrete action space"),
        (["train", "--set", "bogus=1"], "unknown config key 'bogus'"),
        (["train", "--set", "batch_size=big"], "bad value for batch_size"),
        (["train", "--set", "batch_size"], "key=value"),
        (["train", "ppo"], "unknown algorithm 'ppo'"),
        (["eval", "no/such/run"], "no such run"),
    ],
)
def test_bad_input_one_line_error(args, match, capsys):
    from fastrl.cli import (
        main,
    )  # in-process: same code path as the command, without a new interpreter

    rc = main(args)
    err = capsys.readouterr().err
    assert_one_line_error(subprocess.CompletedProcess(args, rc, "", err), match)


def test_damaged_checkpoint_one_line_error(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"PK\x03\x04garbage")
    assert_one_line_error(fastrl("eval", bad), "damaged")
