"""``aux=[contrastive]`` through the real config and pipeline: every ``positives=`` trains
SASRec, BERT4Rec and the two-tower model on the synthetic data and logs its row counts; the weight
warm-up and the contrastive temperature schedule run beside the loss's own annealing; a
model without a representation is refused before training."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from recsys.errors import ConfigError
from recsys.pipeline import train

SMALL = ["data.dataset.n_users=400", "data.dataset.n_items=240", "data.dataset.n_clusters=6",
         "model.max_len=20", "model.embedding_dim=32"]
FAST = ["+trainer.limit_train_batches=3", "+trainer.limit_val_batches=1", "logger=csv"]
ROWS = {"sasrec": 64, "bert4rec": 64, "two_tower": 256}  # data.batch_size
DROPOUT = "model.dropout=0.1"  # the two-tower's synthetic tuning has none, which positives=dropout refuses


def per_step(tmp_path: Path) -> pd.DataFrame:
    steps = pd.read_csv(next(tmp_path.glob("**/csv/metrics.csv")))
    return steps.dropna(subset=["train/loss_step"]).reset_index(drop=True)


@pytest.mark.parametrize("positives", ["same_target", "dropout", "augment"])
@pytest.mark.parametrize("model", ["sasrec", "bert4rec", "two_tower"])
def test_each_positives_option_trains_and_logs_its_rows(cfg_factory, tmp_path, model, positives):
    overrides = [f"model={model}", *SMALL, f"data.batch_size={ROWS[model]}", "aux=[contrastive]",
                 f"aux.contrastive.positives={positives}", DROPOUT, *FAST]
    metrics = train(cfg_factory(overrides))
    assert math.isfinite(metrics["test/ndcg@10"]) and metrics["epochs"] == 1
    steps = per_step(tmp_path)
    assert len(steps) == 3 and steps["train/loss/contrastive_step"].map(math.isfinite).all()
    anchors, excluded = steps["train/aux/contrastive/anchor_rows_step"], steps["train/aux/contrastive/excluded_rows_step"]
    if positives == "same_target":  # B anchors at most; the rows whose next item no other row shares are excluded
        assert ((anchors + excluded) == ROWS[model]).all() and (anchors > 0).all()
    else:  # two views of every row: 2B anchors, none excluded
        assert (anchors == 2 * ROWS[model]).all() and (excluded == 0).all()
    total = steps["train/loss/ce_step"] + 0.1 * steps["train/loss/contrastive_step"]
    assert steps["train/loss_step"].tolist() == pytest.approx(total.tolist(), rel=1e-5)


def test_weight_warmup_and_both_temperatures_are_scheduled_side_by_side(cfg_factory, tmp_path):
    """callbacks=[default,aux_weight_warmup,contrastive_temperature,temperature_annealing]:
    the weight 0 -> 0.1 per epoch over 2 epochs, the contrastive temperature and InfoNCE's
    temperature each annealed over the whole run (9 steps), all logged every step."""
    overrides = ["callbacks=[default,aux_weight_warmup,contrastive_temperature,temperature_annealing]",
                 "~callbacks.progress_bar", "callbacks.aux_weight_warmup.duration=2", "trainer.max_epochs=3",
                 "model=sasrec", "loss=infonce", *SMALL, "data.batch_size=64", "aux=[contrastive]", *FAST]
    train(cfg_factory(overrides, keep_callbacks=True))
    steps = per_step(tmp_path)
    assert steps["step"].tolist() == list(range(9))
    assert steps["sched/aux.contrastive.weight"].tolist() == pytest.approx([0.0] * 3 + [0.05] * 3 + [0.1] * 3)
    contrastive, loss = steps["sched/aux.contrastive.temperature"], steps["sched/temperature"]
    assert contrastive.iloc[0] == pytest.approx(0.2) and contrastive.iloc[-1] == pytest.approx(0.07)
    assert contrastive.is_monotonic_decreasing and loss.is_monotonic_decreasing
    assert loss.iloc[0] == pytest.approx(0.2) and loss.iloc[-1] == pytest.approx(0.07)
    assert steps["train/loss_step"].iloc[0] == pytest.approx(steps["train/loss/infonce_step"].iloc[0], rel=1e-6)


def test_a_model_without_a_representation_or_without_dropout_is_refused_before_training(cfg_factory, tmp_path):
    with pytest.raises(ConfigError, match="model MF has no sequence/user representation for aux.contrastive"):
        train(cfg_factory(["model=mf", "aux=[contrastive]", *FAST]))
    with pytest.raises(ConfigError, match="model TwoTower has no dropout"):  # the synthetic tuning sets 0
        train(cfg_factory(["model=two_tower", "aux=[contrastive]", "aux.contrastive.positives=dropout", *FAST]))
    assert not list(tmp_path.glob("**/checkpoints/*.ckpt"))
