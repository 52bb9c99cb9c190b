"""Wide & Deep: scores against a direct per-pair computation (shared and per-row items),
chunked full ranking independent of the chunk size, the wide part by hand on a tiny case,
the history distributions, crosses=all with and without user features, bad options, and
training through the run's wiring."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from conftest import train_and_report_moved
from recsys.data.interactions import Interactions
from recsys.errors import ConfigError
from recsys.models.wide_deep import WideDeep

U, I = 6, 9
CARD = {"age": 3, "region": 2, "genres": 4, "year": 3}
USER_FEATURES = {"age": torch.tensor([0, 1, 2, -1, 1, 0]), "region": torch.tensor([1, 0, 1, 1, -1, 0])}
ITEM_FEATURES = {
    "genres": torch.tensor([[0, 1], [2, -1], [1, 3], [-1, -1], [3, -1], [0, 2], [1, -1], [2, 3], [0, -1]]),  # [I, 2]
    "year": torch.tensor([[0], [1], [2], [0], [-1], [1], [2], [0], [1]]),  # [I, 1]
}
TRAIN_USER = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4])  # user 5 has no training events
TRAIN_ITEM = torch.tensor([0, 1, 1, 2, 3, 4, 5, 6, 7, 0, 8])


def split(user=TRAIN_USER, item=TRAIN_ITEM, n_users=U, n_items=I) -> SimpleNamespace:
    train = Interactions(user=user, item=item, time=torch.arange(len(user)), n_users=n_users, n_items=n_items)
    return SimpleNamespace(train=train)


def trained_like(user_features=USER_FEATURES, item_features=ITEM_FEATURES, **kwargs) -> WideDeep:
    """A small model with every parameter random (the wide weights start at 0 otherwise)."""
    torch.manual_seed(0)
    options = {"embedding_dim": 3, "mlp_layers": [5, 4], **kwargs}
    model = WideDeep(U, I, user_features, item_features, CARD, **options)
    model.setup(split())
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    for table in (*model.user_feats.tables.values(), *model.item_feats.tables.values()):
        table.weight.data[table.padding_idx] = 0.0
    return model.eval()


def hot(values: list[int], card: int) -> torch.Tensor:
    """The normalized multi-hot of one entity's values, by hand."""
    out = torch.zeros(card)
    valid = [v for v in values if v >= 0]
    for v in valid:
        out[v] += 1.0 / len(valid)
    return out  # [C]


def values_of(features: dict, name: str, idx: int) -> list[int]:
    v = features[name][idx]
    return [int(v)] if v.dim() == 0 else v.tolist()


def history(u: int, g: str) -> torch.Tensor:
    """``h_g(u)``: the mean of ``m_g`` over u's training events, by hand."""
    rows = [hot(values_of(ITEM_FEATURES, g, int(i)), CARD[g]) for uu, i in zip(TRAIN_USER, TRAIN_ITEM) if uu == u]
    return torch.stack(rows).mean(0) if rows else torch.zeros(CARD[g])


def mean_embedding(table: torch.nn.Embedding, values: list[int]) -> torch.Tensor:
    valid = [v for v in values if v >= 0]
    return table.weight[valid].mean(0) if valid else torch.zeros(table.embedding_dim)


def reference(model: WideDeep, u: int, i: int, user_features=USER_FEATURES, item_features=ITEM_FEATURES) -> torch.Tensor:
    """The class docstring's formulas for one pair, one term at a time."""
    wide = model.item_bias[i].clone() if model.item_bias is not None else torch.tensor(0.0)
    for g, v in model.values.items():
        wide = wide + v @ hot(values_of(item_features, g, i), CARD[g])
    for side, g in model.crosses:
        if side.startswith("history:"):
            x = history(u, side.removeprefix("history:"))
            weight = model.cross[f"history_{side.removeprefix('history:')}_x_{g}"]
        else:
            x = hot(values_of(user_features, side, u), CARD[side])
            weight = model.cross[f"user_hot_{side}_x_{g}"]
        wide = wide + x @ weight @ hot(values_of(item_features, g, i), CARD[g])
    z = [model.user_emb.weight[u]]
    z += [mean_embedding(model.user_feats.tables[f], values_of(user_features, f, u)) for f in model.user_feats.names]
    z += [model.item_emb.weight[i]]
    z += [mean_embedding(model.item_feats.tables[g], values_of(item_features, g, i)) for g in model.item_feats.names]
    z = torch.cat(z)  # the concatenated embeddings
    for layer in model.tower:
        z = torch.relu(layer(z))
    return wide + model.head(z).squeeze(-1)


