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
