"""The GPU check (benchmarks/gpu/run.sh, issue 19) dry-run on this machine, so that the script and
its benchmarks cannot rot between GPU runs: every step runs (installs and the build only checked,
CUDA parts skipped with a clear line, benchmarks at tiny sizes) and writes the log, the JSON of
figures and the PNGs."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu" / "run.sh"
PNG = b"\x89PNG\r\n\x1a\n"


def run_script(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "OUT"}
    # PYTHONSAFEPATH: the script's pythons never import the repository root's source folder
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**base, "PYTHON": sys.executable, "PYTHONSAFEPATH": "1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu")
    out = tmp / "out"
    r = run_script(str(out), env={"GPU_DRY_RUN": "1", "GPU_WHEELS": str(tmp / "no-wheels")})
    return r, out


def test_dry_run_passes_and_writes_few_files(dry_run):
    r, out = dry_run
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["e2e.png", "gpu.json", "log.txt", "prefetch.png", "updates.png"]  # the device tool returns <= 8
    for name in ("e2e.png", "prefetch.png", "updates.png"):
        assert (out / name).read_bytes()[:8] == PNG
    log = (out / "log.txt").read_text()
    assert log == r.stdout  # the whole output is in the log
    assert "GPU check (dry run" in log and "passed" in log.splitlines()[-1]


def test_dry_run_says_what_it_skipped(dry_run):
    log = (dry_run[1] / "log.txt").read_text()
    assert "SKIP wheel install (dry run): no wheels in" in log
    assert "SKIP build (dry run): fastrl is already importable" in log
    for step in ("wheels", "build", "cuda-tests", "device-tests", "bench"):
        assert re.search(rf"^== {step}: rc=0 in \d+s$", log, re.M), step
    assert re.search(r"^\d+/\d+ tests collected", log, re.M)  # the device test files, collected
    assert "SKIP atari: the Pong run to >= 18" in log
    assert re.search(r"^atari  Breakout m-dqn +cpu +\d+ env steps/s", log, re.M)  # the dry run: every path on CPU
    if not torch.cuda.is_available():
        assert re.search(r"^\d+ skipped, \d+ deselected", log, re.M)  # the cuda tests: collected, skipped
        for what in (
            "CUDA-graph update of the LunarLander preset",
            "pinned host memory",
            "Nature-CNN update with a CUDA graph and with bf16 autocast",
            "end-to-end runs on the GPU",
        ):
            assert f"SKIP (no CUDA): {what}" in log, what


def test_dry_run_figures(dry_run):
    data = json.loads((dry_run[1] / "gpu.json").read_text())
    assert data["meta"]["dry_run"] is True and data["errors"] == []
    assert data["graph"]["eager"]["updates_per_s"] > 0 and data["cnn"]["eager"]["updates_per_s"] > 0
    assert [row["setting"][:12] for row in data["prefetch"]] == ["LunarLander ", "Atari frames"]
    assert all(row["prefetch_us"] > 0 and row["copy_us"] > 0 for row in data["prefetch"])
    envs = {(row["env"], row["device"]) for row in data["e2e"]}
    assert ("CartPole-v1", "cpu") in envs
    for row in data["e2e"]:  # the dry run caps LunarLander at 0 s: it stops at its first log, step 200
        capped = row["env"] == "LunarLander-v3"
        assert row["capped"] is capped and row["env_steps"] == (200 if capped else 600), row
        assert row["train_seconds"] > 0 and not row["reached"]
    runs = data["atari"]["runs"]
    assert [r["preset"] for r in runs] == ["default", "m-dqn"] and data["atari"]["readiness"]["ale_py"][0].isdigit()
    assert all(r["env_steps_per_s"] > 0 and r["updates_per_s"] > 0 and r["timed_steps"] == 200 for r in runs), runs
    if not torch.cuda.is_available():
        assert "graph" not in data["graph"] and "graph" not in data["cnn"] and data["checks"] == {}


def test_run_needs_an_output_folder(tmp_path):
    r = run_script(env={}, timeout=30)
    assert r.returncode == 2 and "usage: bash benchmarks/gpu/run.sh OUTDIR" in r.stderr


def test_wheel_list_pins_one_version_each():
    lines = [s for s in (REPO / "benchmarks/gpu/wheels.txt").read_text().splitlines() if s and not s.startswith("#")]
    names = [s.split("==")[0].lower() for s in lines]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", s) for s in lines), lines
    assert len(set(names)) == len(names) and {"gymnasium", "box2d", "pygame-ce", "ale-py", "minatar"} <= set(names)


def test_every_test_that_needs_cuda_is_marked_cuda():
    """The GPU check runs ``pytest -m cuda``: a test skipped without CUDA must carry the mark."""
    unmarked = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
                continue
            decorators = [ast.get_source_segment(source, d) or "" for d in node.decorator_list]
            needs_cuda = any("cuda.is_available" in d or d == "cuda" for d in decorators)
            if needs_cuda and "pytest.mark.cuda" not in decorators:
                unmarked.append(f"{path.name}::{node.name}")
    assert not unmarked, f"needs CUDA but not marked @pytest.mark.cuda: {unmarked}"
