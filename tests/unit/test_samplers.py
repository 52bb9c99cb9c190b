"""Negative samplers and ``RecModule.scores`` on a small hand-built split."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from recsys.data.interactions import Interactions, SplitData, UserItems
from recsys.data.views import PairView
from recsys.errors import ConfigError
from recsys import scoring
from recsys.losses.bpr import BPR
from recsys.losses.gbce import GBCE
from recsys.models.mf import MF
from recsys.models.sasrec import SASRec
from recsys.module import RecModule
from recsys.data.sampling import history_keys, sample_excluding
from recsys.samplers.base import Negatives, item_log_frequency
from recsys.samplers.full import FullSampler
from recsys.samplers.in_batch import InBatchSampler
from recsys.samplers.popularity import PopularitySampler
from recsys.samplers.presampled import PresampledSampler
from recsys.samplers.uniform import UniformSampler

N_ITEMS = 8
# training items per user (item 6 is never trained on; item 7 only appears as a target)
TRAIN = {0: [0, 1, 0, 2], 1: [0, 3], 2: [1, 0, 4, 5, 0], 3: [2]}
VALID = {0: [3], 1: [4], 2: [7]}
TEST = {0: [5], 1: [1], 2: [6]}
COUNTS = np.bincount([i for s in TRAIN.values() for i in s], minlength=N_ITEMS)  # [5, 2, 2, 1, 1, 1, 0, 0]


def user_items(table: dict[int, list[int]], n_users: int) -> UserItems:
    users = [u for u, items in table.items() for _ in items]
    items = [i for its in table.values() for i in its]
    return UserItems.from_pairs(torch.tensor(users, dtype=torch.long), torch.tensor(items, dtype=torch.long), n_users)


def make_split() -> SplitData:
    users = [u for u, s in TRAIN.items() for _ in s]
    items = [i for s in TRAIN.values() for i in s]
    time = [t for s in TRAIN.values() for t in range(len(s))]
    train = Interactions(torch.tensor(users), torch.tensor(items), torch.tensor(time), n_users=4, n_items=N_ITEMS)
    return SplitData(train=train, valid=user_items(VALID, 4), test=user_items(TEST, 4))


@pytest.fixture
def split() -> SplitData:
    return make_split()


def test_split_fixture_counts(split):
    assert split.train.item_counts().tolist() == COUNTS.tolist()


# ---- uniform ------------------------------------------------------------------------------
@pytest.mark.parametrize("shared", [False, True])
def test_uniform_shapes_range_and_log_q(split, shared):
    s = UniformSampler(num_negatives=5, shared=shared)
    s.setup(split)
    pos = torch.tensor([0, 1, 2])
    neg = s.sample(pos, torch.tensor([0, 1, 2]))
    assert neg.items.shape == ((5,) if shared else (3, 5))
    assert neg.items.dtype == torch.long
    assert bool(((neg.items >= 0) & (neg.items < N_ITEMS)).all())
    assert neg.log_q.shape == neg.items.shape
    assert_close(neg.log_q, torch.full(neg.items.shape, -math.log(N_ITEMS)))
    assert_close(neg.pos_log_q, torch.full((3,), -math.log(N_ITEMS)))


def test_uniform_covers_catalogue(split):
    torch.manual_seed(0)
    s = UniformSampler(num_negatives=400)
    s.setup(split)
    items = s.sample(torch.zeros(10, dtype=torch.long), torch.zeros(10, dtype=torch.long)).items
    freq = np.bincount(items.flatten().numpy(), minlength=N_ITEMS) / items.numel()
    assert np.abs(freq - 1 / N_ITEMS).max() < 0.02  # 4000 draws, sd ~ 0.005


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_num_negatives_must_be_positive_int(bad):
    with pytest.raises(ConfigError):
        UniformSampler(num_negatives=bad)


# ---- popularity ---------------------------------------------------------------------------
def popularity_probs(alpha: float) -> np.ndarray:
    w = np.array([c**alpha if c > 0 else 0.0 for c in COUNTS], dtype=np.float64)
    return w / w.sum()


@pytest.mark.parametrize("alpha", [1.0, 0.75, 0.0])
def test_popularity_frequencies_and_log_q(split, alpha):
    torch.manual_seed(1)
    s = PopularitySampler(num_negatives=2000, alpha=alpha, shared=False)
    s.setup(split)
    pos = torch.tensor([0, 3, 5, 1, 2, 4, 0, 1, 2, 3])
    neg = s.sample(pos, torch.zeros_like(pos))
    assert neg.items.shape == (10, 2000)
    p = popularity_probs(alpha)
    drawn = np.bincount(neg.items.flatten().numpy(), minlength=N_ITEMS)
    assert drawn[p == 0].sum() == 0  # never-trained items are never drawn
    n = neg.items.numel()
    live = p > 0
    chi2 = float((((drawn[live] - n * p[live]) ** 2) / (n * p[live])).sum())
    assert chi2 < 30.0  # df <= 5; P(chi2_5 > 30) ~ 1.5e-5
    with np.errstate(divide="ignore"):
        log_p = np.log(p)  # -inf for never-trained items
    assert_close(neg.log_q, torch.from_numpy(log_p[neg.items.numpy()]).float())
    assert_close(neg.pos_log_q, torch.from_numpy(log_p[pos.numpy()]).float())


def test_popularity_shared_shape(split):
    s = PopularitySampler(num_negatives=7, shared=True)
    s.setup(split)
    neg = s.sample(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]))
    assert neg.items.shape == (7,) and neg.log_q.shape == (7,) and neg.pos_log_q.shape == (3,)
    assert not bool(torch.isin(neg.items, torch.tensor([6, 7])).any())


def test_item_log_frequency_zero_count_is_minus_inf(split):
    lq = item_log_frequency(split)
    assert torch.isneginf(lq[6]) and torch.isneginf(lq[7])
    assert_close(lq[:6], torch.log(torch.tensor(COUNTS[:6] / COUNTS.sum(), dtype=torch.float32)))


# ---- in-batch -----------------------------------------------------------------------------
def test_in_batch_uses_positives_and_log_frequency(split):
    s = InBatchSampler()
    s.setup(split)
    pos = torch.tensor([0, 2, 5, 0])
    neg = s.sample(pos, torch.tensor([0, 0, 2, 2]))
    assert torch.equal(neg.items, pos)
    want = torch.tensor([math.log(COUNTS[i] / COUNTS.sum()) for i in pos.tolist()], dtype=torch.float32)
    assert_close(neg.log_q, want)
    assert_close(neg.pos_log_q, want)


def test_in_batch_cap_keeps_a_subset_of_the_batch_with_its_log_frequency(split):
    s = InBatchSampler(max_negatives=3)
    s.setup(split)
    pos = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    neg = s.sample(pos, torch.zeros_like(pos))
    assert neg.items.shape == (3,)
    assert set(neg.items.tolist()) <= set(pos.tolist())
    assert_close(neg.log_q, s.log_q[neg.items])
    assert_close(neg.pos_log_q, s.log_q[pos])  # the positives' log q covers every row
    small = s.sample(pos[:3], torch.zeros(3, dtype=torch.long))
    assert torch.equal(small.items, pos[:3])  # under the cap: the batch as is


@pytest.mark.parametrize("bad", [0, 1, -5, 2.5, True, "10"])
def test_in_batch_cap_rejects_bad_values(bad):
    with pytest.raises(ConfigError, match="max_negatives"):
        InBatchSampler(max_negatives=bad)


# ---- full ---------------------------------------------------------------------------------
def test_full_sampler_has_no_items(split):
    s = FullSampler()
    s.setup(split)
    neg = s.sample(torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert neg.items is None and neg.log_q is None


# ---- presampled ---------------------------------------------------------------------------
def forbidden_by_user() -> dict[int, set[int]]:
    """Every item of each user: what sampled *evaluation* negatives exclude."""
    return {u: set(TRAIN.get(u, [])) | set(VALID.get(u, [])) | set(TEST.get(u, [])) for u in range(4)}


def training_items_by_user() -> dict[int, set[int]]:
    """Only the training items: what *training* negatives exclude (held-out targets are
    ordinary items to the training sampler; excluding them would leak them)."""
    return {u: set(TRAIN.get(u, [])) for u in range(4)}


def test_presampled_deterministic_and_excludes_history(split):
    a, b, c = PresampledSampler(2, seed=0), PresampledSampler(2, seed=0), PresampledSampler(2, seed=1)
    for s in (a, b, c):
        s.setup(split)
    assert a.table.shape == (4, 2)
    assert torch.equal(a.table, b.table)
    assert not torch.equal(a.table, c.table)
    forbidden = training_items_by_user()
    for s in (a, c):
        for u in range(4):
            assert not set(s.table[u].tolist()) & forbidden[u], u
    neg = a.sample(torch.tensor([0, 0, 3]), torch.tensor([2, 2, 3]))
    assert torch.equal(neg.items, a.table[[2, 2, 3]])


def test_presampled_many_seeds_never_draw_training_items_but_do_draw_held_out_ones(split):
    forbidden = training_items_by_user()
    seen = {u: set() for u in range(4)}
    for seed in range(30):
        s = PresampledSampler(2, seed=seed)
        s.setup(split)
        for u in range(4):
            items = set(s.table[u].tolist())
            assert not items & forbidden[u]
            seen[u] |= items
    for u in range(4):  # and every allowed item does come up, validation and test targets included
        assert seen[u] == set(range(N_ITEMS)) - forbidden[u]
        assert set(VALID.get(u, [])) | set(TEST.get(u, [])) <= seen[u]


def test_history_keys_exact(split):
    keys = history_keys(split)
    want = sorted({u * N_ITEMS + i for u, items in forbidden_by_user().items() for i in items})
    assert keys.tolist() == want
    train_only = history_keys(split, include_targets=False)
    assert train_only.tolist() == sorted({u * N_ITEMS + i for u, s in TRAIN.items() for i in s})


def test_sample_excluding_raises_when_too_few_allowed(split):
    # user 2 has 4 training items of 8 (0, 1, 4, 5) -> 4 allowed to the training sampler
    with pytest.raises(ConfigError, match="only 4 items"):
        PresampledSampler(5, seed=0).setup(split)
    PresampledSampler(4, seed=0).setup(split)
    # evaluation negatives also exclude 7 (valid) and 6 (test) -> 2 allowed
    keys = history_keys(split)
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ConfigError) as info:
        sample_excluding(torch.tensor([0, 2]), 3, N_ITEMS, keys, gen, "what")
    assert str(info.value).startswith("what:") and "\n" not in str(info.value)
    out = sample_excluding(torch.tensor([2] * 50), 2, N_ITEMS, keys, gen, "what")
    assert set(out.flatten().tolist()) == {2, 3}  # user 2's only allowed items


def test_sample_excluding_uniform_over_allowed():
    forbidden = torch.tensor([0 * 10 + 1, 0 * 10 + 4, 1 * 10 + 0])  # user 0: not 1, 4; user 1: not 0
    gen = torch.Generator().manual_seed(3)
    out = sample_excluding(torch.tensor([0] * 500 + [1] * 500), 8, 10, forbidden, gen, "x")
    assert out.shape == (1000, 8)
    f0 = np.bincount(out[:500].flatten().numpy(), minlength=10) / 4000
    assert f0[1] == 0 and f0[4] == 0
    assert np.abs(f0[[0, 2, 3, 5, 6, 7, 8, 9]] - 1 / 8).max() < 0.03
    f1 = np.bincount(out[500:].flatten().numpy(), minlength=10) / 4000
    assert f1[0] == 0 and np.abs(f1[1:] - 1 / 9).max() < 0.03


def test_sample_excluding_with_nothing_forbidden():
    gen = torch.Generator().manual_seed(0)
    out = sample_excluding(torch.tensor([0, 1, 2]), 5, 6, torch.empty(0, dtype=torch.long), gen, "x")
    assert out.shape == (3, 5) and bool(((out >= 0) & (out < 6)).all())


# ---- RecModule.scores ---------------------------------------------------------------------
def make_module(split, sampler):
    torch.manual_seed(0)
    model = MF(split.n_users, split.n_items, embedding_dim=6)
    sampler.setup(split)
    return RecModule(model=model, loss=BPR(), sampler=sampler, optimizer=None, n_items=split.n_items), model


def training_rows(split):
    return PairView(split).batch(torch.arange(len(split.train)))


def dot(model, users, items):
    """Reference scores: elementwise product of the embedding rows, summed (no matmul)."""
    u = model.user_emb.weight[users].detach()
    v = model.item_emb.weight[items].detach()
    return (u * v).sum(-1)


def test_module_scores_full_catalogue(split):
    module, model = make_module(split, FullSampler())
    batch = training_rows(split)
    enc = model.encode(batch)
    s = module.scores(enc, module.sampler.sample(enc.target, enc.user))
    rows = batch["user"].numel()
    assert s.neg.shape == (rows, N_ITEMS)
    assert_close(s.pos, s.neg.gather(1, batch["item"].unsqueeze(1)).squeeze(1))
    want_all = dot(model, batch["user"].unsqueeze(1).expand(-1, N_ITEMS), torch.arange(N_ITEMS).expand(rows, -1))
    assert_close(s.neg.detach(), want_all)
    valid = s.valid()
    expected = torch.ones(rows, N_ITEMS, dtype=torch.bool)
    expected[torch.arange(rows), batch["item"]] = False
    assert torch.equal(valid, expected)


def test_module_scores_per_row_negatives_mask_accidental_hits(split):
    module, model = make_module(split, UniformSampler(num_negatives=3))
    batch = training_rows(split)
    enc = model.encode(batch)
    rows = batch["user"].numel()
    neg_items = torch.arange(rows * 3).view(rows, 3) % N_ITEMS
    neg_items[0, 1] = batch["item"][0]  # force hits
    neg_items[5, :] = batch["item"][5]
    log_q = torch.randn(rows, 3)
    s = module.scores(enc, Negatives(items=neg_items, log_q=log_q, pos_log_q=torch.zeros(rows)))
    assert_close(s.pos.detach(), dot(model, batch["user"], batch["item"]))
    assert_close(s.neg.detach(), dot(model, batch["user"].unsqueeze(1).expand(-1, 3), neg_items))
    want = torch.tensor([[int(neg_items[r, j]) != int(batch["item"][r]) for j in range(3)] for r in range(rows)])
    assert torch.equal(s.neg_mask, want)
    assert torch.equal(s.valid(), want)
    assert not bool(want[5].any()) and not bool(want[0, 1])
    assert torch.equal(s.neg_log_q, log_q)


def test_module_scores_shared_negatives(split):
    module, model = make_module(split, PopularitySampler(num_negatives=4, shared=True))
    batch = training_rows(split)
    enc = model.encode(batch)
    rows = batch["user"].numel()
    neg_items = torch.tensor([0, 2, 6, 5])
    log_q = torch.tensor([-1.0, -2.0, -3.0, -4.0])
    s = module.scores(enc, Negatives(items=neg_items, log_q=log_q, pos_log_q=torch.zeros(rows)))
    assert s.neg.shape == (rows, 4)
    assert s.neg_log_q.shape == (rows, 4)
    assert torch.equal(s.neg_log_q, log_q.expand(rows, 4))
    assert_close(s.neg.detach(), dot(model, batch["user"].unsqueeze(1).expand(-1, 4), neg_items.expand(rows, -1)))
    want = torch.tensor([[int(i) != int(batch["item"][r]) for i in neg_items] for r in range(rows)])
    assert torch.equal(s.neg_mask, want)
    assert not bool(want.all())  # the batch does contain accidental hits
    # and the real sampler path runs end to end through the loss
    out = module.scores(enc, module.sampler.sample(enc.target, enc.user))
    assert out.neg_log_q.shape == (rows, 4)
    assert bool(torch.isfinite(module.loss(out)))


def test_module_scores_in_batch(split):
    module, model = make_module(split, InBatchSampler())
    batch = training_rows(split)
    enc = model.encode(batch)
    s = module.scores(enc, module.sampler.sample(enc.target, enc.user))
    rows = batch["user"].numel()
    assert s.neg.shape == (rows, rows)
    same = batch["item"].unsqueeze(0) == batch["item"].unsqueeze(1)  # duplicates of the positive
    assert torch.equal(s.neg_mask, ~same)
    assert torch.equal(s.neg_log_q[0], s.pos_log_q)


@pytest.mark.parametrize("make_model", [
    lambda split: MF(split.n_users, split.n_items, embedding_dim=6),
    lambda split: SASRec(split.n_items, embedding_dim=8, max_len=4, dropout=0.0, tied_output=False),
], ids=["mf", "sasrec_untied"])
def test_per_row_negatives_through_the_catalogue_give_the_gathered_scores_and_gradients(split, make_model, monkeypatch):
    """Many per-row negatives from a small catalogue are read from the catalogue's [R, I]
    scores (scoring.scores_through_catalogue); the loss and every gradient equal those of
    gathering the negatives' vectors."""
    torch.manual_seed(0)
    model = make_model(split)
    loss = GBCE(t=0.75)
    sampler = UniformSampler(num_negatives=3)
    for part in (model, loss, sampler):
        part.setup(split)
    module = RecModule(model=model, loss=loss, sampler=sampler, optimizer=None, n_items=split.n_items)
    view = model.make_view(split)
    enc = model.encode(view.batch(torch.arange(len(view))))
    negatives = sampler.sample(enc.target, enc.user)
    negatives.items[0, 1] = enc.target[0]  # an accidental hit, masked on both paths

    def loss_and_grads(max_items_per_negative):
        monkeypatch.setattr(scoring, "CATALOGUE_SCORING_MAX_ITEMS_PER_NEGATIVE", max_items_per_negative)
        model.zero_grad()
        s = module.scores(enc, negatives)
        value = module.loss(s)
        value.backward(retain_graph=True)
        return s, value.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    assert scoring.scores_through_catalogue(model, negatives.items, split.n_items)  # 8 items, 3 negatives
    s_catalogue, catalogue_loss, catalogue_grads = loss_and_grads(64)
    monkeypatch.setattr(scoring, "CATALOGUE_SCORING_MAX_ITEMS_PER_NEGATIVE", 2)
    assert not scoring.scores_through_catalogue(model, negatives.items, split.n_items)  # 8 > 2 * 3
    s_gathered, gathered_loss, gathered_grads = loss_and_grads(2)
    assert_close(s_catalogue.pos, s_gathered.pos)
    assert_close(s_catalogue.neg, s_gathered.neg)
    assert torch.equal(s_catalogue.neg_mask, s_gathered.neg_mask) and not bool(s_catalogue.neg_mask[0, 1])
    assert_close(catalogue_loss, gathered_loss)
    assert len(catalogue_grads) == len(gathered_grads) > 0
    for got, want in zip(catalogue_grads, gathered_grads):
        assert_close(got, want)


def test_shared_negatives_and_non_dot_scores_keep_the_gathered_vectors(split):
    model = MF(split.n_users, split.n_items, embedding_dim=6)
    assert not scoring.scores_through_catalogue(model, torch.zeros(3, dtype=torch.long), split.n_items)  # shared
    assert scoring.scores_through_catalogue(model, torch.zeros(5, 3, dtype=torch.long), split.n_items)
    model.set_scoring("cosine", 0.1)  # not a plain dot product
    assert not scoring.scores_through_catalogue(model, torch.zeros(5, 3, dtype=torch.long), split.n_items)
