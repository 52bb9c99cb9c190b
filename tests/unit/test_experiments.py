"""Every experiment recipe composes and passes validation; the LightGCN recipe sets what
README's Gowalla result was produced with; the gSASRec recipe sets the reference's settings."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from recsys.config import CONF_DIR, available, validate


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


def test_gsasrec_ml1m_recipe_settings(cfg_factory):
    """The reference settings of gSASRec (Petrov & Macdonald 2023, config_ml1m.py of the
    authors' PyTorch port), each an option of model=sasrec."""
    cfg = cfg_factory(["experiment=gsasrec_ml1m"])
    assert cfg.model._target_.endswith("sasrec.SASRec") and cfg.loss._target_.endswith("GBCE")
    assert cfg.data.dataset._target_.endswith("ML1M")
    m = cfg.model
    assert (m.embedding_dim, m.num_blocks, m.num_heads, m.dropout, m.max_len) == (128, 2, 1, 0.5, 200)
    assert not m.tied_output and not m.input_scale and m.mask_padding_keys and list(m.context_features) == []
    assert cfg.loss.t == 0.75
    assert cfg.sampler._target_.endswith("UniformSampler") and cfg.sampler.num_negatives == 256 and not cfg.sampler.shared
    assert cfg.data.batch_size == 128 and cfg.optimizer.lr == 0.001
    assert cfg.eval.monitor == "val/ndcg@10" and cfg.eval.patience == 200
    recipe = OmegaConf.load(CONF_DIR / "experiment" / "gsasrec_ml1m.yaml")  # the tests' config caps epochs
    assert recipe.trainer.max_epochs == 10000
