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
import yaml

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
    best, expected = paired_tests_against_the_best(sweep)
    assert table.loc[0, "variant"] == f"loss={best}"
    others = table.iloc[1:].set_index("variant")
    assert sorted(others.index) == sorted(f"loss={loss}" for loss in expected)
    for loss, want in expected.items():
        row = others.loc[f"loss={loss}"]
        assert row["users_paired"] == want["users"] and row["users_paired"] > 100  # 400 users
        assert row["mean_diff_vs_best"] == pytest.approx(want["mean_diff"], rel=1e-9)
        assert row["p_wilcoxon_holm"] == pytest.approx(want["wilcoxon"], rel=1e-9)
        assert row["p_ttest_holm"] == pytest.approx(want["ttest"], rel=1e-9)
    for name in ("train_loss.png", "val_ndcg@10.png", "jobs.csv"):
        assert (tmp_path / name).stat().st_size > 0
    text = md.read_text()
    assert "## Failed jobs" in text and text.count("seed-two") == 3
    jobs = pd.read_csv(tmp_path / "jobs.csv")
    assert (jobs["status"] == "failed").sum() == 3


def paired_tests_against_the_best(sweep: Path) -> tuple[str, dict[str, dict]]:
    """The report's significance columns recomputed from the job folders: per loss, the
    per-user test NDCG@10 averaged over its finished seeds, paired with the best loss (by
    mean test NDCG@10 over seeds) on the users both have; scipy's Wilcoxon signed-rank and
    paired t-test, and Holm's correction written out for the two comparisons."""
    from scipy import stats

    per_user, scores = {}, {}
    for job in sweep.iterdir():
        if not (job / "metrics.json").exists():
            continue
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))
        column = pd.read_csv(job / "test_per_user.csv").set_index("user")["test/ndcg@10"]
        per_user.setdefault(overrides["loss"], []).append(column)
        scores.setdefault(overrides["loss"], []).append(json.loads((job / "metrics.json").read_text())["test/ndcg@10"])
    best = max(scores, key=lambda loss: sum(scores[loss]) / len(scores[loss]))
    mean = {loss: pd.concat(columns, axis=1).mean(axis=1) for loss, columns in per_user.items()}
    out = {}
    for loss in (loss for loss in mean if loss != best):
        users = sorted(set(mean[best].index) & set(mean[loss].index))
        a, b = mean[best].loc[users].to_numpy(), mean[loss].loc[users].to_numpy()
        out[loss] = {"users": len(users), "mean_diff": float((a - b).mean()),
                     "wilcoxon": float(stats.wilcoxon(a, b).pvalue), "ttest": float(stats.ttest_rel(a, b).pvalue)}
    assert len(out) == 2
    for test in ("wilcoxon", "ttest"):  # Holm for m = 2: the smaller p times 2, the larger times 1, kept monotone
        low, high = sorted(out, key=lambda loss: out[loss][test])
        out[low][test] = min(1.0, 2 * out[low][test])
        out[high][test] = min(1.0, max(out[low][test], out[high][test]))
    return best, out
