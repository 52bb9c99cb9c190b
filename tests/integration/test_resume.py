"""Exact resume: a run interrupted after 2 of its 4 epochs and resumed from ``last.ckpt``
(``ckpt_path=<run>/checkpoints/last.ckpt``, in a new run folder) ends with the same
``metrics.json``, ``epochs.csv`` and best checkpoint as the run that was never interrupted
(on CPU, bit for bit).

The interrupted run is the same 4-epoch run stopped after epoch 1, as a crash or a time
limit would stop it, not a run with ``trainer.max_epochs=2``: a schedule sized by the run's
length (``temperature_annealing`` with ``duration: null``) is resolved from ``max_epochs``
at the start and kept on resume, by design, so a 2-epoch run resumed to 4 anneals over 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

import recsys.pipeline
from recsys.run import train
from recsys.wiring import build_callbacks

CONF = Path(__file__).resolve().parents[2] / "conf"


def experiment_callbacks(name: str) -> str:
    """The experiment's ``callbacks=[...]`` (the conftest's ``callbacks=none`` would win)."""
    for entry in OmegaConf.to_container(OmegaConf.load(CONF / "experiment" / f"{name}.yaml")).get("defaults", []):
        if isinstance(entry, dict) and "override /callbacks" in entry:
            return f"callbacks=[{','.join(entry['override /callbacks'])}]"
    return "callbacks=default"


TINY = [
    "data.dataset.n_users=200",
    "data.dataset.n_items=120",
    "data.dataset.n_clusters=4",
    "model.embedding_dim=16",
    "~callbacks.progress_bar",
    "logger=none",
    "trainer.max_epochs=4",
]
CASES = {  # callbacks=default (the conftest's callbacks=none keeps no last.ckpt) or the experiment's
    # with a sanity validation, which runs again before the resumed epochs
    "sasrec+ce": ["callbacks=default", "model=sasrec", "loss=ce", "model.max_len=10", "trainer.num_sanity_val_steps=1"],
    "mf+bpr users": ["callbacks=default", "model=mf", "loss=bpr", "model.train_rows=users", "data.batch_size=512"],
    "sasrec+eainfonce": ["callbacks=default", "model=sasrec", "loss=eainfonce", "model.max_len=10"],
    # augmentations and dropout draw from the global generators; the weight warms up over the resume
    "sasrec+contrastive augment": ["callbacks=[default,aux_weight_warmup]", "model=sasrec", "loss=ce", "model.max_len=10",
                                   "aux=[contrastive]", "aux.contrastive.positives=augment",
                                   "callbacks.aux_weight_warmup.duration=3"],
    # the best checkpoint is from before the resume (mode=min on a rising metric) and must stay the best
    "mf+bpr best before resume": ["callbacks=default", "model=mf", "loss=bpr", "data.batch_size=512",
                                  "callbacks.model_checkpoint.mode=min"],
    # pretraining in epoch 0, the freeze at the start of epoch 1; the switch to stage 2 (decided at
    # the end of epoch 1, applied at the start of epoch 2) falls on the resume
    "two_tower_curriculum": [
        "experiment=two_tower_curriculum", experiment_callbacks("two_tower_curriculum"),
        "model.max_len=10", "data.batch_size=512", "callbacks.freeze_curriculum.pretrain_epochs=1",
        "callbacks.freeze_curriculum.after_epoch=1", "callbacks.freeze_curriculum.max_train_loss=null",
        "callbacks.freeze_curriculum.min_val_metric=null",
    ],
}


@pytest.fixture(autouse=True)
def one_thread():
    """Resume is compared bit for bit, so CPU kernels must be deterministic: with two
    intra-op threads, two identical uninterrupted sasrec+eainfonce runs in one process
    already differ in the last bit of the epoch-1 loss (8.373740 vs 8.373741; parallel
    accumulation order), independent of resuming. One thread isolates what resume must
    restore from thread scheduling."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class StopAfter(pl.Callback):
    """Stops the fit at the end of epoch ``epochs - 1``, as an interrupted run would."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def run(cfg_factory, overrides: list[str], out: Path) -> dict:
    train(cfg_factory([*overrides, f"paths.output_dir={out}"]))
    return json.loads((out / "metrics.json").read_text())


def best_epoch(out: Path) -> tuple[int, int]:
    ckpt = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    return ckpt["epoch"], ckpt["global_step"]


@pytest.mark.parametrize("case", list(CASES))
def test_resumed_run_equals_the_uninterrupted_run(cfg_factory, tmp_path, monkeypatch, case):
    overrides = [*TINY, *CASES[case]]
    straight = run(cfg_factory, overrides, tmp_path / "straight")
    with monkeypatch.context() as patch:
        patch.setattr(recsys.pipeline, "build_callbacks", lambda cfg: [*build_callbacks(cfg), StopAfter(2)])
        run(cfg_factory, overrides, tmp_path / "first")
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 1  # the last epoch, not the best
    resumed = run(cfg_factory, [*overrides, f"ckpt_path={last}"], tmp_path / "resumed")

    assert resumed == straight  # every metric, bit for bit
    rows = [pd.read_csv(tmp_path / name / "epochs.csv") for name in ("straight", "resumed")]
    pd.testing.assert_frame_equal(rows[1], rows[0], check_exact=True)  # the resumed file keeps epochs 0-1
    assert best_epoch(tmp_path / "resumed") == best_epoch(tmp_path / "straight")
    if "before resume" in case:
        assert best_epoch(tmp_path / "straight")[0] < 2
