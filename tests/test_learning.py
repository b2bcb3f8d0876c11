"""Long learning runs (deselected in CI with -m "not slow"); the benchmark measures them properly."""

import pytest

import fastrl


@pytest.mark.slow
def test_cartpole_preset_reaches_500(tmp_path):
    cfg = fastrl.preset("dqn", "CartPole-v1")
    r = fastrl.train(cfg, run_dir=tmp_path / "run", progress=False)
    assert r.solved and r.final_eval == 500.0


@pytest.mark.slow
def test_lunarlander_preset_reaches_200(tmp_path):
    cfg = fastrl.preset("dqn", "LunarLander-v3")
    r = fastrl.train(cfg, run_dir=tmp_path / "run", progress=False)
    first = r.first_reaching(200.0)
    assert first is not None and first["episodes"] <= 500
