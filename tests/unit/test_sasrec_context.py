"""Context-aware SASRec: item features reach the input (and, with ``context_output``, the
scored) item vectors, user features reach the query in training and evaluation, and the
ID-only model ignores features entirely."""

from __future__ import annotations

import pytest
import torch

from recsys.errors import ConfigError
from recsys.models.sasrec import SASRec

N_ITEMS, N_USERS, MAX_LEN, DIM = 30, 6, 8, 16
CARD = {"genres": 5, "year": 4, "age": 3, "region": 2}


def item_features() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    genres = torch.randint(0, 5, (N_ITEMS, 3), generator=g)  # [I, 3] multi-valued
    genres[::3, 2] = -1  # some items have fewer genres
    genres[7] = -1  # one item has none
    return {"genres": genres, "year": torch.randint(0, 4, (N_ITEMS, 1), generator=g)}


def user_features() -> dict[str, torch.Tensor]:
    return {"age": torch.tensor([0, 1, 2, 0, 1, -1]), "region": torch.tensor([0, 1, 0, 1, 0, 1])}


def model(seed: int = 0, items=None, users=None, **options) -> SASRec:
    torch.manual_seed(seed)
    return SASRec(
        N_ITEMS, embedding_dim=DIM, num_heads=2, max_len=MAX_LEN, dropout=0.0,
        item_features=item_features() if items is None else items,
        user_features=user_features() if users is None else users,
        feature_cardinality=CARD, **options,
    ).eval()


def batch() -> dict[str, torch.Tensor]:
    seq = torch.arange(4 * MAX_LEN).view(4, MAX_LEN) % N_ITEMS  # [B, L]
    seq[0, :3] = N_ITEMS  # left padding
    target = torch.roll(seq, -1, 1)  # [B, L], any valid targets
    target[0, :3] = N_ITEMS
    return {"input": seq, "target": target, "user": torch.tensor([0, 1, 2, 3])}


def changed_item(features: dict[str, torch.Tensor], item: int) -> dict[str, torch.Tensor]:
    out = {k: v.clone() for k, v in features.items()}
    out["year"][item] = (out["year"][item] + 1) % 4
    return out


def test_id_only_ignores_features_and_has_no_feature_parameters():
    torch.manual_seed(0)
    plain = SASRec(N_ITEMS, embedding_dim=DIM, num_heads=2, max_len=MAX_LEN, dropout=0.0)  # built without any features
    with_data = model()  # features given, none chosen
    assert [n for n, _ in with_data.named_parameters()] == [n for n, _ in plain.named_parameters()]
    other = model(items={k: (v + 1) % 4 for k, v in item_features().items()}, users={k: v.flip(0) for k, v in user_features().items()})
    b = batch()
    torch.testing.assert_close(with_data.encode(b).query, other.encode(b).query, rtol=0, atol=0)
    torch.testing.assert_close(with_data.user_queries(b), other.user_queries(b), rtol=0, atol=0)
    torch.testing.assert_close(with_data.item_embeddings(), other.item_embeddings(), rtol=0, atol=0)
    torch.testing.assert_close(with_data.user_queries(b), plain.eval().user_queries(b), rtol=0, atol=0)


@pytest.mark.parametrize("fusion", ["add", "concat"])
def test_an_items_feature_change_changes_its_input_vector_only(fusion):
    b = batch()
    item = int(b["input"][2, 4])
    before = model(context_features=["all"], context_fusion=fusion, context_output=False)
    after = model(items=changed_item(item_features(), item), context_features=["all"], context_fusion=fusion, context_output=False)
    h0, h1 = before.hidden(b["input"]), after.hidden(b["input"])  # [B, L, D]
    has = (b["input"] == item).cumsum(1) > 0  # [B, L] positions that have seen the item
    assert has.any() and (~has).any()
    assert (h0 - h1).abs().amax(-1)[has].min() > 0  # every position that sees it changes
    torch.testing.assert_close(h0[~has], h1[~has], rtol=0, atol=0)  # the others do not
    torch.testing.assert_close(before.item_embeddings(), after.item_embeddings(), rtol=0, atol=0)  # input side only


@pytest.mark.parametrize("fusion", ["add", "concat"])
def test_with_context_output_a_feature_change_changes_that_items_score_vector(fusion):
    item = 11
    before = model(context_features=["year"], context_fusion=fusion, context_output=True)
    after = model(items=changed_item(item_features(), item), context_features=["year"], context_fusion=fusion, context_output=True)
    v0, v1 = before.item_embeddings(), after.item_embeddings()  # [I, D]
    assert not torch.allclose(v0[item], v1[item])
    others = torch.arange(N_ITEMS) != item
    torch.testing.assert_close(v0[others], v1[others], rtol=0, atol=0)


