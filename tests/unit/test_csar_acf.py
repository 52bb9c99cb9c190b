"""CSAR's energies, ACF's convex combinations, the exclusiveness/inclusiveness entropies,
their errors, and both models composed with loss=nss and loss=csar."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from recsys.auxiliary.exclusiveness import Exclusiveness
from recsys.auxiliary.inclusiveness import Inclusiveness
from recsys.auxiliary.orthogonal import Orthogonal
from recsys.errors import ConfigError
from recsys.models.acf import ACF
from recsys.models.base import Encoded
from recsys.models.csar import CSAR
from recsys.models.mf import MF
from recsys.wiring import build


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_csar_energy_matches_a_hand_computation():
    model = CSAR(1, 1, embedding_dim=2, num_prototypes=2)
    with torch.no_grad():
        model.prototypes.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        model.user_emb.weight.copy_(torch.tensor([[1.0, -1.0]]))
        model.item_emb.weight.copy_(torch.tensor([[0.5, 1.0]]))
    a_u = [softplus(1.0), softplus(-2.0)]  # e_u @ P^T = [1, -2]
    a_i = [softplus(0.5), softplus(2.0)]  # e_i @ P^T = [0.5, 2]
    energy = a_u[0] * a_i[0] + a_u[1] * a_i[1]
    enc = model.encode({"user": torch.tensor([0]), "item": torch.tensor([0])})
    score = model.score(enc.query, model.item_embeddings())
    assert float(score[0, 0].detach()) == pytest.approx(energy, rel=1e-6)


def test_csar_scores_equal_a_direct_recomputation_and_are_non_negative():
    torch.manual_seed(0)
    model = CSAR(5, 7, embedding_dim=4, num_prototypes=3, init_std=1.0, prototype_std=1.0)
    users = torch.tensor([0, 3, 4])
    enc = model.encode({"user": users, "item": torch.tensor([1, 2, 6])})
    scores = model.score(enc.query, model.item_embeddings())  # [3, 7]
    e_u, e_i, p = model.user_emb.weight[users], model.item_emb.weight, model.prototypes
    expected = torch.zeros(3, 7)
    for b in range(3):
        for i in range(7):
            for k in range(3):
                expected[b, i] += F.softplus(e_u[b] @ p[k]) * F.softplus(e_i[i] @ p[k])
    assert torch.allclose(scores, expected, atol=1e-5) and bool((scores >= 0).all())
    assert torch.allclose(model.item_vectors(torch.tensor([[6, 1]])), model.item_embeddings()[[6, 1]].unsqueeze(0))
    assert model.exposed("prototypes").shape == (3, 4)
    assert float(Orthogonal(source="prototypes")(model).detach()) >= 0


def test_acf_vectors_are_convex_combinations_of_the_anchors():
    torch.manual_seed(0)
    model = ACF(4, 6, embedding_dim=3, num_anchors=5)
    weights = model.exposed("item_anchor_weights")  # [6, 5]
    assert bool((weights >= 0).all()) and torch.allclose(weights.sum(1), torch.ones(6))
    anchors = model.exposed("anchors")
    expected = torch.softmax(model.item_emb.weight @ anchors.T, dim=1) @ anchors
    assert torch.allclose(model.item_embeddings(), expected, atol=1e-6)
    # inside the convex hull: within the anchors' per-coordinate range, and the vector is w @ A exactly
    vectors = model.item_embeddings()
    assert bool((vectors <= anchors.max(0).values + 1e-6).all() and (vectors >= anchors.min(0).values - 1e-6).all())
    users = torch.tensor([1, 3])
    enc = model.encode({"user": users, "item": torch.tensor([0, 5])})
    user_w = model.exposed("user_anchor_weights")[users]
    assert torch.allclose(enc.query, user_w @ anchors, atol=1e-6)
    scores = model.score(enc.query, model.item_embeddings())
    assert torch.allclose(scores, (user_w @ anchors) @ (weights @ anchors).T, atol=1e-5)


def test_acf_hand_case_with_one_hot_and_uniform_affinities():
    model = ACF(1, 2, embedding_dim=2, num_anchors=2)
    with torch.no_grad():
        model.anchors.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        model.item_emb.weight.copy_(torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]]))
    # item 0: equal affinities -> weights (1/2, 1/2); item 1: affinities (ln 3, 0) -> (3/4, 1/4)
    assert torch.allclose(model.item_embeddings(), torch.tensor([[0.5, 0.5], [0.75, 0.25]]), atol=1e-6)


def enc_of(items: list[int]) -> Encoded:
    ids = torch.tensor(items)
    return Encoded(query=torch.zeros(len(items), 2), target=ids, user=torch.zeros_like(ids))


class FixedAnchors(torch.nn.Module):
    """A stand-in model exposing given item anchor distributions."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.weights = weights

    def exposed(self, name: str) -> torch.Tensor:
        return self.weights