@pytest.mark.parametrize("crosses", ["all", [], [["age", "genres"], ["history:year", "genres"], ["region", "year"]]])
@pytest.mark.parametrize("deep_features", [["all"], [], ["region", "genres"]])
def test_full_ranking_equals_the_per_pair_formula(crosses, deep_features):
    model = trained_like(crosses=crosses, deep_features=deep_features)
    with torch.no_grad():
        got = model.score(model.user_queries({"user": torch.arange(U)}), model.item_embeddings())  # [U, I]
        want = torch.stack([torch.stack([reference(model, u, i) for i in range(I)]) for u in range(U)])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_per_row_items_score_like_the_formula():
    """Sampled negatives (``[B, N, D]`` item vectors, one set per row) get the same scores."""
    model = trained_like()
    user = torch.tensor([0, 3, 5])  # [B]
    items = torch.tensor([[1, 2, 3, 4], [0, 0, 8, 5], [7, 6, 3, 2]])  # [B, N]
    with torch.no_grad():
        query = model.encode({"user": user, "item": items[:, 0]}).query
        got = model.score(query, model.item_vectors(items))  # [B, N]
        want = torch.tensor([[float(reference(model, int(u), int(i))) for i in row] for u, row in zip(user, items)])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 4, 9, 10, 25, 10**6])
def test_chunked_full_ranking_equals_unchunked(chunk):
    model = trained_like()
    with torch.no_grad():
        want = model.score(model.user_queries({"user": torch.arange(U)}), model.item_embeddings())
        model.eval_chunk = chunk
        got = model.score(model.user_queries({"user": torch.arange(U)}), model.item_embeddings())
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_wide_part_by_hand():
    """2 users, 3 items, one user feature ``f`` and one item feature ``g`` with known weights;
    the deep head is zeroed, so the score is the wide part alone."""
    user_features, item_features = {"f": torch.tensor([1, -1])}, {"g": torch.tensor([[0, -1], [0, 1], [-1, -1]])}
    model = WideDeep(2, 3, user_features, item_features, {"f": 2, "g": 2}, embedding_dim=2, mlp_layers=[3],
                     crosses=[["f", "g"], ["history:g", "g"]])
    model.setup(split(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), n_users=2, n_items=3))
    # h_g(0) = mean([1, 0], [.5, .5]) = [.75, .25]; h_g(1) = [.5, .5]
    torch.testing.assert_close(model.history_g, torch.tensor([[0.75, 0.25], [0.5, 0.5]]))
    with torch.no_grad():
        model.item_bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
        model.values["g"].copy_(torch.tensor([1.0, 2.0]))
        model.cross["user_hot_f_x_g"].copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        model.cross["history_g_x_g"].copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        model.head.weight.zero_()
        model.head.bias.zero_()
        got = model.eval().score(model.user_queries({"user": torch.arange(2)}), model.item_embeddings())
    # user 0 (f=1): 0.1 + 1 + 3 + .75 ; 0.2 + 1.5 + 3.5 + .625 ; 0.3 (an item without values)
    # user 1 (f missing): 0.1 + 1 + 0 + .5 ; 0.2 + 1.5 + 0 + .75 ; 0.3
    torch.testing.assert_close(got, torch.tensor([[4.85, 5.825, 0.3], [1.6, 2.45, 0.3]]))


def test_history_is_the_mean_over_training_events():
    model = WideDeep(U, I, USER_FEATURES, ITEM_FEATURES, CARD)
    assert torch.equal(model.history_genres, torch.zeros(U, CARD["genres"]))  # before setup
    model.setup(split())
    for u in range(U):
        for g in ("genres", "year"):
            torch.testing.assert_close(getattr(model, f"history_{g}")[u], history(u, g))
    assert torch.equal(model.history_year[5], torch.zeros(3))  # no training events
    # each event counts: user 0 saw item 0 ([0, 1]) once and item 1 ([2]) twice
    torch.testing.assert_close(model.history_genres[0], torch.tensor([0.5 / 3, 0.5 / 3, 2 / 3, 0.0]))


def test_crosses_all_with_and_without_user_features():
    with_users = WideDeep(U, I, USER_FEATURES, ITEM_FEATURES, CARD)
    assert with_users.crosses == [("age", "genres"), ("age", "year"), ("region", "genres"), ("region", "year"),
                                  ("history:genres", "genres"), ("history:year", "year")]
    items_only = WideDeep(U, I, {}, ITEM_FEATURES, CARD)  # Amazon: history crosses only
    assert items_only.crosses == [("history:genres", "genres"), ("history:year", "year")]
    ids_only = WideDeep(U, I)  # no features at all: the wide part is the item bias alone
    assert ids_only.crosses == [] and ids_only.wide_dim == 1 and not len(ids_only.values)
    ids_only.setup(split())
    q, items = ids_only.user_queries({"user": torch.arange(U)}), ids_only.item_embeddings()
    assert ids_only.score(q, items).shape == (U, I)


