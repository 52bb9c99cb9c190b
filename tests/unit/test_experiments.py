"""Every experiment recipe composes and passes validation; the LightGCN recipe sets what
README's Gowalla result was produced with."""

from __future__ import annotations

import pytest

from recsys.config import available, validate


@pytest.mark.parametrize("name", available("experiment"))
def test_experiment_composes_and_validates(cfg_factory, name):
    # every _target_ resolves, arguments typed; 10 epochs: conftest's quick 1 would never reach
    # lightgcn_gowalla's first validation (every 2 epochs), which validate refuses
    validate(cfg_factory([f"experiment={name}", "trainer.max_epochs=10"]))


def test_lightgcn_gowalla_recipe_settings(cfg_factory):
    cfg = cfg_factory(["experiment=lightgcn_gowalla"])
    assert cfg.model._target_.endswith("LightGCN") and cfg.loss._target_.endswith("SSM")
    assert cfg.data.dataset._target_.endswith("Gowalla")
    assert cfg.sampler._target_.endswith("UniformSampler") and cfg.sampler.shared
    assert cfg.sampler.num_negatives == 4096 and cfg.data.batch_size == 8192
    assert cfg.eval.monitor == "val/recall@20"
