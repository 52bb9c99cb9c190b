"""init_from: model parts start from earlier runs' checkpoints, strictly, and say so."""

from __future__ import annotations

import json

import pytest
import torch

from recsys.data.datasets.synthetic import Synthetic
from recsys.data.interactions import RawData
from recsys.data.splits import LeaveOneOut
from recsys.errors import ConfigError, DataError
from recsys.models.init_from import load_components
from recsys.models.lightgcn import LightGCN
from recsys.models.two_tower import TwoTower


@pytest.fixture(scope="module")
def split():
    inter = Synthetic(n_users=40, n_items=48, n_clusters=3, series_len=4, seed=2).generate()
    return LeaveOneOut()(RawData(inter))


def two_tower(split, d=16):
    t = split.train
    model = TwoTower(split.n_users, split.n_items, t.user_features, t.item_features, t.feature_cardinality, embedding_dim=d, max_len=4)
    model.setup(split)
    return model


def lightning_ckpt(tmp_path, model, name="best.ckpt"):
    """What a run's checkpoint holds: the module's state dict, model tensors under ``model.``."""
    path = tmp_path / name
    torch.save({"epoch": 3, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def test_lightgcn_run_initialises_the_two_tower_graph_encoder(split, tmp_path):
    gcn = LightGCN(split.n_users, split.n_items, 16, 2)
    torch.nn.init.normal_(gcn.embedding.weight, std=3.0)
    ckpt = lightning_ckpt(tmp_path, gcn)
    model = two_tower(split)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    (record,) = load_components(model, [{"ckpt": str(ckpt), "source": "model", "target": "graph"}])
    assert torch.equal(model.graph.embedding.weight, gcn.embedding.weight)
    assert record["target"] == "graph" and record["tensors"] == 1 and record["parameters"] == gcn.embedding.weight.numel()
    assert len(record["sha256"]) == 64
    others = {k: v for k, v in model.state_dict().items() if not k.startswith("graph.")}
    assert len(others) > 10  # the towers, sequence, fusion...
    for key, value in others.items():  # every other tensor untouched
        assert torch.equal(value, before[key]), key


def test_a_trained_item_tower_is_reused(split, tmp_path):
    donor = two_tower(split)
    ckpt = lightning_ckpt(tmp_path, donor)
    model = two_tower(split)
    load_components(model, [{"ckpt": str(ckpt), "source": "model.item_tower", "target": "item_tower"}])
    for (name, a), (_, b) in zip(model.item_tower.state_dict().items(), donor.item_tower.state_dict().items()):
        assert torch.equal(a, b), name


def test_mismatches_fail_before_training_with_names(split, tmp_path):
    ckpt = lightning_ckpt(tmp_path, LightGCN(split.n_users, split.n_items, 8, 2))
    model = two_tower(split)
    with pytest.raises(ConfigError, match=r"shape \(88, 8\).*\(88, 16\)"):
        load_components(model, [{"ckpt": str(ckpt), "source": "model", "target": "graph"}])
    with pytest.raises(ConfigError, match="missing"):
        load_components(model, [{"ckpt": str(ckpt), "source": "model", "target": "item_tower"}])
    with pytest.raises(ConfigError, match="no part 'towr'.*item_tower"):
        load_components(model, [{"ckpt": str(ckpt), "source": "model", "target": "towr"}])
    with pytest.raises(ConfigError, match="starts with 'encoder.'"):
        load_components(model, [{"ckpt": str(ckpt), "source": "encoder", "target": "graph"}])
    with pytest.raises(ConfigError, match="unknown keys"):
        load_components(model, [{"ckpt": str(ckpt), "from": "x"}])
    with pytest.raises(DataError, match="does not exist"):
        load_components(model, [{"ckpt": str(tmp_path / "nope.ckpt")}])
    bad = tmp_path / "bad.ckpt"
    bad.write_text("not a checkpoint")
    with pytest.raises(DataError, match="cannot read checkpoint"):
        load_components(model, [{"ckpt": str(bad)}])


def test_a_run_records_what_it_loaded(split, tmp_path, cfg_factory):
    from recsys.run import build

    _, module = build(cfg_factory(["model=lightgcn", "loss=bpr", "model.embedding_dim=16"]))
    ckpt = tmp_path / "gcn.ckpt"
    torch.save({"state_dict": module.state_dict()}, ckpt)
    init_from = f"+init_from=[{{ckpt: '{ckpt}', source: model, target: graph}}]"
    _, tt = build(cfg_factory(["model=two_tower", "loss=nss", "model.embedding_dim=16", init_from]))
    assert torch.equal(tt.model.graph.embedding.weight, module.model.embedding.weight)
    loaded = json.loads((tmp_path / "loaded_components.json").read_text())["loaded"]
    assert loaded[0]["target"] == "graph" and loaded[0]["ckpt"] == str(ckpt)
