"""Slow end-to-end runs on the real benchmarks (`make test-slow`)."""

from __future__ import annotations

import json

import pytest

from test_run import run_cli, run_dir


@pytest.mark.slow
@pytest.mark.parametrize("model, loss", [("sasrec", "ce"), ("mf", "bpr"), ("lightgcn", "bpr")])
def test_one_full_epoch_on_ml1m(tmp_path, data_dir, model, loss):
    """One real epoch on ml1m already ranks far better than random (HR@10 = 0.003)."""
    result = run_cli([f"model={model}", f"loss={loss}", "data=ml1m", "trainer.max_epochs=1"], tmp_path, data_dir, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir(tmp_path) / "metrics.json").read_text())
    assert metrics["test/hr@10"] > 0.02


@pytest.mark.slow
def test_staged_gowalla_script_chains_its_checkpoints(tmp_path, data_dir):
    """experiments/lightgcn_gowalla.sh on a tiny budget: every stage finishes, stages 2 and 3
    start from the previous stage's best checkpoint with their L2 weight, and a rerun skips
    the finished stages."""
    import os
    import subprocess
    import sys

    from test_run import REPO

    if not (data_dir / "gowalla").is_dir():
        pytest.skip("no gowalla/ in the data directory")
    out = tmp_path / "staged"
    tiny = ["trainer.max_epochs=1", "trainer.check_val_every_n_epoch=1", "+trainer.limit_train_batches=1",
            "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1", "logger=none"]
    env = dict(os.environ, PYTHON=sys.executable, RECSYS_DATA_DIR=str(data_dir))
    cmd = ["bash", str(REPO / "experiments/lightgcn_gowalla.sh"), str(out), *tiny]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    for stage, previous, weight in (("stage2", "stage1", "0.02"), ("stage3", "stage2", "0.05")):
        assert (out / stage / "metrics.json").is_file()
        loaded = json.loads((out / stage / "loaded_components.json").read_text())["loaded"]
        assert loaded[0]["ckpt"] == str(out / previous / "checkpoints/best.ckpt")
        assert f"weight: {weight}" in (out / stage / "config_resolved.yaml").read_text()
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.count("already done") == 3
