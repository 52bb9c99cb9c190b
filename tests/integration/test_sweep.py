"""A loss sweep end to end: multirun, one failing job, offline W&B runs, the local report."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from recsys.loggers.wandb_offline import find_offline_runs, read_offline_run
from recsys.report import report

REPO = Path(__file__).resolve().parents[2]
LOSSES = ("ce", "nss", "bpr")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """3 losses x seeds 1, 2 and 'two' (an invalid seed: one failing job per loss)."""
    log_dir = tmp_path_factory.mktemp("sweep")
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE")}
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [
        sys.executable, "-m", "recsys.run", "-m", f"loss={','.join(LOSSES)}", "seed=1,2,two",
        "logger=wandb", "trainer.max_epochs=2", "+trainer.limit_train_batches=3", "model.max_len=20",
        "data.dataset.n_users=400", "data.dataset.n_items=240", "data.dataset.n_clusters=6",
        "task_name=sw", f"paths.log_dir={log_dir}",
    ]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (log_dir / "sw" / "multiruns").iterdir()
    return sweep_dir


def test_a_failing_job_does_not_stop_the_sweep(sweep):
    jobs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert len(jobs) == 9
    done = [p for p in jobs if (p / "metrics.json").exists()]
    failed = [p for p in jobs if (p / "failed.json").exists()]
    assert len(done) == 6 and len(failed) == 3
    assert all("seed-two" in p.name for p in failed)
    assert not any((p / "metrics.json").exists() for p in failed)  # nothing that looks complete
    assert "seed" in json.loads((failed[0] / "failed.json").read_text())["error"]


def test_each_job_leaves_an_offline_wandb_run_grouped_by_sweep(sweep):
    runs = [read_offline_run(p) for p in find_offline_runs(sweep)]
    assert len(runs) == 6  # the failing jobs fail before W&B starts
    assert {r.group for r in runs} == {f"sw/{sweep.name}"}
    assert {r.name for r in runs} == {f"loss={loss},seed={seed}" for loss in LOSSES for seed in (1, 2)}
    for r in runs:
        loss = r.name.split(",")[0].split("=")[1]
        assert {"model:sasrec", f"loss:{loss}", "data:synthetic"} <= set(r.tags)
        assert r.exit_code == 0
        assert r.config["seed"] == int(r.name.split("seed=")[1])  # the resolved config
        assert r.config["loss"]["_target_"].startswith("recsys.losses.")
        assert len(r.series("train/loss_step")) == 6  # every step: 3 per epoch x 2 epochs
        assert len(r.series("val/ndcg@10")) >= 2  # every epoch
        job = next(p for p in sweep.iterdir() if f"loss-{loss}__" in p.name and f"seed-{r.config['seed']}" in p.name)
        metrics = json.loads((job / "metrics.json").read_text())
        assert math.isclose(r.summary["test/ndcg@10"], metrics["test/ndcg@10"], rel_tol=1e-6)


def test_report_tables_significance_and_plots(sweep, tmp_path):
    md = report(sweep, tmp_path)
    table = pd.read_csv(tmp_path / "report.csv")
    assert set(table["variant"]) == {f"loss={loss}" for loss in LOSSES}
    assert (table["done"] == 2).all() and (table["failed"] == 1).all()
    assert table["test/ndcg@10 mean"].is_monotonic_decreasing  # sorted, best first
    others = table.iloc[1:]
    assert others["p_wilcoxon_holm"].between(0, 1).all() and others["p_ttest_holm"].between(0, 1).all()
    assert (others["users_paired"] > 100).all()  # 400 users
    for name in ("train_loss.png", "val_ndcg@10.png", "jobs.csv"):
        assert (tmp_path / name).stat().st_size > 0
    text = md.read_text()
    assert "## Failed jobs" in text and text.count("seed-two") == 3
    jobs = pd.read_csv(tmp_path / "jobs.csv")
    assert (jobs["status"] == "failed").sum() == 3
