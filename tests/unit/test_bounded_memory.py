"""Bounded memory for large catalogues (``loss.item_chunk``, ``eval.item_chunk``): the
chunked full-softmax cross-entropy and the chunked full-ranking evaluation give the values
of the plain paths (loss and gradients to float64 rounding; ranks and metrics exactly),
never score more than ``item_chunk`` items at once, and refuse what they cannot do with
one line."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from recsys.config import check_composes
from recsys.data.interactions import Interactions
from recsys.errors import ConfigError
from recsys.losses.ce import CE
from recsys.losses.catalogue import CatalogueScores, catalogue_cross_entropy
from recsys.metrics.chunked import rank_in_chunks
from recsys.metrics.evaluator import RankingEvaluator
from recsys.metrics.popularity import ItemPopularity
from recsys.metrics.ranking import target_ranks
from recsys.models.mf import MF
from recsys.models.neumf import NeuMF
from recsys.module import RecModule
from recsys.samplers.full import FullSampler
from recsys.samplers.uniform import UniformSampler

I = 53  # catalogue of the small cases: no chunk size below divides it
CHUNKS = [1, 7, 16, I - 1, I, 4 * I]


def dot(query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    return query @ items.T


# ---- training: full-softmax cross-entropy ---------------------------------------------
@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("chunk", CHUNKS)
def test_chunked_cross_entropy_and_gradients_equal_the_full_softmax(chunk, fused):
    """The generic path (model.score per chunk, recomputed under checkpoint) and the fused
    dot-product path (``dot=True``)."""
    g = torch.Generator().manual_seed(0)
    query = torch.randn(11, 6, generator=g, dtype=torch.float64, requires_grad=True)
    items = torch.randn(I, 6, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, I, (11,), generator=g)
    target[:3] = torch.tensor([0, I - 1, chunk % I])  # first, last and a chunk's first column
    want = F.cross_entropy(dot(query, items), target)
    want_grads = torch.autograd.grad(want, [query, items])
    got = catalogue_cross_entropy(CatalogueScores(query, items, target, dot, dot=fused), chunk)
    got_grads = torch.autograd.grad(got, [query, items])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_fused_chunked_cross_entropy_with_scores_far_apart():
    """The running log-sum-exp rescales earlier chunks when a later chunk holds a larger score."""
    g = torch.Generator().manual_seed(5)
    query = (30 * torch.randn(9, 6, generator=g, dtype=torch.float64)).requires_grad_()
    items = torch.randn(I, 6, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, I, (9,), generator=g)
    want = F.cross_entropy(dot(query, items), target)
    got = catalogue_cross_entropy(CatalogueScores(query, items, target, dot, dot=True), 7)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(got, [query, items]), torch.autograd.grad(want, [query, items])):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_ce_loss_with_item_chunk_equals_ce_on_the_whole_matrix():
    """The loss class: CatalogueScores with item_chunk, Scores without (the module's two paths)."""
    g = torch.Generator().manual_seed(1)
    query, items = torch.randn(9, 4, generator=g), torch.randn(I, 4, generator=g)
    target = torch.randint(0, I, (9,), generator=g)
    from recsys.losses.base import Scores

    neg = dot(query, items)
    plain = CE()(Scores(pos=neg.gather(1, target[:, None])[:, 0], neg=neg, pos_column=target))
    chunked = CE(item_chunk=10)(CatalogueScores(query, items, target, dot))
    torch.testing.assert_close(chunked, plain)


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_one_pass_cross_entropy_and_gradients_equal_the_full_softmax(scale):
    """``loss=ce``'s default path (scores, softmax and gradient in one buffer), also for
    scores far apart (scale 30: exp would overflow without the max shift)."""
    from recsys.losses.catalogue import whole_catalogue_cross_entropy

    g = torch.Generator().manual_seed(2)
    query = (scale * torch.randn(13, 6, generator=g, dtype=torch.float64)).requires_grad_()
    items = torch.randn(I, 6, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, I, (13,), generator=g)
    target[:2] = torch.tensor([0, I - 1])
    want = F.cross_entropy(dot(query, items), target)
    want_grads = torch.autograd.grad(want, [query, items])
    got = whole_catalogue_cross_entropy(CatalogueScores(query, items, target, dot, dot=True))
    got_grads = torch.autograd.grad(got, [query, items])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_one_pass_cross_entropy_runs_its_backward_once_and_other_scores_use_the_model():
    from recsys.losses.catalogue import whole_catalogue_cross_entropy

    query = torch.randn(5, 4, requires_grad=True)
    items, target = torch.randn(I, 4), torch.randint(0, I, (5,))
    loss = whole_catalogue_cross_entropy(CatalogueScores(query, items, target, dot, dot=True))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="runs its backward pass once"):
        loss.backward()
    seen: list[int] = []
    cosine = lambda q, v: F.normalize(q, dim=-1) @ F.normalize(v, dim=-1).T / 0.1  # noqa: E731
    got = whole_catalogue_cross_entropy(CatalogueScores(query, items, target, spy(cosine, seen), dot=False))
    torch.testing.assert_close(got, F.cross_entropy(cosine(query, items), target))
    assert seen == [I]  # not a dot product: the model's own score, all items at once


