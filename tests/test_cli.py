"""The fastrl command, run in a subprocess with tiny step counts."""

import json
import subprocess
import sys

import pytest

from fastrl.cli import main

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
        [sys.executable, "-P", "-m", "fastrl", *map(str, args)],  # -P: not the source tree on sys.path
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        check=False,
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
    p = fastrl("eval", run, "--episodes", "2", "--epsilon", "0.05")
    assert p.returncode == 0 and "2 epsilon-greedy (0.05) episodes: mean" in p.stdout, p.stderr
    p = fastrl("eval", run, "--epsilon", "2")
    assert p.returncode != 0 and "--epsilon must be in [0, 1], got 2.0" in p.stderr

    p = fastrl("plot", run, run, "--out", tmp_path / "curves.png")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "curves.png").stat().st_size > 1000

    p = fastrl("train", "--resume", run, "--steps", "300", "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "300 env steps" in p.stdout


@pytest.mark.parametrize("algo,env_id", [("sail-dqn", "CartPole-v1"), ("ddpg", "Pendulum-v1"),
                                         ("td3", "Pendulum-v1")])
def test_train_eval_plot_resume_other_algos(tmp_path, algo, env_id):
    run = tmp_path / "run"
    p = fastrl("train", algo, env_id, *TINY, "--run-dir", run, "--set", "max_episode_steps=50",
               "--set", "checkpoint_every=100")
    assert p.returncode == 0, p.stderr
    assert "final greedy evaluation" in p.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["algo"] == algo and config["env_id"] == env_id
    p = fastrl("eval", run, "--episodes", "2", "--video")
    assert p.returncode == 0, p.stderr
    assert "2 greedy episodes: mean" in p.stdout and "video: " in p.stdout
    p = fastrl("plot", run)
    assert p.returncode == 0, p.stderr
    assert (run / "curves.png").stat().st_size > 1000
    p = fastrl("train", "--resume", run, "--steps", "300", "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "300 env steps" in p.stdout
    assert json.loads((run / "config.json").read_text())["algo"] == algo


def test_progress_bar_shows_the_agents_scalar(tmp_path):
    p = fastrl("train", "ddpg", "Pendulum-v1", "--steps", "120", "--set", "learning_starts=50",
               "--set", "eval_every=0", "--set", "eval_episodes=1", "--set", "log_every=20",
               "--run-dir", tmp_path / "run")
    assert p.returncode == 0, p.stderr
    assert "noise_scale=0.1" in p.stderr and "sps=" in p.stderr  # tqdm writes to stderr


def test_help_lists_config_fields():
    p = fastrl("train", "--help")
    assert p.returncode == 0
    for field in (
        "learning_rate",
        "target_update_interval",
        "double_dqn",
        "epsilon_schedule",
        "learning_starts",
        "sail_alpha",
        "actor_learning_rate",
        "twin_critics",
        "policy_delay",
        "target_policy_noise",
        "ou_theta",
    ):
        assert field in p.stdout
    for algo in ("dqn", "sail-dqn", "ddpg", "td3"):
        assert f"{algo} config fields" in p.stdout
    assert "sail-dqn config fields: those of dqn, with sail=True" in p.stdout


def test_print_config_uses_preset():
    p = fastrl("train", "dqn", "LunarLander-v3", "--print-config", "--set", "dueling=true")
    assert p.returncode == 0, p.stderr
    assert '"env_id": "LunarLander-v3"' in p.stdout and '"dueling": true' in p.stdout


def test_named_preset(tmp_path):
    p = fastrl("train", "dqn", "ALE/Pong-v5", "--preset", "m-dqn", "--print-config", "--set", "buffer_size=1000")
    assert p.returncode == 0, p.stderr
    cfg = json.loads(p.stdout)
    assert (cfg["munchausen"], cfg["learning_rate"], cfg["buffer_size"]) == (True, 5e-5, 1000)  # --set over it
    (tmp_path / "c.json").write_text(json.dumps({"algo": "dqn", "seed": 3}))
    p = fastrl("train", "dqn", "ALE/Pong-v5", "--preset", "m-dqn", "--config", str(tmp_path / "c.json"), "--print-config")
    assert p.returncode == 0, p.stderr
    assert (json.loads(p.stdout)["munchausen"], json.loads(p.stdout)["seed"]) == (True, 3)
    p = fastrl("train", "dqn", "CartPole-v1", "--preset", "m-dqn", "--print-config")
    assert p.returncode == 2 and "no 'm-dqn' preset for dqn on CartPole-v1; its presets: default" in p.stderr
    p = fastrl("train", "--resume", str(tmp_path), "--preset", "m-dqn")
    assert p.returncode == 2 and "--preset starts a new run" in p.stderr


@pytest.mark.parametrize(
    "args,match",
    [
        (["train", "dqn", "NoSuchEnv-v9", "--steps", "10"], "NoSuchEnv-v9"),
        (["train", "dqn", "Pendulum-v1", "--steps", "10"], "discrete action space"),
        (["train", "sail-dqn", "Pendulum-v1", "--steps", "10"], "discrete action space"),
        (["train", "ddpg", "CartPole-v1", "--steps", "10"], "continuous (Box) action space"),
        (["train", "td3", "--set", "policy_delay=0"], "policy_delay"),
        (["train", "sail-dqn", "--set", "sail_alpha=2"], "sail_alpha"),
        (["train", "--set", "bogus=1"], "unknown config key 'bogus'"),
        (["train", "--set", "batch_size=big"], "bad value for batch_size"),
        (["train", "--set", "batch_size"], "key=value"),
        (["train", "ppo"], "unknown algorithm 'ppo'"),
        (["eval", "no/such/run"], "no such run"),
    ],
)
def test_bad_input_one_line_error(args, match, capsys):
    rc = main(args)  # in-process: same code path as the command, without a new interpreter
    err = capsys.readouterr().err
    assert_one_line_error(subprocess.CompletedProcess(args, rc, "", err), match)


def test_damaged_checkpoint_one_line_error(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"PK\x03\x04garbage")
    assert_one_line_error(fastrl("eval", bad), "damaged")
