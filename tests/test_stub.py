"""fastrl/_core.pyi matches the compiled module (mypy's stubtest)."""

import os
import subprocess
import sys

import pytest


def test_core_stub_is_honest():
    pytest.importorskip("mypy")
    allow = os.path.join(os.path.dirname(__file__), "stubtest-allowlist.txt")
    cfg = os.path.join(os.path.dirname(__file__), "stubtest-mypy.ini")
    r = subprocess.run([sys.executable, "-P", "-m", "mypy.stubtest", "fastrl._core", "--allowlist", allow,
                        "--mypy-config-file", cfg],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
