"""The two-tower model and its event-history view."""

from __future__ import annotations

import pytest
import torch

from recsys.data.datasets.synthetic import Synthetic
from recsys.data.interactions import RawData
from recsys.data.splits import LeaveOneOut
from recsys.data.views import EventHistoryView
from recsys.errors import ConfigError
from recsys.models.two_tower import TwoTower


@pytest.fixture(scope="module")
def split():
    inter = Synthetic(n_users=50, n_items=60, n_clusters=3, series_len=4, seed=1).generate()
    return LeaveOneOut()(RawData(inter))


def test_history_view_holds_exactly_the_items_before_each_event(split):
    view = EventHistoryView(split, max_len=4, pad=split.n_items)
    index = torch.arange(len(view))
    batch = view.batch(index)
    user, item = split.train.user.tolist(), split.train.item.tolist()
    for e in range(0, len(view), 7):
        earlier = [item[j] for j in range(e) if user[j] == user[e]][-4:]
        expected = [split.n_items] * (4 - len(earlier)) + earlier
        assert batch["input"][e].tolist() == expected
        assert int(batch["item"][e]) == item[e]


def test_history_view_eval_inputs_end_with_the_latest_items(split):
    view = EventHistoryView(split, max_len=4, pad=split.n_items)
    u = int(split.test.users_with_items()[0])
    train_items = split.train.item[split.train.user == u].tolist()
    assert view.user_inputs(torch.tensor([u]), "val")["input"][0].tolist()[-1] == train_items[-1]
    valid_item = int(split.valid.items[split.valid.indptr[u]])
    assert view.user_inputs(torch.tensor([u]), "test")["input"][0].tolist()[-1] == valid_item


@pytest.mark.parametrize("fusion", ["gated", "concat"])
@pytest.mark.parametrize("pooling", ["attention", "last"])
@pytest.mark.parametrize("score", ["dot", "cosine"])
def test_two_tower_shapes_and_gradients(split, fusion, pooling, score):
    inter = split.train
    model = TwoTower(split.n_users, split.n_items, inter.user_features, inter.item_features, inter.feature_cardinality,
                     embedding_dim=16, max_len=4, fusion=fusion, pooling=pooling, score=score, score_temperature=0.1)
    model.setup(split)
    view = model.make_view(split)
    enc = model.encode(view.batch(torch.arange(8)))
    items = model.item_embeddings()
    assert enc.query.shape == (8, 16) and items.shape == (split.n_items, 16)
    scores = model.score(enc.query, items)
    assert scores.shape == (8, split.n_items)
    if score == "cosine":
        assert float(scores.abs().max()) <= 10.0 + 1e-4  # |cos| / 0.1
    scores.logsumexp(1).mean().backward()
    for name in ("item_tower.head.0.weight", "graph.embedding.weight", "sequence.item_emb.weight", "fusion.out.0.weight"):
        assert dict(model.named_parameters())[name].grad is not None, name


def test_bad_options_are_rejected(split):
    inter = split.train
    with pytest.raises(ConfigError, match="model.fusion"):
        TwoTower(split.n_users, split.n_items, inter.user_features, inter.item_features, inter.feature_cardinality, fusion="sum")