@pytest.mark.parametrize("k", [2, 5])
def test_entropies_of_uniform_and_one_hot_distributions(k):
    uniform, one_hot = torch.full((3, k), 1.0 / k), torch.eye(k)
    exclusive, inclusive = Exclusiveness(), Inclusiveness()
    assert float(exclusive(FixedAnchors(uniform), enc_of([0, 1, 2]))) == pytest.approx(math.log(k), rel=1e-6)
    assert float(exclusive(FixedAnchors(one_hot), enc_of(list(range(k))))) == pytest.approx(0.0, abs=1e-9)
    # every item on its own anchor: the mean usage is uniform, the term is -ln K
    assert float(inclusive(FixedAnchors(one_hot), enc_of(list(range(k))))) == pytest.approx(-math.log(k), rel=1e-6)
    # all items on anchor 0: the mean usage is one-hot, the term is 0
    same = torch.zeros(3, k)
    same[:, 0] = 1.0
    assert float(inclusive(FixedAnchors(same), enc_of([0, 1, 2]))) == pytest.approx(0.0, abs=1e-9)
    assert float(inclusive.last_stats["used_anchors"]) == 1.0


def test_terms_use_the_distinct_items_of_the_step():
    weights = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    # item 0 three times and item 1 once: distinct items give mean entropy ln(2)/2
    value = Exclusiveness()(FixedAnchors(weights), enc_of([0, 0, 0, 1]))
    assert float(value) == pytest.approx(math.log(2) / 2, rel=1e-6)
    usage = torch.tensor([0.75, 0.25])  # mean of the two distinct rows
    expected = float((usage * usage.log()).sum())  # -H
    assert float(Inclusiveness()(FixedAnchors(weights), enc_of([0, 0, 0, 1]))) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("term", [Exclusiveness, Inclusiveness])
def test_anchor_terms_on_a_model_without_anchors_name_what_it_exposes(term):
    with pytest.raises(ConfigError) as info:
        term().check(MF(3, 4, 2))
    message = str(info.value)
    assert "item_anchor_weights" in message and "item_embeddings, user_embeddings" in message and "\n" not in message


@pytest.mark.parametrize(
    "make, key",
    [
        (lambda: Exclusiveness(source="anchors"), "aux.exclusiveness.source"),
        (lambda: Inclusiveness(weight=-1.0), "aux.inclusiveness.weight"),
        (lambda: CSAR(2, 2, num_prototypes=0), "model.num_prototypes"),
        (lambda: CSAR(2, 2, prototype_std=0), "model.prototype_std"),
        (lambda: ACF(2, 2, num_anchors=1.5), "model.num_anchors"),
        (lambda: ACF(2, 2, temperature=0), "model.temperature"),
        (lambda: ACF(2, 2, embedding_dim=0), "model.embedding_dim"),
    ],
)
def test_bad_option_values_give_one_line_errors(make, key):
    with pytest.raises(ConfigError) as info:
        make()
    assert key in str(info.value) and "\n" not in str(info.value)


def test_exclusiveness_on_mf_stops_the_run_before_training(cfg_factory):
    cfg = cfg_factory(["model=mf", "aux=[exclusiveness]", "data.dataset.n_users=50", "data.dataset.n_items=60",
                       "data.dataset.n_clusters=4"])
    with pytest.raises(ConfigError, match="exposes no vectors named 'item_anchor_weights'"):
        build(cfg)


SMALL = ["data.dataset.n_users=200", "data.dataset.n_items=120", "data.dataset.n_clusters=4", "data.batch_size=128",
         "model.embedding_dim=16", "optimizer.lr=0.02"]


@pytest.mark.parametrize(
    "model, extra",
    [
        ("csar", ["aux=[orthogonal]", "aux.orthogonal.source=prototypes"]),
        ("acf", ["aux=[exclusiveness,inclusiveness,orthogonal]", "aux.orthogonal.source=anchors"]),
    ],
)
@pytest.mark.parametrize("loss", ["nss", "csar"])
def test_models_compose_with_nss_and_csar_and_their_aux_terms(cfg_factory, model, extra, loss):
    cfg = cfg_factory([f"model={model}", f"loss={loss}", *SMALL, *extra])
    torch.manual_seed(0)
    datamodule, module = build(cfg)
    optimizer = module.configure_optimizers()
    module.train()
    batches = iter(datamodule.train_dataloader())
    totals = []
    for _ in range(5):
        step = module.objective(next(batches))
        optimizer.zero_grad()
        step.total.backward()
        optimizer.step()
        totals.append(float(step.total))
    assert all(math.isfinite(v) for v in totals)
    assert set(step.terms) == {loss, *module.aux.keys()}
    for name, term in module.aux.items():
        assert math.isfinite(float(step.terms[name]))
        assert all(torch.isfinite(v) for v in term.last_stats.values())
