"""Contract of every file in conf/model/: on the synthetic data, a small training budget
with each of ``loss=bpr,ce,ssm`` beats the popularity baseline (``model=pop``, computed
on the same config) on validation NDCG@10, by a margin; and the two-tower model runs end
to end (``loss=nss`` and ``experiment=two_tower_curriculum``) on a tiny budget, as does
the gSASRec recipe (``experiment=gsasrec_ml1m``) on the synthetic data.

A new file in conf/model/ is picked up automatically (``available("model")``); it gets
the small sizes below for every key it shares with them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf, open_dict

from conftest import make_cfg
from recsys.config import CONF_DIR, available, validate
from recsys.pipeline import train
from recsys.wiring import build

STEPS = 40
# BERT4Rec's Cloze task trains on the masked positions only and learns more slowly per
# step. At lr 0.005, BPR after 240 steps ranged 0.26-0.40 over torch seeds and machines
# (CI once fell just under the bar); at lr 0.003 it reached 0.37-0.41 over seeds 0-3,
# CE 0.46 and SSM 0.45-0.47.
# NeuMF starts from small embeddings (std 0.01, the paper's) behind an MLP: val NDCG@10
# 0.19-0.22 / 0.40-0.48 / 0.47-0.49 after 40 / 80 / 120 steps with bpr, ce, ssm
# CSAR and ACF score through a bottleneck (softplus activations over prototypes; convex
# combinations of anchors) and start near popularity: with BPR, val NDCG@10 0.21 / 0.36
# (CSAR) and 0.22 / 0.34 (ACF) after 80 / 160 steps at lr 0.02
STEPS_BY_MODEL = {"bert4rec": 240, "neumf": 80, "csar": 160, "acf": 160}
LOSSES = ["bpr", "ce", "ssm"]
MODELS = [m for m in available("model") if m != "pop"]  # pop is the reference

# 400 users x 240 items in 6 taste clusters: each case trains and validates in seconds.
SMALL_DATA = ["data.dataset.n_users=400", "data.dataset.n_items=240", "data.dataset.n_clusters=6"]
SMALL_MODEL = {"embedding_dim": 32, "max_len": 20}  # applied to the keys a model has
# Rows per batch and learning rate; a model not listed gets DEFAULT_TRAINING.
TRAINING = {
    "mf": ["data.batch_size=512", "optimizer.lr=0.01"],
    "lightgcn": ["data.batch_size=512", "optimizer.lr=0.01"],
    "sasrec": ["data.batch_size=64", "optimizer.lr=0.005"],  # a row is a user's whole sequence
    # a row is a user's sequence, of which the Cloze task trains on the masked fraction
    "bert4rec": ["data.batch_size=64", "optimizer.lr=0.003", "model.mask_prob=0.5", "model.init_std=0.1",
                 "model.dropout=0.0"],
    "sasrec_context": ["data.batch_size=64", "optimizer.lr=0.005"],
    "two_tower": ["data.batch_size=512", "optimizer.lr=0.005"],
    "neumf": ["data.batch_size=512", "optimizer.lr=0.01"],
    "csar": ["data.batch_size=512", "optimizer.lr=0.02"],
    "acf": ["data.batch_size=512", "optimizer.lr=0.02"],
}
DEFAULT_TRAINING = ["data.batch_size=256", "optimizer.lr=0.005"]

# The bar: twice popularity's validation NDCG@10. On this data pop scores 0.132, while
# recommending the popular items of each user's planted taste cluster (a recommender
# that knows the clusters) scores 0.479, so 2x pop (0.264) is about 40% of the way to it;
# at this budget every pair reached 0.39-0.54 (2.9-4.1x pop) when the test was written,
# from 0.01-0.04 untrained (well below pop).
MARGIN = 2.0


def model_keys(model: str) -> set[str]:
    """The keys of ``conf/model/<model>.yaml`` and of the options it extends (``defaults: [sasrec]``)."""
    node = OmegaConf.load(CONF_DIR / "model" / f"{model}.yaml")
    bases = [b for b in node.get("defaults", []) if isinstance(b, str) and b != "_self_"]
    return set(node) - {"defaults"} | {key for base in bases for key in model_keys(base)}


def small(model: str) -> list[str]:
    """Overrides of a small, fast case of ``model`` on the small synthetic data."""
    keys = model_keys(model)
    sizes = [f"model.{key}={value}" for key, value in SMALL_MODEL.items() if key in keys]
    return [f"model={model}", *SMALL_DATA, *sizes, *TRAINING.get(model, DEFAULT_TRAINING)]


def val_ndcg10(module: pl.LightningModule, datamodule: pl.LightningDataModule) -> float:
    """Validation NDCG@10 of ``module`` as it is, through Lightning's validation loop."""
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )
    return float(trainer.validate(module, datamodule=datamodule, verbose=False)[0]["val/ndcg@10"])


@pytest.fixture(scope="module")
def pop_ndcg10(tmp_path_factory) -> float:
    """``model=pop`` on the contract's data: validation NDCG@10 of the training popularity."""
    cfg = make_cfg(["model=pop", *SMALL_DATA], tmp_path_factory.mktemp("pop"))
    datamodule, module = build(cfg)
    return val_ndcg10(module, datamodule)


