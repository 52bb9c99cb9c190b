"""LightGCN propagation against a dense re-computation."""

from __future__ import annotations

import torch
from torch.testing import assert_close

from recsys.data.interactions import Interactions, RawData
from recsys.data.splits import LeaveOneOut
from recsys.models.lightgcn import LightGCN, normalized_adjacency


def tiny_split():
    user = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    item = torch.tensor([0, 1, 2, 3, 1, 2, 4, 0, 3, 4, 2])
    time = torch.arange(11)
    return LeaveOneOut()(RawData(Interactions(user, item, time, n_users=3, n_items=5)))


def dense_reference(split, weight, layers):
    n_users, n_items = split.n_users, split.n_items
    a = torch.zeros(n_users + n_items, n_users + n_items)
    for u, i in zip(split.train.user.tolist(), split.train.item.tolist()):
        a[u, n_users + i] = a[n_users + i, u] = 1.0
    d = a.sum(1).clamp(min=1).pow(-0.5)
    norm = d[:, None] * a * d[None, :]
    out, layer = weight.clone(), weight.clone()
    for _ in range(layers):
        layer = norm @ layer
        out = out + layer
    return out / (layers + 1)


def test_adjacency_is_symmetric_normalized():
    split = tiny_split()
    adj = normalized_adjacency(split.train.user, split.train.item, 3, 5).to_dense()
    assert_close(adj, adj.T)
    u, i = int(split.train.user[0]), int(split.train.item[0])
    deg_u = int((split.train.user == u).sum())
    deg_i = int((split.train.item == i).sum())
    assert abs(float(adj[u, 3 + i]) - 1.0 / (deg_u * deg_i) ** 0.5) < 1e-6


def test_propagation_matches_dense_reference_and_layers_zero_is_identity():
    split = tiny_split()
    for layers in (0, 1, 3):
        model = LightGCN(3, 5, embedding_dim=4, num_layers=layers)
        model.setup(split)
        expected = dense_reference(split, model.embedding.weight.detach(), layers)
        assert_close(model.propagate().detach(), expected, rtol=1e-5, atol=1e-6)
        assert_close(model.item_embeddings().detach(), expected[3:], rtol=1e-5, atol=1e-6)


def test_cache_follows_parameter_updates():
    split = tiny_split()
    model = LightGCN(3, 5, embedding_dim=4, num_layers=2)
    model.setup(split)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    before = model.item_embeddings().detach().clone()
    enc = model.encode({"user": torch.tensor([0, 1]), "item": torch.tensor([1, 2])})
    (enc.query * model.item_embeddings()[enc.target]).sum().backward()
    opt.step()
    after = model.item_embeddings().detach()
    assert not torch.allclose(before, after)
    assert_close(after, dense_reference(split, model.embedding.weight.detach(), 2)[3:], rtol=1e-5, atol=1e-6)


def test_gradient_matches_dense_reference():
    """The symmetric sparse product's custom backward gives autograd's dense gradient."""
    split = tiny_split()
    model = LightGCN(3, 5, embedding_dim=4, num_layers=3)
    model.setup(split)
    target = torch.randn(8, 4)
    (model.propagate() * target).sum().backward()
    weight = model.embedding.weight.detach().clone().requires_grad_(True)
    (dense_reference(split, weight, 3) * target).sum().backward()
    assert_close(model.embedding.weight.grad, weight.grad, rtol=1e-5, atol=1e-6)


def test_cosine_score_is_temperature_scaled_cosine_and_rejects_bad_options():
    import pytest

    from recsys.errors import ConfigError

    split = tiny_split()
    model = LightGCN(split.n_users, split.n_items, embedding_dim=4, num_layers=2, score="cosine", score_temperature=0.1)
    model.setup(split)
    users, items = model.user_queries({"user": torch.arange(3)}), model.item_embeddings()  # [3, D], [5, D]
    expected = torch.stack([torch.stack([torch.cosine_similarity(u, v, dim=0) for v in items]) for u in users]) / 0.1
    assert_close(model.score(users, items), expected)  # shared items [N, D]
    per_row = items[torch.tensor([[0, 1], [2, 3], [4, 0]])]  # [3, 2, D]
    assert_close(model.score(users, per_row), expected[torch.arange(3)[:, None], torch.tensor([[0, 1], [2, 3], [4, 0]])])
    assert model.schedule_values() == {"score_temperature": 0.1}
    assert LightGCN(3, 5).schedule_values() == {}  # dot: nothing to schedule
    for bad in ({"score": "euclid"}, {"score": "cosine", "score_temperature": 0.0}):
        with pytest.raises(ConfigError, match="model.score"):
            LightGCN(3, 5, **bad)


def test_train_rows_picks_the_pair_view_rows_and_rejects_unknown_names():
    import pytest

    from recsys.errors import ConfigError
    from recsys.models.mf import MF

    split = tiny_split()
    for cls in (LightGCN, MF):
        model = cls(split.n_users, split.n_items, embedding_dim=4, train_rows="users")
        assert model.make_view(split).rows == "users"
        assert cls(split.n_users, split.n_items, embedding_dim=4).make_view(split).rows == "events"
        with pytest.raises(ConfigError, match="model.train_rows"):
            cls(split.n_users, split.n_items, embedding_dim=4, train_rows="user")


def test_cache_does_not_serve_a_frozen_propagation_after_unfreezing():
    """A graph frozen by a curriculum (``requires_grad=False``) and then unfrozen must be
    propagated again: the cached frozen tensor carries no gradient to the embedding."""
    split = tiny_split()
    model = LightGCN(3, 5, embedding_dim=4, num_layers=2)
    model.setup(split)
    model.embedding.weight.requires_grad_(False)
    assert not model.propagate().requires_grad  # frozen, with grad enabled
    model.embedding.weight.requires_grad_(True)
    model.propagate().sum().backward()
    assert model.embedding.weight.grad is not None and bool(model.embedding.weight.grad.abs().sum() > 0)


def test_cache_is_dropped_after_backward_so_gradient_accumulation_works():
    """Two backward passes without an optimizer step in between (gradient accumulation)
    each propagate anew instead of reusing a graph the first backward freed."""
    split = tiny_split()
    model = LightGCN(3, 5, embedding_dim=4, num_layers=2)
    model.setup(split)
    model.propagate().sum().backward()
    first = model.embedding.weight.grad.clone()
    model.propagate().sum().backward()
    assert_close(model.embedding.weight.grad, 2 * first)
    with torch.no_grad():  # evaluation: cached while the values do not change
        assert model.propagate() is model.propagate()