def test_gradients_reach_every_parameter():
    model = trained_like(dropout=0.2).train()
    q = model.encode({"user": torch.tensor([0, 1, 3]), "item": torch.tensor([2, 3, 0])}).query
    items = model.item_vectors(torch.tensor([[2, 5, 1], [3, 4, 7], [0, 8, 2]]))  # [B, N, D]
    (model.score(q, items).sum() + model.score(q, model.item_embeddings()).sum()).backward()
    for name, p in model.named_parameters():
        if "tables" in name:  # padding rows stay at zero
            assert p.grad is not None and p.grad[:-1].abs().sum() > 0, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crosses": [["age", "colour"]]}, "model.crosses has unknown names colour; user sides: age, region, history:genres, history:year"),
        ({"crosses": [["history:age", "genres"]]}, "model.crosses has unknown names history:age"),
        ({"crosses": [["age", "genres"], ["age", "genres"]]}, "model.crosses has a repeated pair"),
        ({"crosses": ["age"]}, "model.crosses must be all, [] or a list of [user_side, item_feature] pairs"),
        ({"crosses": "none"}, "model.crosses must be all, [] or a list"),
        ({"deep_features": ["colour"]}, "model.deep_features has unknown features colour; the data's user features are: age, region"),
        ({"deep_features": 3}, "model.deep_features must be [all], [] or a list of feature names, got 3"),
        ({"embedding_dim": 0}, "model.embedding_dim must be an integer >= 1, got 0"),
        ({"mlp_layers": []}, "model.mlp_layers must be >= 1 positive integers"),
        ({"mlp_layers": "64"}, "model.mlp_layers must be >= 1 positive integers"),
        ({"mlp_layers": [64, 0]}, "model.mlp_layers must be >= 1 positive integers"),
        ({"dropout": 1.0}, "model.dropout must be a number in [0, 1), got 1.0"),
        ({"wide_item_bias": "yes"}, "model.wide_item_bias must be true or false, got 'yes'"),
        ({"init_std": 0}, "model.init_std must be a number > 0, got 0"),
        ({"eval_chunk": 0}, "model.eval_chunk must be an integer >= 1"),
        ({"train_rows": "all"}, "model.train_rows must be one of events, users"),
    ],
)
def test_bad_options_give_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError) as err:
        WideDeep(U, I, USER_FEATURES, ITEM_FEATURES, CARD, **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unknown_cross_stops_the_run_before_training(cfg_factory):
    """Through the run's wiring, the message names the synthetic data's own features."""
    from recsys.outputs import one_line, unwrap
    from recsys.wiring import build

    with pytest.raises(Exception) as err:
        build(cfg_factory(["model=wide_deep", "model.crosses=[[age,genres]]"]))
    line = one_line(unwrap(err.value))
    assert line.startswith("model.crosses has unknown names genres; user sides: age, region, history:brand, history:category")
    assert "\n" not in line


@pytest.mark.parametrize("overrides", [["loss=bce", "sampler=uniform", "sampler.num_negatives=4"], ["loss=ce"], ["loss=bpr"],
                                       ["loss=ssm"], ["loss=nss"], ["loss=csar"]])
def test_trains_through_the_wiring(cfg_factory, overrides):
    """A few steps of the module's own objective on the synthetic data are finite and move
    the wide part (item bias, value weights, crosses) and the deep part."""
    from recsys.wiring import build

    cfg = cfg_factory(["model=wide_deep", *overrides, "data.dataset.n_users=60", "data.dataset.n_items=60",
                       "data.dataset.n_clusters=4", "data.batch_size=32"])
    torch.manual_seed(0)
    datamodule, module = build(cfg)
    assert module.model.history_category.sum(1).max() == pytest.approx(1.0)  # setup ran on the training split
    moved = train_and_report_moved(module, datamodule)
    assert {"item_bias", "values", "cross", "user_emb", "item_emb", "tower", "head"} <= moved


def test_paper_command_composes(cfg_factory):
    """The yaml header's command: BCE with 4 uniform negatives per positive."""
    cfg = cfg_factory(["model=wide_deep", "loss=bce", "sampler=uniform", "sampler.num_negatives=4"])
    assert cfg.model._target_ == "recsys.models.wide_deep.WideDeep" and cfg.model.crosses == "all"
    assert cfg.loss._target_.endswith("BCE") and cfg.sampler.num_negatives == 4