def train_steps(module, datamodule, steps: int) -> list[float]:
    """``steps`` optimizer steps of the module's own training step; the losses."""
    optimizer = module.configure_optimizers()
    module.train()
    losses: list[float] = []
    while len(losses) < steps:
        for batch in datamodule.train_dataloader():
            value = module.objective(batch).total  # the training step itself
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            losses.append(float(value.detach()))
            if len(losses) == steps:
                break
    return losses


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("model", MODELS)
def test_model_trains_past_popularity(cfg_factory, pop_ndcg10, model, loss):
    cfg = cfg_factory([*small(model), f"loss={loss}"])
    validate(cfg)
    torch.manual_seed(0)
    datamodule, module = build(cfg)
    untrained = val_ndcg10(module, datamodule)
    steps = STEPS_BY_MODEL.get(model, STEPS)
    losses = train_steps(module, datamodule, steps)
    assert all(math.isfinite(v) for v in losses)
    trained = val_ndcg10(module, datamodule)
    assert trained > MARGIN * pop_ndcg10, (
        f"{model} + {loss}: val NDCG@10 {trained:.4f} after {steps} steps, popularity {pop_ndcg10:.4f} "
        f"(bar {MARGIN}x popularity)"
    )
    assert trained > untrained, f"{model} + {loss}: training did not help ({untrained:.4f} -> {trained:.4f})"


def test_popularity_reference_is_the_pipeline_result(cfg_factory, pop_ndcg10):
    """The contract's reference is what ``python -m recsys.run model=pop`` reports."""
    metrics = train(cfg_factory(["model=pop", *SMALL_DATA]))
    assert metrics["val/ndcg@10"] == pytest.approx(pop_ndcg10, rel=1e-6)
    assert 0.05 < pop_ndcg10 < 0.25  # the data's popularity signal is real but partial


TINY = ["trainer.max_epochs=2", "+trainer.limit_train_batches=3", "data.batch_size=256"]


def finished_run(cfg, metrics: dict[str, float], epochs: int) -> dict[str, float]:
    """Checks the files of a finished run; returns its metrics.json."""
    written = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert written == pytest.approx(metrics) and written["epochs"] == epochs
    per_user = pd.read_csv(Path(cfg.paths.output_dir) / "test_per_user.csv")
    assert per_user["test/ndcg@10"].mean() == pytest.approx(written["test/ndcg@10"], rel=1e-5)
    random_hr10 = 10 / 240
    assert written["val/hr@10"] > 2 * random_hr10 and written["test/hr@10"] > 2 * random_hr10
    return written


def test_two_tower_with_nss_runs_end_to_end(cfg_factory):
    cfg = cfg_factory([*small("two_tower"), "loss=nss", *TINY])
    finished_run(cfg, train(cfg), epochs=2)


def test_two_tower_curriculum_experiment_runs_end_to_end(cfg_factory):
    """The recipe as one command gives it: its own callbacks (the freeze curriculum,
    annealing, logQ warm-up), on the small data and a tiny budget."""
    # one pretraining epoch (the recipe has 3) so that 3 epochs see all three stages
    overrides = [*TINY, "trainer.max_epochs=3", "callbacks.freeze_curriculum.pretrain_epochs=1"]
    cfg = cfg_factory(["experiment=two_tower_curriculum", *small("two_tower"), *overrides], keep_callbacks=True)
    with open_dict(cfg):
        cfg.callbacks.pop("progress_bar", None)
    assert {"freeze_curriculum", "temperature_annealing", "logq_warmup"} <= set(cfg.callbacks)
    written = finished_run(cfg, train(cfg), epochs=3)
    assert "test/recall@100" in written  # the recipe's cut-offs
    epochs = pd.read_csv(Path(cfg.paths.output_dir) / "epochs.csv")
    # stage 0 pretrains everything, stage 1 freezes the item tower and graph, and the switch
    # condition (recall@100 >= 0.05 on 240 items) holds after the first frozen epoch
    assert epochs["curriculum/stage"].tolist() == [0.0, 1.0, 2.0]


def test_gsasrec_recipe_runs_end_to_end(cfg_factory):
    """``experiment=gsasrec_ml1m`` (separate output table, no input scaling, masked padding
    keys, gBCE over 256 uniform negatives per position) trains and evaluates, on the small
    synthetic data with small sizes and a tiny budget instead of ML-1M."""
    overrides = ["trainer.max_epochs=6", "data.batch_size=64", "optimizer.lr=0.005", "model.dropout=0.2"]
    cfg = cfg_factory(["experiment=gsasrec_ml1m", "data=synthetic", *small("sasrec"), *overrides])
    assert cfg.loss.t == 0.75 and cfg.sampler.num_negatives == 256 and cfg.model.mask_padding_keys
    written = finished_run(cfg, train(cfg), epochs=6)  # 42 steps: gBCE starts slower than CE
    assert "test/hr@1" in written  # the recipe's cut-offs


def test_gsasrec_recipe_with_the_t_warmup_starts_as_bce(cfg_factory):
    """``callbacks=[default,gbce_t_warmup]`` moves gBCE's t from 0 (BCE) to 0.75, one value
    per epoch, logged as ``sched/t``; here over 2 epochs of a 3-epoch run."""
    overrides = ["trainer.max_epochs=3", "data.batch_size=64", "model.dropout=0.2", "callbacks=[default,gbce_t_warmup]",
                 "callbacks.gbce_t_warmup.duration=2"]
    cfg = cfg_factory(["experiment=gsasrec_ml1m", "data=synthetic", *small("sasrec"), *overrides])
    train(cfg)
    epochs = pd.read_csv(Path(cfg.paths.output_dir) / "epochs.csv")
    assert epochs["sched/t"].tolist() == pytest.approx([0.0, 0.375, 0.75])