# ---- training: Poly-1 on the same two paths -------------------------------------------
def poly1_reference(query, items, target, epsilon: float):
    """Leng et al.'s Poly-1 written out: per-row CE on the materialized scores plus
    epsilon * (1 - p_target), averaged."""
    ce = F.cross_entropy(dot(query, items), target, reduction="none")  # [R]
    return (ce + epsilon * (1 - torch.exp(-ce))).mean()


@pytest.mark.parametrize("epsilon", [-0.7, 2.5])
@pytest.mark.parametrize("path", ["one_pass", "one_pass_model_score", "chunked", "chunked_model_score"])
def test_poly1_on_the_catalogue_paths_equals_the_formula_with_gradients(path, epsilon):
    """``loss=poly`` with ``sampler=full`` takes the catalogue paths of ``loss=ce``: the
    same value and gradients as the formula on materialized scores, for the one-pass
    buffer, the chunked pass and the model's own score (scale 8: exp would overflow
    without the max shift in float32 terms)."""
    from recsys.losses.poly import Poly1

    g = torch.Generator().manual_seed(3)
    query = (8 * torch.randn(13, 6, generator=g, dtype=torch.float64)).requires_grad_()
    items = torch.randn(I, 6, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, I, (13,), generator=g)
    target[:2] = torch.tensor([0, I - 1])
    want = poly1_reference(query, items, target, epsilon)
    want_grads = torch.autograd.grad(want, [query, items])
    loss = Poly1(epsilon, item_chunk=7 if path.startswith("chunked") else None)
    got = loss(CatalogueScores(query, items, target, dot, dot=not path.endswith("model_score")))
    got_grads = torch.autograd.grad(got, [query, items])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_poly1_takes_the_same_value_from_the_catalogue_and_from_scores():
    """The module's paths agree: CatalogueScores (sampler=full), Scores over the whole
    catalogue with the positive's column, and Scores with the positive apart."""
    from recsys.losses.base import Scores
    from recsys.losses.poly import Poly1

    g = torch.Generator().manual_seed(4)
    query, items = torch.randn(9, 4, generator=g), torch.randn(I, 4, generator=g)
    target = torch.randint(0, I, (9,), generator=g)
    neg = dot(query, items)  # [R, I]
    pos = neg.gather(1, target[:, None])[:, 0]  # [R]
    loss = Poly1(1.5)
    catalogue = loss(CatalogueScores(query, items, target, dot, dot=True))
    with_column = loss(Scores(pos=pos, neg=neg, pos_column=target))
    others = torch.ones_like(neg, dtype=torch.bool).scatter_(1, target[:, None], False)  # [R, I] the positive masked
    apart = loss(Scores(pos=pos, neg=neg, neg_mask=others))
    torch.testing.assert_close(catalogue, with_column)
    torch.testing.assert_close(apart, with_column)
    torch.testing.assert_close(Poly1(0.0)(Scores(pos=pos, neg=neg, pos_column=target)), CE()(Scores(pos=pos, neg=neg, pos_column=target)))


def test_module_hands_ce_the_catalogue_and_says_whether_scores_are_dot_products():
    """``loss=ce`` with ``sampler=full`` receives CatalogueScores; ``dot`` is set for MF
    and not for cosine scores or NeuMF's network (their own score runs)."""
    mf = MF(20, I, embedding_dim=6)
    cosine = MF(20, I, embedding_dim=6)
    cosine.set_scoring("cosine", 0.2)
    neumf = NeuMF(20, I, gmf_dim=4, mlp_layers=[8, 4])
    batch = {"user": torch.randint(0, 20, (8,)), "item": torch.randint(0, I, (8,))}
    for model, want in ((mf, True), (cosine, False), (neumf, False)):
        module = module_of(model, CE())
        enc = model.encode(batch)
        s = module.scores(enc, module.sampler.sample(enc.target, enc.user))
        assert isinstance(s, CatalogueScores) and s.dot is want


