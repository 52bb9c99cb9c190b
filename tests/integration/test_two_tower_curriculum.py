"""``experiment=two_tower_curriculum`` from a plain command: it trains what it freezes
(a pretraining stage), then keeps it still while frozen."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from recsys.run import build

CONF = Path(__file__).resolve().parents[2] / "conf"

TINY = ["data.dataset.n_users=400", "data.dataset.n_items=240", "data.dataset.n_clusters=6", "data.batch_size=256",
        "model.embedding_dim=16", "model.max_len=10"]
WATCHED = ("item_tower.id_emb.weight", "graph.embedding.weight", "sequence.item_emb.weight")


class Snapshots(pl.Callback):
    """The watched parameters at every epoch start and at the end of training."""

    def __init__(self) -> None:
        self.at: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_start(self, trainer, pl_module):
        params = dict(pl_module.model.named_parameters())
        self.at.append({name: params[name].detach().clone() for name in WATCHED})

    def on_train_end(self, trainer, pl_module):
        self.on_train_epoch_start(trainer, pl_module)


def test_curriculum_recipe_pretrains_what_it_freezes(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=two_tower_curriculum", "logger=none", *TINY,
                                          f"paths.log_dir={tmp_path}"])
    GlobalHydra.instance().clear()
    pretrain = cfg.callbacks.freeze_curriculum.pretrain_epochs
    assert pretrain >= 1
    torch.manual_seed(0)
    datamodule, module = build(cfg)
    curriculum, *schedules = (instantiate(cfg.callbacks[name])
                              for name in ("freeze_curriculum", "temperature_annealing", "logq_warmup"))
    assert curriculum.never_trained() == []  # so the run prints no warning
    spy = Snapshots()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=pretrain + 2, limit_train_batches=3, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, callbacks=[curriculum, *schedules, spy])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, datamodule=datamodule)

    assert curriculum.stage >= 1
    start, frozen_from, end = spy.at[0], spy.at[pretrain], spy.at[-1]
    for name in WATCHED:  # everything trains in stage 0
        assert not torch.equal(start[name], frozen_from[name]), name
    for name in ("item_tower.id_emb.weight", "graph.embedding.weight"):  # then stays frozen (never unfrozen)
        assert torch.equal(frozen_from[name], end[name]), name
    assert not torch.equal(frozen_from["sequence.item_emb.weight"], end["sequence.item_emb.weight"])
