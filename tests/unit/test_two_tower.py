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


def _two_tower(split, **kw) -> TwoTower:
    inter = split.train
    model = TwoTower(split.n_users, split.n_items, inter.user_features, inter.item_features, inter.feature_cardinality,
                     embedding_dim=16, max_len=4, **kw)
    model.setup(split)
    return model


def test_item_vectors_are_the_catalogue_rows_and_run_the_tower_on_distinct_ids_only(split):
    model = _two_tower(split).eval()
    seen = []
    hook = model.item_tower.register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))
    ids = torch.tensor([[3, 7, 3], [0, 7, 9]])  # [2, 3], repeated ids
    vectors = model.item_vectors(ids)
    hook.remove()
    assert vectors.shape == (2, 3, 16)
    assert [x.tolist() for x in seen] == [[0, 3, 7, 9]]  # one tower row per distinct item
    torch.testing.assert_close(vectors, model.item_embeddings()[ids])


@pytest.mark.parametrize("sampler_name", ["in_batch", "uniform"])
def test_sampled_scores_encode_only_the_scored_items_and_equal_full_catalogue_scores(split, sampler_name, monkeypatch):
    """``RecModule.scores`` with sampled or in-batch negatives runs the item tower on the
    step's positives and negatives only (not the whole catalogue) and gives the same scores,
    unless the catalogue is small for the number of per-row negatives (then it is scored
    whole: ``scoring.scores_through_catalogue``, tested in test_samplers.py)."""
    from recsys import scoring
    from recsys.losses.nss import NSS
    from recsys.module import RecModule
    from recsys.samplers.in_batch import InBatchSampler
    from recsys.samplers.uniform import UniformSampler

    monkeypatch.setattr(scoring, "CATALOGUE_SCORING_MAX_ITEMS_PER_NEGATIVE", 1)  # a catalogue larger than 1 item per negative
    torch.manual_seed(0)
    model = _two_tower(split).eval()  # eval: no dropout, so both ways give identical vectors
    sampler = InBatchSampler() if sampler_name == "in_batch" else UniformSampler(num_negatives=3)
    sampler.setup(split)
    module = RecModule(model, NSS(), sampler, optimizer=None, n_items=split.n_items)
    enc = model.encode(model.make_view(split).batch(torch.arange(6)))
    negatives = sampler.sample(enc.target, enc.user)
    rows = []
    hook = model.item_tower.register_forward_hook(lambda module, args, out: rows.append(out.shape[0]))
    s = module.scores(enc, negatives)
    hook.remove()
    scored = torch.cat([enc.target, negatives.items.flatten()]).unique()
    assert rows == [scored.numel()] and scored.numel() < split.n_items
    items = model.item_embeddings()  # [I, D]
    torch.testing.assert_close(s.pos, (enc.query * items[enc.target]).sum(1))
    expected_neg = enc.query @ items[negatives.items].T if negatives.items.dim() == 1 else \
        torch.bmm(items[negatives.items], enc.query.unsqueeze(2)).squeeze(2)
    torch.testing.assert_close(s.neg, expected_neg)


@pytest.mark.parametrize("pooling", ["attention", "last"])
def test_bucketed_sequence_encoding_equals_the_whole_batch_and_encodes_less_padding(pooling):
    """Encoding rows in groups of similar history length, each cut to its longest history,
    gives the same vectors (and gradients) as encoding the whole ``[B, L]`` batch."""
    from recsys.models.towers import SequenceEncoder

    torch.manual_seed(0)
    n_items, max_len = 30, 8
    encoder = SequenceEncoder(n_items, 16, max_len, layers=1, heads=2, dropout=0.1, pooling=pooling).eval()
    lengths = torch.tensor([0, 1, 8, 3, 2, 5, 1, 8, 0, 4, 2, 7])  # [B], empty histories included
    seq = torch.full((lengths.numel(), max_len), n_items)  # [B, L] left-padded
    for row, n in enumerate(lengths.tolist()):
        seq[row, max_len - n:] = torch.randint(n_items, (n,))
    whole = encoder(seq)  # [B, D]
    (whole_grad,) = torch.autograd.grad(whole.pow(2).sum(), encoder.item_emb.weight)
    positions = []
    encoder.encoder.register_forward_pre_hook(lambda module, args: positions.append(args[0].shape[0] * args[0].shape[1]))
    encoder.buckets = 3
    bucketed = encoder(seq)
    torch.testing.assert_close(bucketed, whole)
    torch.testing.assert_close(torch.autograd.grad(bucketed.pow(2).sum(), encoder.item_emb.weight)[0], whole_grad)
    assert len(positions) == 3 and sum(positions) < seq.numel()


def test_seq_buckets_must_be_a_positive_integer(split):
    inter = split.train
    with pytest.raises(ConfigError, match="model.seq_buckets"):
        TwoTower(split.n_users, split.n_items, inter.user_features, inter.item_features, inter.feature_cardinality,
                 seq_buckets=0)
