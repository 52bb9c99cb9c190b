"""``python -m recsys.compare`` end to end on the synthetic data at a tiny budget: equal
trial counts, the best trial is what is retrained, a resumed protocol re-runs nothing, an
interrupted trial is re-run with its settings, failures are recorded, bad protocols stop
before anything runs, and the report has its columns and plots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from conftest import CONF, REPO, shared_data_dir
from recsys.compare import protocol
from recsys.compare.protocol import finished_trials, run_protocol
from recsys.errors import ConfigError

TINY = (
    "model=mf data.dataset.n_users=120 data.dataset.n_items=80 data.batch_size=256 logger=none "
    "callbacks=none eval.ks=[10]"
)


def protocol_cfg(out: Path, *extra: str):
    overrides = [
        "losses=[ce,bpr]", f'common="{TINY} paths.data_dir={shared_data_dir()}"', "trials=2", "startup_trials=1",
        "seeds=[1,2]", 'trial_budget="trainer.max_epochs=1"', 'final_budget="trainer.max_epochs=2"',
        "shared_space={model.dropout: null, optimizer.weight_decay: null}", f"out_dir={out}", *extra,
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("compare", overrides=overrides)


def run(cfg) -> Path:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return run_protocol(cfg)


@pytest.fixture
def counting(monkeypatch):
    """Counts the training runs the protocol starts."""
    calls: list[Path] = []
    real = protocol.run_training

    def spy(overrides, run_dir, label=None):
        calls.append(run_dir)
        return real(overrides, run_dir, label)

    monkeypatch.setattr(protocol, "run_training", spy)
    return calls


def test_protocol_equal_budget_best_trial_retrained_and_resume_reruns_nothing(tmp_path, counting):
    out = tmp_path / "cmp"
    md = run(protocol_cfg(out))
    assert len(counting) == 2 * 2 + 2 * 2 * 2  # 2 trials per loss, (tuned + untuned) x 2 seeds per loss

    table = pd.read_csv(out / "compare.csv")
    assert (table["trials_finished"] + table["trials_failed"]).tolist() == [2, 2]  # the same budget
    for loss in ("ce", "bpr"):
        trials = finished_trials(out, loss)
        best = max((t for t in trials if t["status"] == "done"), key=lambda t: (t["value"], -t["trial"]))
        for seed in (1, 2):
            run_dir = out / "final" / f"{['ce', 'bpr'].index(loss)}_loss-{loss}__tuned-t{best['trial']:03d}__seed-{seed}"
            used = OmegaConf.load(run_dir / "config_resolved.yaml")
            for key, value in best["params"].items():  # the best trial's settings are what is retrained
                assert OmegaConf.select(used, key) == pytest.approx(value)
            assert used.seed == seed and used.trainer.max_epochs == 2
            assert (run_dir / "metrics.json").exists()
        assert table.set_index("loss").loc[loss, "best_trial"] == best["trial"]

    text = md.read_text()
    for column in ("trials finished / failed", "chosen settings", "untuned", "gain from tuning", "rank tuned / untuned"):
        assert column in text
    assert (out / "tuning_curves.png").stat().st_size > 0
    report = (out / "final" / "report" / "report.md").read_text()
    assert "loss=ce,setting=tuned" in report and "loss=bpr,setting=untuned" in report and "p Wilcoxon" in report

    before = {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")}
    counting.clear()
    run(protocol_cfg(out))  # the same command again: nothing is re-run
    assert counting == []
    assert {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")} == before

    # an interrupted trial (settings written, never finished) is re-run with the same settings
    trial_dir = out / "tune" / "bpr" / "001"
    params = json.loads((trial_dir / "params.json").read_text())
    (trial_dir / "trial.json").unlink()
    counting.clear()
    run(protocol_cfg(out))
    assert counting == [trial_dir]
    assert json.loads((trial_dir / "trial.json").read_text())["params"] == params


def test_more_trials_extend_a_finished_protocol(tmp_path, counting):
    out = tmp_path / "cmp"
    run(protocol_cfg(out, "untuned=false", "seeds=[1]", "losses=[ce]"))
    counting.clear()
    run(protocol_cfg(out, "untuned=false", "seeds=[1]", "losses=[ce]", "trials=3"))
    trials = finished_trials(out, "ce")
    assert [t["trial"] for t in trials] == [0, 1, 2]
    assert counting[0] == out / "tune" / "ce" / "002"  # only the new trial, then the final run if the best changed
    assert len(counting) in (1, 2)


def test_only_runs_a_subset_and_the_report_covers_every_loss(tmp_path, counting):
    out = tmp_path / "cmp"
    run(protocol_cfg(out, "only=[bpr]", "seeds=[1]", "untuned=false"))
    assert {p.parts[-2] for p in counting if "tune" in p.parts} == {"bpr"}
    run(protocol_cfg(out, "only=[ce]", "seeds=[1]", "untuned=false"))  # e.g. a second process, here after the first
    table = pd.read_csv(out / "compare.csv")
    assert (table["trials_finished"] + table["trials_failed"]).tolist() == [2, 2]
    assert table["tuned seeds"].tolist() == [1, 1]


def test_failed_trials_are_recorded_and_count(tmp_path):
    out = tmp_path / "cmp"
    # a batch size of 0 is refused by the data module: every trial fails, the protocol goes on
    md = run(protocol_cfg(out, "~shared_space", "+shared_space={data.batch_size: {choices: [0]}}", "seeds=[1]"))
    table = pd.read_csv(out / "compare.csv")
    assert table["trials_failed"].tolist() == [2, 2] and table["trials_finished"].tolist() == [0, 0]
    assert (out / "tune" / "ce" / "000" / "failed.json").exists()
    assert "batch_size" in json.loads((out / "tune" / "ce" / "000" / "failed.json").read_text())["error"]
    assert (out / "final" / "0_loss-ce__untuned__seed-1" / "metrics.json").exists()  # the defaults still run
    assert not list((out / "final").glob("*tuned-t*"))
    assert "| ce | 0 / 2 |" in md.read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["~shared_space", "+shared_space={model.nope: {low: 0.1, high: 1.0}}"],
         "search space key model.nope is not in the config of loss=ce"),
        (["~shared_space", "+shared_space={optimizer.lr: {low: 0.0, high: 1.0, log: true}}"], "is a log range, so low must be > 0"),
        (["~shared_space", "+shared_space={optimizer.lr: {low: 1.0, high: 0.1}}"], "needs numbers low < high"),
        (["~shared_space", "+shared_space={optimizer.lr: {lo: 0.1, high: 1.0}}"], "unknown fields lo"),
        (["losses=[ce,nope]"], "unknown loss 'nope'"),
        (["losses=[ce,ce]"], "distinct losses"),
        (["trials=0"], "trials must be an integer >= 1"),
        (["only=[nss]"], "only names losses that are not in losses: nss"),
        (["metric=val/hr@10"], "eval.monitor"),
    ],
)
def test_bad_protocols_stop_before_anything_runs(tmp_path, counting, extra, message):
    out = tmp_path / "cmp"
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        run(protocol_cfg(out, *extra))
    assert counting == [] and not out.exists()


def test_resuming_with_other_settings_is_refused(tmp_path, counting):
    out = tmp_path / "cmp"
    run(protocol_cfg(out, "losses=[ce]", "trials=1", "seeds=[1]", "untuned=false"))
    counting.clear()
    with pytest.raises(ConfigError, match="holds a protocol with other final_budget"):
        run(protocol_cfg(out, "losses=[ce]", "trials=1", "seeds=[1]", "untuned=false", 'final_budget="trainer.max_epochs=3"'))
    assert counting == []


def test_cli_answers_a_bad_protocol_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "recsys.compare", "losses=[ce,nope]", f"out_dir={tmp_path / 'cmp'}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown loss 'nope'")