@pytest.mark.parametrize("fusion", ["add", "concat"])
def test_item_vectors_are_rows_of_item_embeddings_with_the_fusion(fusion):
    m = model(context_features=["all"], context_fusion=fusion, context_output=True)
    ids = torch.randint(0, N_ITEMS, (3, 5))  # [B, N]
    assert m.item_vectors(ids).shape == (3, 5, DIM) and m.item_embeddings().shape == (N_ITEMS, DIM)
    torch.testing.assert_close(m.item_vectors(ids), m.item_embeddings()[ids])
    assert m.hidden(batch()["input"]).shape == (4, MAX_LEN, DIM)


def test_concat_projects_id_and_features_back_to_the_hidden_size():
    add = model(context_features=["all"], context_fusion="add")
    concat = model(context_features=["all"], context_fusion="concat")
    assert add.context_proj is None
    assert (concat.context_proj.in_features, concat.context_proj.out_features) == (3 * DIM, DIM)  # [ID; genres; year]
    assert add.item_context.out_dim == concat.item_context.out_dim == 2 * DIM


def test_multi_valued_feature_is_the_mean_of_its_values_embeddings():
    m = model(context_features=["genres"])
    table = m.item_context.tables["genres"].weight  # [5 + 1, D]
    genres = item_features()["genres"]
    for item in (0, 1, 7):
        values = genres[item][genres[item] >= 0]
        expected = table[values].mean(0) if values.numel() else torch.zeros(DIM)
        torch.testing.assert_close(m.item_context(torch.tensor([item]))[0], expected)
    ids = torch.tensor([[0, 1], [7, 2]])
    torch.testing.assert_close(m.item_context(ids), m.item_context(ids.flatten()).view(2, 2, -1))  # any id shape


@pytest.mark.parametrize("fusion", ["add", "concat"])
def test_padding_gets_no_feature_signal(fusion):
    m = model(context_features=["all"], context_fusion=fusion, user_context=["all"], context_output=True)
    pad = torch.tensor([N_ITEMS])
    assert m.item_context(pad).abs().sum() == 0
    if fusion == "add":
        assert m.fuse(m.item_emb(pad), pad).abs().sum() == 0
    b = batch()
    assert m.hidden(b["input"], user=b["user"])[0, :3].abs().sum() == 0  # padding positions stay zero


def test_user_context_reaches_the_query_in_training_and_evaluation():
    b = batch()
    users = user_features()
    changed = {k: v.clone() for k, v in users.items()}
    changed["region"][1] = 1 - changed["region"][1]  # user 1, row 1 of the batch
    m0 = model(user_context=["all"])
    m1 = model(users=changed, user_context=["all"])
    q0, q1 = m0.user_queries(b), m1.user_queries(b)  # [B, D]
    assert not torch.allclose(q0[1], q1[1])
    torch.testing.assert_close(q0[[0, 2, 3]], q1[[0, 2, 3]], rtol=0, atol=0)
    e0, e1 = m0.encode(b), m1.encode(b)  # [R, D]
    rows = e0.user == 1
    assert (e0.query[rows] - e1.query[rows]).abs().amax(-1).min() > 0  # every training row of user 1
    torch.testing.assert_close(e0.query[~rows], e1.query[~rows], rtol=0, atol=0)
    # evaluation's query is training's last-position query, user context included
    torch.testing.assert_close(q0, m0.hidden(b["input"], user=b["user"])[:, -1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="user"):
        m0.user_queries({"input": b["input"]})


@pytest.mark.parametrize(
    ("options", "names"),
    [({"context_features": ["genres", "colour"]}, "genres, year"), ({"user_context": ["gender"]}, "age, region")],
)
def test_unknown_feature_names_fail_with_one_line_listing_the_datas_features(options, names):
    with pytest.raises(ConfigError) as err:
        model(**options)
    message = str(err.value)
    assert "\n" not in message and names in message and "model." in message


def test_all_features_of_data_without_features_fail_with_one_line():
    with pytest.raises(ConfigError, match="no item features") as err:
        model(items={}, context_features=["all"])
    assert "\n" not in str(err.value)


def test_unknown_fusion_fails():
    with pytest.raises(ConfigError, match="context_fusion"):
        model(context_features=["all"], context_fusion="gate")


def test_context_features_train_end_to_end():
    """One optimizer step moves the feature tables (input and scoring side)."""
    m = model(context_features=["all"], user_context=["all"], context_output=True).train()
    b = batch()
    enc = m.encode(b)
    scores = m.score(enc.query, m.item_embeddings())  # [R, I]
    torch.nn.functional.cross_entropy(scores, enc.target).backward()
    for name in ("item_context.tables.genres.weight", "item_context.tables.year.weight", "user_context.tables.age.weight"):
        assert dict(m.named_parameters())[name].grad.abs().sum() > 0, name
