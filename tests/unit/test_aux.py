"""Composition of a main loss with auxiliary terms (orthogonal regularizer)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from recsys.errors import ConfigError
from recsys.losses.bpr import BPR
from recsys.auxiliary.orthogonal import Orthogonal
from recsys.models.mf import MF
from recsys.models.sasrec import SASRec
from recsys.module import RecModule
from recsys.samplers.uniform import UniformSampler


def ref_penalty(vectors: torch.Tensor, kind: str) -> float:
    rows = vectors.tolist()
    values = []
    for i, j in itertools.permutations(range(len(rows)), 2):
        a, b = rows[i], rows[j]
        cos = sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
        values.append(abs(cos) if kind == "l1" else cos * cos)
    return sum(values) / len(values)


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_orthogonal_matches_pairwise_cosine_reference(kind):
    vectors = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    value = Orthogonal(kind=kind).penalty(vectors)
    assert float(value) == pytest.approx(ref_penalty(vectors, kind), rel=1e-5)


def test_orthogonal_is_zero_for_orthogonal_and_one_for_parallel_vectors():
    assert float(Orthogonal(kind="l1").penalty(torch.eye(4))) == pytest.approx(0.0)
    parallel = torch.tensor([[1.0, 2.0], [-2.0, -4.0], [3.0, 6.0]])
    assert float(Orthogonal(kind="l2").penalty(parallel)) == pytest.approx(1.0)


def test_orthogonal_subsamples_large_sets():
    value = Orthogonal(max_vectors=16).penalty(torch.randn(5000, 8))
    assert math.isfinite(float(value))


def test_model_without_the_named_vectors_gives_a_clear_error():
    with pytest.raises(ConfigError) as info:
        Orthogonal(source="prototypes")(MF(5, 7, 4))
    message = str(info.value)
    assert "prototypes" in message and "item_embeddings" in message and "\n" not in message
    assert SASRec(7, 8, num_heads=2, max_len=4).exposed("attention_heads").shape == (2, 32)


def test_bad_kind_is_rejected():
    with pytest.raises(ConfigError):
        Orthogonal(kind="l3")


def test_total_objective_is_weighted_sum_and_terms_are_logged(monkeypatch):
    torch.manual_seed(0)
    model = MF(4, 6, 3)
    sampler = UniformSampler(2)
    sampler.n_items = 6
    ortho = Orthogonal(weight=0.5, source="user_embeddings")
    module = RecModule(model, BPR(), sampler, optimizer=None, n_items=6, aux={"orthogonal": ortho}, loss_name="bpr")
    logged = {}
    monkeypatch.setattr(module, "log", lambda name, value, **kw: logged.__setitem__(name, float(value)))
    batch = {"user": torch.tensor([0, 1, 2]), "item": torch.tensor([1, 2, 3])}
    torch.manual_seed(1)
    total = module.training_step(batch, 0)
    assert float(total) == pytest.approx(logged["train/loss/bpr"] + 0.5 * logged["train/loss/orthogonal"], rel=1e-6)
    assert logged["train/loss"] == pytest.approx(float(total))
    assert logged["train/loss/orthogonal"] == pytest.approx(float(ortho.penalty(model.user_emb.weight)), rel=1e-6)


def test_embedding_l2_matches_a_direct_recomputation_for_every_negative_shape():
    from recsys.auxiliary.embedding_l2 import EmbeddingL2
    from recsys.models.base import Encoded
    from recsys.samplers.base import Negatives

    torch.manual_seed(0)
    model = MF(5, 9, 3)
    u, v = model.user_emb.weight, model.item_emb.weight
    enc = Encoded(query=u[[0, 3]], target=torch.tensor([1, 4]), user=torch.tensor([0, 3]))
    term = EmbeddingL2(weight=1e-4)

    def sq(x):
        return float((x**2).sum())

    # one negative per row: LightGCN's reg = 0.5 * (|u|^2 + |p|^2 + |n|^2) / B
    per_row = Negatives(items=torch.tensor([[2], [7]]))
    expected = 0.5 * (sq(u[0]) + sq(v[1]) + sq(v[2]) + sq(u[3]) + sq(v[4]) + sq(v[7])) / 2
    assert float(term(model, enc=enc, negatives=per_row)) == pytest.approx(expected, rel=1e-6)
    shared = Negatives(items=torch.tensor([2, 5, 8]))
    neg_mean = (sq(v[2]) + sq(v[5]) + sq(v[8])) / 3
    expected = 0.5 * (sq(u[0]) + sq(v[1]) + sq(u[3]) + sq(v[4]) + 2 * neg_mean) / 2
    assert float(term(model, enc=enc, negatives=shared)) == pytest.approx(expected, rel=1e-6)
    full = Negatives(items=None)
    expected = 0.5 * (sq(u[0]) + sq(v[1]) + sq(u[3]) + sq(v[4]) + 2 * sq(v) / 9) / 2
    assert float(term(model, enc=enc, negatives=full)) == pytest.approx(expected, rel=1e-6)

    term(model, enc=enc, negatives=per_row).backward()  # only the touched rows get a gradient
    assert torch.nonzero(model.user_emb.weight.grad.abs().sum(1)).flatten().tolist() == [0, 3]
    assert torch.nonzero(model.item_emb.weight.grad.abs().sum(1)).flatten().tolist() == [1, 2, 4, 7]


def test_embedding_l2_needs_per_id_tables_and_a_valid_weight():
    from recsys.auxiliary.embedding_l2 import EmbeddingL2

    EmbeddingL2().check(MF(5, 7, 4))
    with pytest.raises(ConfigError, match="user_embeddings"):
        EmbeddingL2().check(SASRec(7, 8, num_heads=2, max_len=4))
    for bad in (-1.0, "big", True):
        with pytest.raises(ConfigError, match="aux.embedding_l2.weight"):
            EmbeddingL2(weight=bad)


def test_embedding_l2_is_added_to_the_objective_with_its_weight(monkeypatch):
    """The step's objective is BPR + 0.01 * L2, both recomputed here from the embedding
    tables with plain Python (fixed negatives, none an accidental hit)."""
    from recsys.auxiliary.embedding_l2 import EmbeddingL2
    from recsys.samplers.base import Negatives, NegativeSampler

    class Fixed(NegativeSampler):
        def sample(self, pos, user):
            return Negatives(items=torch.tensor([[4, 5], [0, 5], [1, 4]]))  # [B, 2]

    torch.manual_seed(0)
    model = MF(4, 6, 3)
    module = RecModule(model, BPR(), Fixed(), optimizer=None, n_items=6, aux={"embedding_l2": EmbeddingL2(0.01)}, loss_name="bpr")
    logged = {}
    monkeypatch.setattr(module, "log", lambda name, value, **kw: logged.__setitem__(name, float(value)))
    users, items, negatives = [0, 1, 2], [1, 2, 3], [[4, 5], [0, 5], [1, 4]]
    total = module.training_step({"user": torch.tensor(users), "item": torch.tensor(items)}, 0)

    u, v = model.user_emb.weight.tolist(), model.item_emb.weight.tolist()

    def dot(a, b):
        return sum(x * y for x, y in zip(a, b))

    bpr = sum(
        sum(math.log1p(math.exp(-(dot(u[us], v[it]) - dot(u[us], v[j])))) for j in negs) / len(negs)
        for us, it, negs in zip(users, items, negatives)
    ) / 3  # mean over rows of the mean over negatives of -ln sigmoid(s_pos - s_neg)
    l2 = 0.5 * sum(
        dot(u[us], u[us]) + dot(v[it], v[it]) + sum(dot(v[j], v[j]) for j in negs) / len(negs)
        for us, it, negs in zip(users, items, negatives)
    ) / 3
    assert float(total) == pytest.approx(bpr + 0.01 * l2, rel=1e-6)
    assert logged["train/loss/bpr"] == pytest.approx(bpr, rel=1e-6)
    assert logged["train/loss/embedding_l2"] == pytest.approx(l2, rel=1e-6)
    assert logged["train/loss"] == pytest.approx(bpr + 0.01 * l2, rel=1e-6)
