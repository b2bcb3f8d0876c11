"""Crash-safe training: a run killed with SIGKILL at random moments never leaves a corrupt run
directory, and `fastrl train --resume` completes it. A kill loses at most the steps since the last
checkpoint (``checkpoint_every``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fastrl.training import checkpoint
from fastrl.training.logger import read_metrics

STEPS = 3000
ARGS = ["--steps", str(STEPS), "--no-progress", "--set", "checkpoint_every=500", "--set", "eval_every=1000",
        "--set", "solved_threshold=none",
        "--set", "eval_episodes=2", "--set", "learning_starts=200"]


def fastrl(*args, timeout=300):
    return subprocess.run([sys.executable, "-P", "-m", "fastrl", *args], capture_output=True, text=True,
                          timeout=timeout)


def check_run_dir(run):
    """Everything in the run directory that a resume or a reader uses is whole."""
    ckpts = run / "checkpoints"
    for p in ckpts.glob("*.pt"):
        checkpoint.load(p)  # raises on a damaged file
    if (ckpts / "last.pt").exists():
        state = checkpoint.load(ckpts / "last.pt")
        if state.get("buffer_file"):
            assert (ckpts / state["buffer_file"]).exists(), "last.pt names a buffer file that is missing"
    if (run / "metrics.csv").exists():
        read_metrics(run)


@pytest.mark.parametrize("trial", range(3))
def test_sigkill_at_random_moments_then_resume(tmp_path, trial):
    rng = np.random.default_rng(trial)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-P", "-m", "fastrl", "train", "--run-dir", str(run), "--seed",
                             str(trial), *ARGS], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(float(rng.uniform(2.0, 7.0)))  # start-up takes ~2 s; training ~5-10 s on a loaded machine
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # the half-written run is consistent
    check_run_dir(run)
    if (run / "checkpoints" / "last.pt").exists():
        steps_before = checkpoint.load(run / "checkpoints" / "last.pt")["trainer"]["env_steps"]
        r = fastrl("train", "--resume", str(run), "--no-progress")
        assert r.returncode == 0, r.stderr[-2000:]
    else:  # killed before the first checkpoint: nothing to resume, start again
        steps_before = 0
        r = fastrl("train", "--run-dir", str(run), "--seed", str(trial), *ARGS)
        assert r.returncode == 0, r.stderr[-2000:]
    check_run_dir(run)
    state = checkpoint.load(run / "checkpoints" / "last.pt")
    assert state["trainer"]["env_steps"] == STEPS and steps_before <= STEPS
    metrics = read_metrics(run)
    steps = metrics["eval/mean_return"][0]
    assert steps == sorted(set(steps)), "evaluation rows duplicated or out of order after the resume"
