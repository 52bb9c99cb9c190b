"""The sweep report on hand-made job folders: statistics, Holm, partial sweeps, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from recsys.errors import RecsysError
from recsys.report import collect, holm, report

N_USERS = 50


def make_job(sweep: Path, num: int, loss: str, seed: int, ndcg_per_user: np.ndarray | None, epochs: int = 3,
             target_counts: np.ndarray | None = None) -> Path:
    job = sweep / f"{num}_loss-{loss}__seed-{seed}"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(f"- loss={loss}\n- seed={seed}\n- data=synthetic\n")
    pd.DataFrame(
        {"epoch": range(epochs), "train/loss": np.linspace(2, 1, epochs), "val/ndcg@10": np.linspace(0.1, 0.2, epochs)}
    ).to_csv(job / "epochs.csv", index=False)
    if ndcg_per_user is not None:
        table = {"user": range(N_USERS), "test/ndcg@10": ndcg_per_user}
        if target_counts is not None:
            table["target_train_count"] = target_counts
        pd.DataFrame(table).to_csv(job / "test_per_user.csv", index=False)
        metrics = {"test/ndcg@10": float(ndcg_per_user.mean()), "val/ndcg@10": 0.2, "epochs": epochs}
        (job / "metrics.json").write_text(json.dumps(metrics))
    return job


def test_holm_matches_hand_computed():
    # sorted p: 0.01*3=0.03, 0.02*2=0.04, 0.04*1=0.04 (monotone)
    assert np.allclose(holm([0.04, 0.01, 0.02]), [0.04, 0.03, 0.04])
    assert np.allclose(holm([0.5, 0.9]), [1.0, 1.0])


def test_report_means_stds_and_paired_tests(tmp_path):
    rng = np.random.default_rng(0)
    good = [rng.uniform(0.3, 0.6, N_USERS) for _ in range(2)]
    bad = [g - rng.uniform(0.0, 0.2, N_USERS) for g in good]
    same = [g + rng.normal(0, 0.01, N_USERS) for g in good]
    num = 0
    for loss, values in (("ce", good), ("bpr", bad), ("nss", same)):
        for seed, v in zip((1, 2), values):
            make_job(tmp_path, num, loss, seed, v)
            num += 1
    report(tmp_path, tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "report.csv").set_index("variant")
    means = [np.mean([g.mean() for g in vals]) for vals in (good, bad, same)]
    assert np.isclose(table.loc["loss=bpr", "test/ndcg@10 mean"], means[1])
    assert np.isclose(table.loc["loss=bpr", "test/ndcg@10 std"], np.std([b.mean() for b in bad], ddof=1))
    best = "loss=ce" if means[0] >= means[2] else "loss=nss"
    other = "loss=nss" if best == "loss=ce" else "loss=ce"
    ref = np.mean(good if best == "loss=ce" else same, axis=0)
    p_bad = stats.wilcoxon(ref, np.mean(bad, axis=0)).pvalue
    p_other = stats.wilcoxon(ref, np.mean(same if best == "loss=ce" else good, axis=0)).pvalue
    assert np.isclose(table.loc["loss=bpr", "p_wilcoxon_holm"], holm([p_bad, p_other])[0])
    assert table.loc["loss=bpr", "significant_0.05"]
    assert np.isclose(table.loc[other, "p_wilcoxon_holm"], holm([p_bad, p_other])[1])


def test_report_works_on_a_sweep_still_running(tmp_path):
    rng = np.random.default_rng(1)
    make_job(tmp_path, 0, "ce", 1, rng.uniform(0, 1, N_USERS))
    make_job(tmp_path, 1, "nss", 1, None, epochs=1)  # running: one epoch so far, no metrics.json
    failed = make_job(tmp_path, 2, "bpr", 1, None, epochs=0)
    (failed / "failed.json").write_text(json.dumps({"error": "ConfigError: loss.margin must be positive"}))
    md = report(tmp_path, tmp_path / "out").read_text()
    jobs = {j.variant: j.status for j in collect(tmp_path)}
    assert jobs == {"loss=ce": "done", "loss=nss": "unfinished", "loss=bpr": "failed"}
    assert "loss.margin must be positive" in md and "## Unfinished jobs" in md
    assert (tmp_path / "out" / "val_ndcg@10.png").exists()


def test_report_errors_are_one_line(tmp_path):
    with pytest.raises(RecsysError, match="does not exist"):
        report(tmp_path / "nope")
    with pytest.raises(RecsysError, match="no sweep jobs"):
        report(tmp_path)


@pytest.mark.parametrize("recipe", sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "conf" / "hparams_search").glob("*.yaml")))
def test_every_search_recipe_tunes_keys_that_exist(recipe, cfg_factory):
    """Each Optuna recipe composes, uses the Optuna sweeper, and only searches real config keys."""
    from omegaconf import OmegaConf

    from recsys.config import validate

    cfg = cfg_factory([f"hparams_search={recipe}"])
    assert "optuna" in cfg.hydra.sweeper._target_.lower()
    assert cfg.hydra.sweeper.max_failure_rate == 1.0  # a failed trial never stops the search
    for key in cfg.hydra.sweeper.params:
        assert OmegaConf.select(cfg, key) is not None, f"{recipe} searches {key}, which the config lacks"
    validate(cfg)


def test_loss_comparison_sweeps_every_loss_it_names(cfg_factory):
    from recsys.config import available

    cfg = cfg_factory(["experiment=loss_comparison"])
    losses = str(cfg.hydra.sweeper.params.loss).split(",")
    assert set(losses) <= set(available("loss")) and len(losses) >= 3
    assert len(str(cfg.hydra.sweeper.params.seed).split(",")) == 3


def test_curves_skip_epochs_without_validation(tmp_path):
    """With check_val_every_n_epoch=2 the validation columns are empty on odd rows; the
    curve is drawn through the validated epochs only (a NaN-gapped line would be invisible)."""
    from recsys.report import _curves

    job = make_job(tmp_path, 0, "ce", 1, np.full(N_USERS, 0.3), epochs=6)
    frame = pd.read_csv(job / "epochs.csv")
    frame.loc[frame.epoch % 2 == 0, "val/ndcg@10"] = np.nan
    frame.to_csv(job / "epochs.csv", index=False)
    jobs = collect(tmp_path)
    assert _curves(jobs, "val/ndcg@10", tmp_path / "val.png", "val")
    assert (tmp_path / "val.png").stat().st_size > 0


def test_cold_target_cut_recomputes_metrics_and_tests_on_the_kept_users(tmp_path):
    rng = np.random.default_rng(1)
    counts = np.arange(N_USERS) % 10 - 1  # -1 (no target), 0..8 training interactions
    cold = (counts >= 0) & (counts <= 3)
    runs = {"ce": [rng.uniform(0, 1, N_USERS) for _ in range(2)], "bpr": [rng.uniform(0, 1, N_USERS) for _ in range(2)]}
    num = 0
    for loss, values in runs.items():
        for seed, v in zip((1, 2), values):
            make_job(tmp_path, num, loss, seed, v, target_counts=counts)
            num += 1
    md = report(tmp_path, max_target_count=3)
    assert md.parent.name == "report_cold3"
    assert f"restricted to the {int(cold.sum())} users whose test target has at most 3" in md.read_text()
    table = pd.read_csv(md.parent / "report.csv").set_index("variant")
    for loss, values in runs.items():
        assert np.isclose(table.loc[f"loss={loss}", "test/ndcg@10 mean"], np.mean([v[cold].mean() for v in values]))
    ce, bpr = (np.mean(runs[k], axis=0)[cold] for k in ("ce", "bpr"))
    best, other = (ce, bpr) if ce.mean() >= bpr.mean() else (bpr, ce)
    row = table.drop(table["test/ndcg@10 mean"].idxmax()).iloc[0]
    assert row["users_paired"] == cold.sum()
    assert np.isclose(row["p_wilcoxon_holm"], stats.wilcoxon(best, other).pvalue)


def test_cold_target_cut_needs_the_count_column_and_some_user(tmp_path):
    make_job(tmp_path / "old", 0, "ce", 1, np.full(N_USERS, 0.5))
    with pytest.raises(RecsysError, match="no target_train_count column") as err:
        report(tmp_path / "old", max_target_count=3)
    assert "\n" not in str(err.value)
    make_job(tmp_path / "warm", 0, "ce", 1, np.full(N_USERS, 0.5), target_counts=np.full(N_USERS, 50))
    with pytest.raises(RecsysError, match="at most 3 training interactions; raise --max-target-count"):
        report(tmp_path / "warm", max_target_count=3)


def test_a_resumed_job_is_the_same_variant(tmp_path):
    make_job(tmp_path, 0, "ce", 1, np.full(N_USERS, 0.5))
    resumed = make_job(tmp_path, 1, "ce", 2, np.full(N_USERS, 0.4))
    overrides = resumed / ".hydra" / "overrides.yaml"
    overrides.write_text(overrides.read_text() + f"- ckpt_path={resumed}/checkpoints/last.ckpt\n")
    assert {j.variant for j in collect(tmp_path)} == {"all"}


def make_beyond_job(sweep: Path, num: int, loss: str, seed: int, rng: np.random.Generator, shift: float) -> dict:
    """A finished job whose runs also report the popularity-bias metrics (per-user ARP,
    APLT, novelty in test_per_user.csv; catalogue-level coverage and Gini in metrics.json)."""
    job = make_job(sweep, num, loss, seed, rng.uniform(0.2, 0.5, N_USERS))
    per_user = pd.read_csv(job / "test_per_user.csv")
    per_user["test/arp@10"] = rng.uniform(100, 200, N_USERS) - 50 * shift
    per_user["test/aplt@10"] = np.clip(rng.uniform(0, 0.3, N_USERS) + shift, 0, 1)
    per_user["test/novelty@10"] = rng.uniform(3, 5, N_USERS) + shift
    per_user.to_csv(job / "test_per_user.csv", index=False)
    metrics = json.loads((job / "metrics.json").read_text())
    metrics.update({c: float(per_user[c].mean()) for c in per_user.columns if c.startswith("test/")})
    metrics.update({"test/coverage@10": 0.3 + shift / 10, "test/gini@10": 0.9 - shift / 10})
    (job / "metrics.json").write_text(json.dumps(metrics))
    return {"per_user": per_user, "metrics": metrics}


def test_popularity_bias_columns_reach_the_tables_and_the_paired_tests(tmp_path):
    rng = np.random.default_rng(4)
    runs, num = {}, 0
    for loss, shift in (("ce", 0.0), ("bpr", 0.5)):
        for seed in (1, 2):
            runs.setdefault(loss, []).append(make_beyond_job(tmp_path, num, loss, seed, rng, shift))
            num += 1
    md = report(tmp_path, tmp_path / "out").read_text()
    table = pd.read_csv(tmp_path / "out" / "report.csv").set_index("variant")
    for loss in runs:
        for m in ("test/coverage@10", "test/gini@10", "test/arp@10", "test/aplt@10", "test/novelty@10"):
            values = [r["metrics"][m] for r in runs[loss]]
            assert np.isclose(table.loc[f"loss={loss}", f"{m} mean"], np.mean(values)), (loss, m)
            assert np.isclose(table.loc[f"loss={loss}", f"{m} std"], np.std(values, ddof=1)), (loss, m)
    assert "## Popularity bias and beyond accuracy (test, full ranking)" in md
    assert "| variant | coverage@10 | gini@10 | arp@10 | aplt@10 | novelty@10 |" in md
    bpr_gini = [r["metrics"]["test/gini@10"] for r in runs["bpr"]]
    assert f"| {_fmt_pair(bpr_gini)} |" in md.split("## Popularity bias")[1]
    # the paired tests on a per-user beyond-accuracy column: bpr (more novel) is the reference
    novel = report(tmp_path, tmp_path / "novelty", metric="test/novelty@10")
    ranked = pd.read_csv(novel.parent / "report.csv")
    assert ranked.loc[0, "variant"] == "loss=bpr"
    per_user = {k: np.mean([r["per_user"]["test/novelty@10"] for r in v], axis=0) for k, v in runs.items()}
    row = ranked.set_index("variant").loc["loss=ce"]
    assert row["users_paired"] == N_USERS
    assert np.isclose(row["mean_diff_vs_best"], (per_user["bpr"] - per_user["ce"]).mean())
    assert np.isclose(row["p_wilcoxon_holm"], stats.wilcoxon(per_user["bpr"], per_user["ce"]).pvalue)
    # ARP: lower is better, so bpr (less popular lists) is the reference and ranks first
    arp = report(tmp_path, tmp_path / "arp", metric="test/arp@10")
    ranked = pd.read_csv(arp.parent / "report.csv")
    assert list(ranked["variant"]) == ["loss=bpr", "loss=ce"]
    assert "Best by test/arp@10 (lowest mean): **loss=bpr**" in arp.read_text()
    assert "(highest mean): **loss=bpr**" in novel.read_text()


def _fmt_pair(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def test_beyond_accuracy_columns_are_ordered_by_k_then_metric_and_absent_without_them(tmp_path):
    from recsys.report import beyond_accuracy_columns

    names = ["test/novelty@20", "test/gini@10", "test/ndcg@10", "val/arp@10", "test/arp@10", "test/coverage@20", "epochs"]
    assert beyond_accuracy_columns(names) == ["test/gini@10", "test/arp@10", "test/coverage@20", "test/novelty@20"]
    make_job(tmp_path, 0, "ce", 1, np.full(N_USERS, 0.5))  # a run from before these metrics
    assert "Popularity bias" not in report(tmp_path, tmp_path / "out").read_text()