def spy(score, seen: list[int]):
    """``score`` that records how many items each call scores."""

    def wrapped(query, items):
        seen.append(items.shape[-2])
        return score(query, items)

    return wrapped


def module_of(model, loss, sampler=None) -> RecModule:
    return RecModule(model, loss, sampler or FullSampler(), partial(torch.optim.Adam, lr=1e-3), n_items=I)


@pytest.mark.parametrize("kind", ["dot", "cosine", "neumf"])
def test_module_objective_and_gradients_with_loss_item_chunk(kind):
    """Through RecModule.objective (float32): the same loss and parameter gradients with
    and without loss.item_chunk, for a dot product, cosine scores and NeuMF's network on
    pairs (its own score); no score call sees more than item_chunk items."""
    torch.manual_seed(0)
    if kind == "neumf":
        model = NeuMF(20, I, gmf_dim=4, mlp_layers=[8, 4], init_std=0.3)
    else:
        model = MF(20, I, embedding_dim=6, init_std=0.5)
        model.set_scoring(kind, 0.2)
    batch = {"user": torch.randint(0, 20, (16,)), "item": torch.randint(0, I, (16,))}
    results = []
    for loss in (CE(), CE(item_chunk=10)):
        module = module_of(model, loss)
        model.zero_grad()
        seen: list[int] = []
        model.score = spy(type(model).score.__get__(model), seen)
        total = module.objective(batch).total
        total.backward()
        del model.score
        results.append((total.detach(), [p.grad.clone() for p in model.parameters()], seen))
    (plain, plain_grads, _), (chunked, chunked_grads, seen) = results
    torch.testing.assert_close(chunked, plain, rtol=1e-6, atol=1e-7)  # float32
    for a, b in zip(chunked_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    if kind == "dot":  # the fused dot-product path scores the chunks itself
        assert seen == []
    else:
        assert max(seen) <= 10 and len(seen) == 2 * 6  # 6 chunks, each scored in forward and again in backward


def test_loss_item_chunk_refuses_sampled_negatives_and_bad_values():
    with pytest.raises(ConfigError, match=r"^loss.item_chunk chunks the whole-catalogue softmax, but the sampler is UniformSampler"):
        module_of(MF(4, I, 3), CE(item_chunk=8), UniformSampler())
    for bad in (0, -3, 2.5, True, "8"):
        with pytest.raises(ConfigError, match=r"^loss.item_chunk must be null \(no chunking\) or an integer >= 1"):
            CE(item_chunk=bad)
        with pytest.raises(ConfigError, match=r"^eval.item_chunk must be null"):
            RankingEvaluator([10], I, item_chunk=bad)


def test_losses_without_item_chunk_refuse_the_key_in_one_line():
    """csar needs the whole [R, I] matrix; its config has no item_chunk."""
    with pytest.raises(ConfigError, match=r"^loss.item_chunk is not in the config \(the options that have it: loss=ce, loss=poly\)"):
        check_composes(["loss=csar", "loss.item_chunk=8"])
    check_composes(["loss=ce", "loss.item_chunk=8", "eval.item_chunk=100"])
    check_composes(["loss=poly", "loss.item_chunk=8"])


# ---- evaluation: ranks, top-K lists and every metric ------------------------------------
def eval_case(seed: int, n_targets: int, ties: bool, b: int = 12, n_items: int = I, sampled: int = 0):
    """Scores (integers in [0, 5) when ``ties``), targets with padding and a repeated
    column, excluded items that are never targets, optional sampled negatives."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 5, (b, n_items), generator=g).float() if ties else torch.randn(b, n_items, generator=g)
    targets = torch.stack([torch.randperm(n_items, generator=g)[:n_targets] for _ in range(b)])  # [B, T] distinct
    targets[0, 1:] = -1  # one target
    targets[1, -1] = -1  # padding
    if n_targets > 2:
        targets[2, 1] = targets[2, 0]  # a column listed twice
    rows = torch.arange(b).repeat_interleave(6)
    items = torch.randint(0, n_items, (b * 6,), generator=g)
    keep = ~torch.isin(rows * n_items + items, (torch.arange(b)[:, None] * n_items + targets).flatten())
    batch = {"user": torch.arange(b), "target": targets, "exclude_row": rows[keep], "exclude_item": items[keep]}
    if sampled:
        batch[f"sampled{sampled}"] = torch.randint(0, n_items, (b, sampled), generator=g)
    return scores, batch


def columns(scores: torch.Tensor, seen: list[int] | None = None):
    def block(cols):
        out = scores[:, cols].clone()
        if seen is not None:
            seen.append(out.shape[1])
        return out

    return block


@pytest.mark.parametrize("n_targets", [1, 3, 20])  # 20: the binary-search path of target_ranks
@pytest.mark.parametrize("chunk", CHUNKS)
def test_chunked_ranks_equal_target_ranks_with_ties_and_exclusions(n_targets, chunk):
    scores, batch = eval_case(n_targets, n_targets, ties=True)
    plain = scores.clone()
    plain[batch["exclude_row"], batch["exclude_item"]] = float("-inf")
    want = target_ranks(plain, batch["target"])
    seen: list[int] = []
    got = rank_in_chunks(columns(scores, seen), I, batch, kmax=5, item_chunk=chunk).ranks
    assert torch.equal(got, want)
    assert max(seen) <= chunk


def popularity(n_items: int, seed: int = 3) -> ItemPopularity:
    g = torch.Generator().manual_seed(seed)
    user, item = torch.randint(0, 30, (400,), generator=g), torch.randint(0, n_items, (400,), generator=g) ** 2 % n_items
    return ItemPopularity.from_interactions(Interactions(user, item, torch.arange(400), 30, n_items).sorted())


def evaluate(scores, batches, chunk, ks=(3, 10)) -> tuple[dict[str, float], RankingEvaluator]:
    ev = RankingEvaluator(list(ks), scores.shape[1], item_chunk=chunk)
    ev.set_popularity(popularity(scores.shape[1]))
    for rows, batch in batches:
        ev.update_blocks(columns(scores[rows]), batch, "test")
    return ev.compute("test"), ev


def batches_of(scores, batch, size: int = 5):
    out = []
    for lo in range(0, scores.shape[0], size):
        rows = slice(lo, lo + size)
        keep = (batch["exclude_row"] >= lo) & (batch["exclude_row"] < lo + size)
        sub = {k: v[rows] for k, v in batch.items() if k not in ("exclude_row", "exclude_item")}
        sub["exclude_row"], sub["exclude_item"] = batch["exclude_row"][keep] - lo, batch["exclude_item"][keep]
        out.append((rows, sub))
    return out


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("n_targets", [1, 20])
def test_chunked_evaluator_gives_every_metric_of_the_plain_one(chunk, n_targets):
    """Continuous scores: ndcg, hr, recall, mrr, sampled metrics, coverage, gini, arp, aplt,
    novelty and the per-user table, all exactly equal."""
    scores, batch = eval_case(10 + n_targets, n_targets, ties=False, sampled=7)
    batches = batches_of(scores, batch)
    want, plain = evaluate(scores, batches, None)
    got, chunked = evaluate(scores, batches, chunk)
    assert got == want
    assert {"test/ndcg@10", "test_sampled7/ndcg@10", "test/coverage@3", "test/gini@10", "test/arp@3",
            "test/aplt@10", "test/novelty@3"} <= set(got)
    for name, values in plain.per_user_table().items():
        assert torch.equal(chunked.per_user_table()[name], values), name


@pytest.mark.parametrize("chunk", CHUNKS)
def test_with_ties_accuracy_is_exact_and_top_k_breaks_ties_by_item_id(chunk):
    """Integer scores tie a lot: accuracy and sampled metrics are still exactly the plain
    ones; the top-K lists hold the same scores, and their items are the lowest-id ones
    among ties (torch.topk on the whole row picks among ties in no specified order)."""
    scores, batch = eval_case(5, 3, ties=True, sampled=7)
    batches = batches_of(scores, batch)
    want, _ = evaluate(scores, batches, None)
    got, _ = evaluate(scores, batches, chunk)
    for name in want:
        if name.split("/")[1].split("@")[0] in ("ndcg", "hr", "recall", "mrr"):
            assert got[name] == want[name], name
    plain = scores.clone()
    plain[batch["exclude_row"], batch["exclude_item"]] = float("-inf")
    ranked = rank_in_chunks(columns(scores), I, batch, kmax=10, item_chunk=chunk)
    assert torch.equal(ranked.top_scores, plain.topk(10, dim=1).values)
    assert torch.equal(ranked.top, plain.sort(dim=1, descending=True, stable=True).indices[:, :10])


def test_non_finite_scores_are_counted_as_in_the_plain_path():
    scores, batch = eval_case(7, 2, ties=False)
    allowed = [i for i in range(I) if i not in batch["exclude_item"][batch["exclude_row"] == 3].tolist()]
    scores[3, allowed[0]] = float("nan")  # an allowed item: counted
    scores[4, batch["exclude_item"][batch["exclude_row"] == 4][0]] = float("inf")  # excluded: ignored
    scores[6, batch["target"][6, 0]] = float("-inf")  # a target: counted
    counts = []
    for chunk in (None, 7):
        ev = RankingEvaluator([10], I, item_chunk=chunk)
        ev.update_blocks(columns(scores), batch, "val")
        counts.append(ev.nonfinite_users)
    assert counts == [2, 2]


@pytest.mark.parametrize("model_kind", ["mf", "neumf"])
def test_module_evaluation_with_eval_item_chunk(model_kind):
    """RecModule's evaluation step with eval_item_chunk: the plain metrics, for a dot
    product and for NeuMF's own score (items scored by id for the targets' pass)."""
    torch.manual_seed(0)
    model = MF(30, I, embedding_dim=8) if model_kind == "mf" else NeuMF(30, I, gmf_dim=4, mlp_layers=[8, 4], init_std=0.3)
    _, batch = eval_case(8, 3, ties=False, b=30, sampled=5)
    metrics = []
    for chunk in (None, 10):
        module = RecModule(model, CE(), FullSampler(), partial(torch.optim.Adam), n_items=I, ks=[5, 10],
                           eval_item_chunk=chunk).eval()
        module.evaluator.reset()
        with torch.no_grad():
            module.test_step(batch, 0)
        metrics.append(module.evaluator.compute("test"))
    assert metrics[1] == metrics[0]


def test_bench_cases_run_on_a_small_catalogue():
    """make bench's cases (experiments/bench_bounded.py), in this process on 500 items."""
    from experiments.bench_bounded import case_eval, case_train

    for chunk in (None, 100):
        for figures in (case_train(64, 500, chunk, "cpu"), case_eval(300, 500, chunk, "cpu")):
            assert figures["s"] > 0 and set(figures) == {"s", "peak_mb"}


# ---- end to end: python -m recsys.run with both options ---------------------------------
FAST = ["+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2", "data.dataset.n_items=990"]


@pytest.mark.parametrize("model", ["mf", "sasrec"])
def test_run_with_both_options_writes_the_metrics_of_the_plain_run(tmp_path, model):
    """Synthetic data (990 items, chunks of 100 and 300 that do not divide it), loss=ce:
    eval.item_chunk alone gives the plain metrics.json exactly; with loss.item_chunk too,
    training differs by float rounding only, and the metrics agree to 1e-6."""
    from conftest import make_cfg

    from recsys.run import train

    overrides = [f"model={model}", "loss=ce", "model.embedding_dim=16", *FAST]
    if model == "sasrec":
        overrides += ["model.max_len=20", "data.batch_size=64"]
    runs = {}
    for name, extra in {"plain": [], "eval": ["eval.item_chunk=300"],
                        "both": ["eval.item_chunk=300", "loss.item_chunk=100"]}.items():
        train(make_cfg([*overrides, *extra], tmp_path / name))
        (path,) = (tmp_path / name).glob("**/metrics.json")
        runs[name] = json.loads(path.read_text())
    ranking = [k for k in runs["plain"] if not k.startswith("collapse/")]
    # metrics of the top-K lists differ where a user's K-th score is tied (recsys.metrics.chunked):
    # SASRec's 2,000 test users have one tie at K=20 in this run
    lists = [k for k in ranking if k.split("/")[-1].split("@")[0] in ("coverage", "gini", "arp", "aplt", "novelty")]
    exact = [k for k in ranking if k not in lists]
    assert {k: runs["eval"][k] for k in exact} == {k: runs["plain"][k] for k in exact}
    assert {k: pytest.approx(runs["eval"][k], rel=1e-3) for k in lists} == {k: runs["plain"][k] for k in lists}
    assert {k: pytest.approx(runs["both"][k], abs=1e-6) for k in exact} == {k: runs["plain"][k] for k in exact}
    assert {k: pytest.approx(runs["both"][k], rel=1e-3) for k in lists} == {k: runs["plain"][k] for k in lists}
    assert "test/ndcg@10" in ranking and "test/coverage@10" in ranking

