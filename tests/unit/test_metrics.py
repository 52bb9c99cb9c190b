"""Ranking metrics and the evaluator, checked against hand-computed values and against a
plain-Python re-computation (loops over items, no call into ``recsys.metrics``).

Rank rule under test: a user's targets take distinct positions, as in a real ordering; the
j-th best target (0-based, tied targets in listed order) ranks at
``j + 1 + #{allowed non-target items i : s_i >= s_t}``. Ties with non-targets are
pessimistic: a non-target item whose score *equals* a target's score is ranked above it.
With one target, ``rank(t) = #{allowed items i : s_i >= s_t}``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from recsys.data.datamodule import _without
from recsys.data.interactions import UserItems
from recsys.errors import TrainingError
from recsys.metrics.evaluator import RankingEvaluator
from recsys.metrics.ranking import metrics_from_ranks, target_ranks

NEG_INF = float("-inf")


# ---- independent reference ----------------------------------------------------------
def ref_ranks(scores: list[float], targets: list[int]) -> list[int]:
    """1-based ranks of one user's targets in a real ordering of the items, built by sorting:
    by score, a non-target before a target it ties with (pessimistic), tied targets in the
    order they are listed (each listing takes a place). ``-inf`` entries are excluded items
    and never count."""
    listed = set(targets)
    entries = [(-s, 0, 0) for i, s in enumerate(scores) if s != NEG_INF and i not in listed]
    entries += [(-scores[t], 1, pos) for pos, t in enumerate(targets)]
    order = sorted(entries)
    return [order.index((-scores[t], 1, pos)) + 1 for pos, t in enumerate(targets)]


def ref_user_metrics(ranks: list[int], ks) -> dict[str, float]:
    out = {}
    for k in ks:
        hits = [r for r in ranks if r <= k]
        dcg = sum(1.0 / math.log2(r + 1) for r in hits)
        idcg = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(ranks), k) + 1))
        out[f"ndcg@{k}"] = dcg / idcg
        out[f"hr@{k}"] = 1.0 if hits else 0.0
        out[f"recall@{k}"] = len(hits) / len(ranks)
    out["mrr"] = 1.0 / min(ranks)
    return out


def scores_with_ranked_targets(n_items: int, target_ranks_wanted: list[int], seed: int = 0):
    """One user's distinct scores (random order) and the items that sit at the given ranks."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n_items, generator=gen)  # order[r-1] is the item at rank r
    scores = torch.empty(n_items)
    scores[order] = torch.linspace(10.0, -10.0, n_items)  # strictly decreasing by rank
    targets = [int(order[r - 1]) for r in target_ranks_wanted]
    return scores.unsqueeze(0), torch.tensor([targets])


def metrics_of(scores: torch.Tensor, targets: torch.Tensor, ks) -> dict[str, float]:
    out = metrics_from_ranks(target_ranks(scores, targets), ks)
    return {name: float(v[0]) for name, v in out.items()}


# ---- hand-computed single-target cases ----------------------------------------------
def test_target_ranked_first_scores_one_everywhere():
    scores, targets = scores_with_ranked_targets(30, [1])
    m = metrics_of(scores, targets, [10])
    assert float(target_ranks(scores, targets)[0, 0]) == 1.0
    assert m["ndcg@10"] == pytest.approx(1.0)
    assert m["hr@10"] == 1.0
    assert m["recall@10"] == 1.0
    assert m["mrr"] == pytest.approx(1.0)


def test_target_ranked_third():
    scores, targets = scores_with_ranked_targets(30, [3], seed=1)
    m = metrics_of(scores, targets, [10])
    assert float(target_ranks(scores, targets)[0, 0]) == 3.0
    assert m["ndcg@10"] == pytest.approx(0.5)  # 1 / log2(4)
    assert m["hr@10"] == 1.0
    assert m["mrr"] == pytest.approx(1.0 / 3.0)


def test_target_ranked_eleventh_is_outside_top10_inside_top20():
    scores, targets = scores_with_ranked_targets(30, [11], seed=2)
    m = metrics_of(scores, targets, [10, 20])
    assert m["ndcg@10"] == 0.0
    assert m["hr@10"] == 0.0
    assert m["recall@10"] == 0.0
    assert m["hr@20"] == 1.0
    assert m["ndcg@20"] == pytest.approx(1.0 / math.log2(12))
    assert m["mrr"] == pytest.approx(1.0 / 11.0)


# ---- multi-target -------------------------------------------------------------------
def test_two_targets_at_ranks_1_and_4():
    scores, targets = scores_with_ranked_targets(12, [1, 4], seed=3)
    assert target_ranks(scores, targets).tolist() == [[1.0, 4.0]]
    m = metrics_of(scores, targets, [3, 5])
    idcg = 1.0 + 1.0 / math.log2(3)  # two targets, both cut-offs >= 2
    assert m["ndcg@3"] == pytest.approx(1.0 / idcg)
    assert m["recall@3"] == pytest.approx(0.5)
    assert m["hr@3"] == 1.0
    assert m["ndcg@5"] == pytest.approx((1.0 + 1.0 / math.log2(5)) / idcg)
    assert m["recall@5"] == 1.0
    assert m["hr@5"] == 1.0
    assert m["mrr"] == pytest.approx(1.0)


def test_ideal_dcg_is_capped_at_k_targets():
    # 3 targets at ranks 1, 2, 3 and K = 2: the ideal list has 2 hits, so ndcg@2 = 1.
    scores, targets = scores_with_ranked_targets(10, [1, 2, 3], seed=4)
    m = metrics_of(scores, targets, [2])
    assert m["ndcg@2"] == pytest.approx(1.0)
    assert m["recall@2"] == pytest.approx(2.0 / 3.0)


# ---- tie policy ---------------------------------------------------------------------
def test_pessimistic_ties_all_equal_scores_rank_target_last():
    """Pessimistic policy: with all scores equal every candidate ranks above the target,
    so its rank is the number of candidate (non-excluded) items."""
    scores = torch.zeros(2, 7)
    scores[1, [0, 5]] = NEG_INF  # two excluded items for user 1
    targets = torch.tensor([[3], [2]])
    assert target_ranks(scores, targets).tolist() == [[7.0], [5.0]]
    m = metrics_from_ranks(target_ranks(scores, targets), [5])
    assert m["hr@5"].tolist() == [0.0, 1.0]


def test_pessimistic_ties_target_tied_with_two_others_at_top_ranks_third():
    """Pessimistic policy: a target tied with two other items for the best score has rank 3."""
    scores = torch.tensor([[1.0, 5.0, 0.5, 5.0, 5.0, 2.0]])
    m = metrics_of(scores, torch.tensor([[3]]), [10])
    assert float(target_ranks(scores, torch.tensor([[3]]))[0, 0]) == 3.0
    assert m["mrr"] == pytest.approx(1.0 / 3.0)
    assert m["ndcg@10"] == pytest.approx(0.5)


# ---- several targets: distinct positions, as in a real ordering ----------------------
BOTH_PATHS = pytest.mark.parametrize("bisect_above", [16, 0], ids=["compare", "bisect"])


@BOTH_PATHS
def test_two_tied_targets_take_ranks_1_and_2(bisect_above):
    """Scores [0, 0], targets {0, 1}: the old rule ranked both at 2 (hr@1 = 0, mrr 0.5)."""
    ranks = target_ranks(torch.zeros(1, 2), torch.tensor([[0, 1]]), bisect_above=bisect_above)
    assert ranks.tolist() == [[1.0, 2.0]]
    m = {name: float(v[0]) for name, v in metrics_from_ranks(ranks, [1]).items()}
    assert m == {"ndcg@1": 1.0, "hr@1": 1.0, "recall@1": 0.5, "mrr": 1.0}


@BOTH_PATHS
def test_two_tied_targets_above_a_non_target_give_ndcg_1(bisect_above):
    """Scores [1, 1, 0], targets {0, 1}: ndcg@2 is 1 (the old rule gave 0.774)."""
    ranks = target_ranks(torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([[0, 1]]), bisect_above=bisect_above)
    assert ranks.tolist() == [[1.0, 2.0]]
    m = metrics_from_ranks(ranks, [1, 2])
    assert float(m["ndcg@2"][0]) == 1.0
    assert float(m["recall@2"][0]) == 1.0
    assert float(m["ndcg@1"][0]) == 1.0


@BOTH_PATHS
def test_tied_targets_and_non_targets_mixed(bisect_above):
    """Items 0..6 with scores [5, 3, 3, 3, 1, 3, 3]; targets 1, 3, 6 (score 3) and 4 (score 1).
    Non-targets at or above 3: items 0, 2, 5 (three). The score-3 targets take positions
    0, 1, 2 among the targets -> ranks 4, 5, 6; target 4 is the 4th best target with the 3
    non-targets above it -> rank 3 + 1 + 3 = 7."""
    scores = torch.tensor([[5.0, 3.0, 3.0, 3.0, 1.0, 3.0, 3.0]])
    ranks = target_ranks(scores, torch.tensor([[4, 1, 3, 6]]), bisect_above=bisect_above)
    assert ranks.tolist() == [[7.0, 4.0, 5.0, 6.0]]
    m = {name: float(v[0]) for name, v in metrics_from_ranks(ranks, [5]).items()}
    idcg = sum(1.0 / math.log2(i + 1) for i in range(1, 5))
    assert m["ndcg@5"] == pytest.approx((1.0 / math.log2(5) + 1.0 / math.log2(6)) / idcg)
    assert m["recall@5"] == 0.5
    assert m["mrr"] == pytest.approx(0.25)


@BOTH_PATHS
def test_tied_targets_rank_in_listed_order(bisect_above):
    scores = torch.tensor([[2.0, 7.0, 2.0, 7.0, 9.0]])
    ranks = target_ranks(scores, torch.tensor([[3, 1, 2]]), bisect_above=bisect_above)
    assert ranks.tolist() == [[2.0, 3.0, 5.0]]  # item 4 (non-target, 9) above; 0 ties with target 2


@BOTH_PATHS
def test_several_targets_with_padding_and_exclusions(bisect_above):
    """Row 0: all scores equal, 2 items excluded, 3 targets among 8 items -> the 3 non-targets
    still allowed are above every target (pessimistic): ranks 4, 5, 6. Row 1: one target,
    padding after it, tied with one item."""
    scores = torch.zeros(2, 8)
    scores[0, [6, 7]] = NEG_INF
    scores[1] = torch.tensor([0.0, 4.0, 3.0, 3.0, 2.0, 1.0, 0.5, 0.2])
    targets = torch.tensor([[5, 0, 2], [3, -1, -1]])
    ranks = target_ranks(scores, targets, bisect_above=bisect_above)
    assert ranks[0].tolist() == [4.0, 5.0, 6.0]
    assert ranks[1, 0] == 3.0 and torch.isinf(ranks[1, 1:]).all()
    m = metrics_from_ranks(ranks, [5])
    assert m["recall@5"].tolist() == pytest.approx([2 / 3, 1.0])
    assert m["mrr"].tolist() == pytest.approx([0.25, 1 / 3])


@BOTH_PATHS
def test_a_target_listed_twice_takes_two_positions(bisect_above):
    """A duplicated target column can never rank 0 (infinite NDCG) nor make NDCG exceed 1."""
    ranks = target_ranks(torch.tensor([[9.0, 1.0, 5.0]]), torch.tensor([[0, 0, 2]]), bisect_above=bisect_above)
    assert ranks.tolist() == [[1.0, 2.0, 3.0]]
    assert float(metrics_from_ranks(ranks, [3])["ndcg@3"][0]) == pytest.approx(1.0)


def tie_heavy_case(n_users: int, n_items: int, max_targets: int, seed: int):
    """Integer scores in 0..4 (many ties), 1..max_targets targets per user (some listed twice),
    right padding, a few excluded items (``-inf``)."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=(n_users, n_items)).astype(np.float32)
    targets = np.full((n_users, max_targets), -1, dtype=np.int64)
    for u in range(n_users):
        n_t = int(rng.integers(1, max_targets + 1))
        chosen = rng.choice(n_items, size=n_t + 4, replace=False)
        targets[u, :n_t] = chosen[:n_t]
        if n_t > 2 and u % 5 == 0:
            targets[u, n_t - 1] = targets[u, 0]  # a column listed twice
        scores[u, chosen[n_t:][: int(rng.integers(0, 5))]] = NEG_INF
    return torch.from_numpy(scores), torch.from_numpy(targets)


@pytest.mark.parametrize("max_targets", [3, 24])
def test_both_rank_paths_equal_a_sort_based_reference_with_many_ties(max_targets):
    scores, targets = tie_heavy_case(60, 40, max_targets, seed=max_targets)
    compared = target_ranks(scores, targets, chunk=97, bisect_above=max_targets)  # comparison path
    bisected = target_ranks(scores, targets, bisect_above=0)  # binary-search path
    assert torch.equal(compared, bisected)
    for u in range(scores.shape[0]):
        real = [int(t) for t in targets[u] if t >= 0]
        want = ref_ranks(scores[u].tolist(), real)
        assert compared[u, : len(real)].tolist() == [float(r) for r in want], u
        assert torch.isinf(compared[u, len(real) :]).all()
    ndcg = metrics_from_ranks(compared, [1, 5, 10, 40])
    for k in (1, 5, 10, 40):
        assert float(ndcg[f"ndcg@{k}"].max()) <= 1.0 + 1e-6


def test_ndcg_never_exceeds_one_and_ranks_are_distinct():
    """Constant and near-constant scores are the worst case for ties: the ranks of a user's
    targets stay distinct and >= 1, so NDCG <= 1 for every K."""
    for seed, n_values in enumerate((1, 2, 3)):
        rng = np.random.default_rng(seed)
        scores = torch.from_numpy(rng.integers(0, n_values, size=(50, 30)).astype(np.float32))
        targets = torch.from_numpy(np.stack([rng.permutation(30)[:20] for _ in range(50)]))
        targets[:, 12:][torch.rand(50, 8) < 0.5] = -1  # some padding (not necessarily at the end)
        for bisect_above in (16, 0):
            ranks = target_ranks(scores, targets, bisect_above=bisect_above)
            for u in range(50):
                real = ranks[u][torch.isfinite(ranks[u])]
                assert real.min() >= 1 and real.unique().numel() == real.numel()
            for name, values in metrics_from_ranks(ranks, [1, 2, 5, 10, 30]).items():
                if name.startswith("ndcg"):
                    assert float(values.max()) <= 1.0 + 1e-6, name


# ---- non-finite scores ----------------------------------------------------------------
@BOTH_PATHS
def test_nan_target_score_never_gets_a_good_rank(bisect_above):
    """A NaN target used to get rank 0 (hr = 1, ndcg = mrr = inf)."""
    scores = torch.tensor([[float("nan"), 1.0, 2.0, 0.5]])
    ranks = target_ranks(scores, torch.tensor([[0, 3]]), bisect_above=bisect_above)
    assert math.isnan(float(ranks[0, 0]))
    m = metrics_from_ranks(ranks, [1])
    assert float(m["hr@1"][0]) == 0.0
    assert math.isnan(float(m["ndcg@1"][0])) and math.isnan(float(m["mrr"][0]))


# ---- exclusion and padding ----------------------------------------------------------
def test_excluded_items_never_count():
    scores = torch.tensor([[9.0, 8.0, 7.0, 1.0, 0.0]])
    targets = torch.tensor([[3]])
    assert float(target_ranks(scores, targets)[0, 0]) == 4.0
    excluded = scores.clone()
    excluded[0, [0, 2]] = NEG_INF
    assert float(target_ranks(excluded, targets)[0, 0]) == 2.0


def test_padding_targets_are_ignored():
    scores, tgt = scores_with_ranked_targets(20, [2, 6], seed=5)
    padded = torch.cat([tgt, torch.full((1, 3), -1)], 1)  # [1, 5]
    ranks = target_ranks(scores, padded)
    assert ranks[0, :2].tolist() == [2.0, 6.0]
    assert torch.isinf(ranks[0, 2:]).all()
    m_pad = metrics_from_ranks(ranks, [5, 10])
    m_ref = metrics_from_ranks(target_ranks(scores, tgt), [5, 10])
    assert m_pad.keys() == m_ref.keys()
    for name in m_ref:
        assert_close(m_pad[name], m_ref[name])
    assert float(m_pad["recall@5"][0]) == pytest.approx(0.5)  # 1 hit of 2 real targets


# ---- random inputs against the loop reference ----------------------------------------
def random_eval_case(n_users: int, n_items: int, seed: int, ties: bool):
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values -> many ties
        scores = rng.integers(0, 6, size=(n_users, n_items)).astype(np.float32)
    else:
        scores = rng.standard_normal((n_users, n_items)).astype(np.float32)
    targets = np.full((n_users, 4), -1, dtype=np.int64)
    for u in range(n_users):
        n_t = int(rng.integers(1, 5))
        chosen = rng.choice(n_items, size=n_t + 3, replace=False)
        targets[u, :n_t] = chosen[:n_t]
        excl = chosen[n_t:][: int(rng.integers(0, 4))]
        scores[u, excl] = NEG_INF
    return scores, targets


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("chunk, bisect_above", [(1, 16), (50, 16), (1 << 24, 16), (1 << 24, 0)])
def test_ranks_and_metrics_match_loop_reference(ties, chunk, bisect_above):
    """Both rank paths: compare with the row, and binary search among the targets (bisect_above=0)."""
    ks = [1, 3, 10]
    scores, targets = random_eval_case(40, 25, seed=7 + int(ties), ties=ties)
    ranks = target_ranks(torch.from_numpy(scores), torch.from_numpy(targets), chunk=chunk, bisect_above=bisect_above)
    got = metrics_from_ranks(ranks, ks)
    for u in range(scores.shape[0]):
        row = scores[u].tolist()
        real = [int(t) for t in targets[u] if t >= 0]
        want_ranks = ref_ranks(row, real)
        assert ranks[u, : len(real)].tolist() == [float(r) for r in want_ranks]
        assert torch.isinf(ranks[u, len(real) :]).all()
        want = ref_user_metrics(want_ranks, ks)
        for name, value in want.items():
            assert float(got[name][u]) == pytest.approx(value, abs=1e-6), (u, name)


# ---- the evaluator ------------------------------------------------------------------
def make_eval_data(n_users=23, n_items=40, seed=11, multi=True):
    """Random distinct scores, CSR targets (1..4 per user, or 1) and CSR exclusions."""
    rng = np.random.default_rng(seed)
    scores = torch.from_numpy(rng.permutation(n_users * n_items).reshape(n_users, n_items).astype(np.float32))
    t_user, t_item, e_user, e_item = [], [], [], []
    for u in range(n_users):
        n_t = int(rng.integers(1, 5)) if multi else 1
        chosen = rng.choice(n_items, size=n_t + 6, replace=False)
        t_user += [u] * n_t
        t_item += chosen[:n_t].tolist()
        n_e = int(rng.integers(0, 7))
        e_user += [u] * n_e
        e_item += chosen[n_t : n_t + n_e].tolist()
    targets = UserItems.from_pairs(torch.tensor(t_user), torch.tensor(t_item), n_users)
    exclude = UserItems.from_pairs(torch.tensor(e_user, dtype=torch.long), torch.tensor(e_item, dtype=torch.long), n_users)
    return scores, targets, exclude


def eval_batch(users, targets: UserItems, exclude: UserItems, sampled: dict[str, torch.Tensor] | None = None):
    """A batch shaped like ``RecDataModule.eval_batch``."""
    batch = {"user": users, "target": targets.padded(users)}
    batch["exclude_row"], batch["exclude_item"] = exclude.rows(users)
    for key, table in (sampled or {}).items():
        batch[key] = table[users]
    return batch


def run_evaluator(scores, targets, exclude, ks, batch_size, prefix="test", sampled=None):
    ev = RankingEvaluator(ks, scores.shape[1])
    users = torch.arange(scores.shape[0])
    for lo in range(0, users.numel(), batch_size):
        u = users[lo : lo + batch_size]
        # the evaluator writes -inf into the scores it is given; hand it a copy
        ev.update(scores[u].clone(), eval_batch(u, targets, exclude, sampled), prefix)
    return ev


def reference_full(scores, targets: UserItems, exclude: UserItems, ks):
    per_user = []
    top_union = {k: set() for k in ks}
    for u in range(scores.shape[0]):
        row = scores[u].tolist()
        for i in exclude.items[exclude.indptr[u] : exclude.indptr[u + 1]].tolist():
            row[i] = NEG_INF
        tg = targets.items[targets.indptr[u] : targets.indptr[u + 1]].tolist()
        per_user.append(ref_user_metrics(ref_ranks(row, tg), ks))
        allowed = sorted((i for i in range(len(row)) if row[i] != NEG_INF), key=lambda i: -row[i])
        for k in ks:
            top_union[k].update(allowed[:k])
    means = {name: float(np.mean([m[name] for m in per_user])) for name in per_user[0]}
    coverage = {k: len(top_union[k]) / scores.shape[1] for k in ks}
    return means, coverage


def test_evaluator_matches_reference_and_is_batch_size_invariant():
    ks = [1, 5, 10]
    scores, targets, exclude = make_eval_data()
    results = [run_evaluator(scores, targets, exclude, ks, bs).compute("test") for bs in (1, 7, scores.shape[0])]
    for other in results[1:]:
        assert other.keys() == results[0].keys()
        for name in results[0]:
            assert other[name] == pytest.approx(results[0][name], abs=1e-6), name
    means, coverage = reference_full(scores, targets, exclude, ks)
    got = results[0]
    for name, value in means.items():
        assert got[f"test/{name}"] == pytest.approx(value, abs=1e-6), name
    for k in ks:
        assert got[f"test/coverage@{k}"] == pytest.approx(coverage[k], abs=1e-6)
    catalogue = {f"test/{m}@{k}" for m in ("coverage", "gini") for k in ks}  # per-user popularity metrics need setup
    assert set(got) == {f"test/{n}" for n in means} | catalogue


def test_evaluator_per_user_table_follows_users():
    scores, targets, exclude = make_eval_data(n_users=9)
    ev = run_evaluator(scores, targets, exclude, [5], batch_size=4)
    table = ev.per_user_table()
    assert table["user"].tolist() == list(range(9))
    for u in range(9):
        row = scores[u].tolist()
        for i in exclude.items[exclude.indptr[u] : exclude.indptr[u + 1]].tolist():
            row[i] = NEG_INF
        tg = targets.items[targets.indptr[u] : targets.indptr[u + 1]].tolist()
        want = ref_user_metrics(ref_ranks(row, tg), [5])
        assert float(table["test/ndcg@5"][u]) == pytest.approx(want["ndcg@5"], abs=1e-6)


def test_evaluator_exclusion_removes_higher_scored_items():
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])
    targets = UserItems.from_pairs(torch.tensor([0]), torch.tensor([3]), 1)
    exclude = UserItems.from_pairs(torch.tensor([0, 0]), torch.tensor([0, 2]), 1)
    got = run_evaluator(scores, targets, exclude, [2], batch_size=1, prefix="val").compute("val")
    assert got["val/hr@2"] == 1.0  # rank 2 after removing items 0 and 2 (rank 4 before)
    assert got["val/mrr"] == pytest.approx(0.5)
    assert got["val/coverage@2"] == pytest.approx(2 / 5)  # items 1 and 3


def test_coverage_never_counts_excluded_items():
    """A user with fewer allowed items than K: coverage@K must count only the allowed items
    (excluded items sit at -inf and are not recommended)."""
    scores = torch.arange(6, 0, -1).float().unsqueeze(0)  # [1, 6]
    targets = UserItems.from_pairs(torch.tensor([0]), torch.tensor([5]), 1)
    exclude = UserItems.from_pairs(torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 2, 3]), 1)
    got = run_evaluator(scores, targets, exclude, [3], batch_size=1).compute("test")
    assert got["test/coverage@3"] == pytest.approx(2 / 6)  # only items 4 and 5 are allowed


def test_sampled_metrics_rank_target_among_its_negatives_only():
    ks = [1, 3, 5]
    n_users, n_items = 30, 50
    scores, targets, exclude = make_eval_data(n_users, n_items, seed=13, multi=False)
    tgt = targets.items  # one per user
    rng = np.random.default_rng(0)  # 5 negatives per user (with replacement), never the target
    negatives = torch.tensor(
        [rng.choice([i for i in range(n_items) if i != int(tgt[u])], size=5).tolist() for u in range(n_users)]
    )
    sampled = {"sampled5": negatives}
    results = [
        run_evaluator(scores, targets, exclude, ks, bs, sampled=sampled).compute("test") for bs in (1, 7, n_users)
    ]
    for other in results[1:]:
        for name in results[0]:
            assert other[name] == pytest.approx(results[0][name], abs=1e-6), name
    got = results[0]
    per_user = []
    for u in range(n_users):
        t = int(tgt[u])
        s_t = float(scores[u, t])
        rank = 1 + sum(1 for j in negatives[u].tolist() if float(scores[u, j]) >= s_t)
        per_user.append(ref_user_metrics([rank], ks))
    for name in per_user[0]:
        want = float(np.mean([m[name] for m in per_user]))
        assert got[f"test_sampled5/{name}"] == pytest.approx(want, abs=1e-6), name
    # the full-ranking metrics are still there, under their own names
    means, _ = reference_full(scores, targets, exclude, ks)
    for name, value in means.items():
        assert got[f"test/{name}"] == pytest.approx(value, abs=1e-6), name
    sampled_names = {n for n in got if n.startswith("test_sampled5/")}
    full_names = {n for n in got if n.startswith("test/")}
    assert sampled_names and full_names and not sampled_names & full_names
    assert {n.split("/", 1)[1] for n in sampled_names} == set(means)  # no coverage for sampled
    assert got["test_sampled5/hr@1"] != got["test/hr@1"]


def test_sampled_metrics_handcomputed():
    # item scores 0..9 = item id; target 4; negatives 9, 2, 1, 7, 0; item 9 excluded.
    scores = torch.arange(10).float().unsqueeze(0)
    targets = UserItems.from_pairs(torch.tensor([0]), torch.tensor([4]), 1)
    exclude = UserItems.from_pairs(torch.tensor([0]), torch.tensor([9]), 1)
    sampled = {"sampled5": torch.tensor([[9, 2, 1, 7, 0]])}
    got = run_evaluator(scores, targets, exclude, [2, 3], 1, prefix="val", sampled=sampled).compute("val")
    # sampled: candidates {4, 9, 2, 1, 7, 0} -> target rank 3 (9 and 7 above it); exclusion
    # does not apply to the sampled candidates (negatives come from outside the history)
    assert got["val_sampled5/hr@2"] == 0.0
    assert got["val_sampled5/hr@3"] == 1.0
    assert got["val_sampled5/mrr"] == pytest.approx(1 / 3)
    # full: 9 excluded -> items 8, 7, 6, 5 above the target -> rank 5
    assert got["val/mrr"] == pytest.approx(1 / 5)
    assert got["val/hr@3"] == 0.0


def test_sampled_metrics_give_tied_targets_distinct_positions():
    """Two targets (items 0, 1) tied at 5 with one sampled negative (item 3) also at 5 and
    one (item 2) below: the targets rank 2 and 3 among the 4 sampled candidates."""
    scores = torch.tensor([[5.0, 5.0, 1.0, 5.0, 9.0]])
    targets = UserItems.from_pairs(torch.tensor([0, 0]), torch.tensor([0, 1]), 1)
    exclude = UserItems.from_pairs(torch.tensor([0]), torch.tensor([4]), 1)
    sampled = {"sampled2": torch.tensor([[3, 2]])}
    got = run_evaluator(scores, targets, exclude, [1, 2, 3], 1, prefix="val", sampled=sampled).compute("val")
    assert got["val_sampled2/mrr"] == pytest.approx(0.5)
    assert got["val_sampled2/recall@2"] == pytest.approx(0.5)
    assert got["val_sampled2/recall@3"] == 1.0
    idcg = 1.0 + 1.0 / math.log2(3)
    assert got["val_sampled2/ndcg@3"] == pytest.approx((1.0 / math.log2(3) + 0.5) / idcg)
    # full ranking: item 4 excluded, item 3 ties with both targets -> ranks 2 and 3 again
    assert got["val/ndcg@3"] == pytest.approx(got["val_sampled2/ndcg@3"])


# ---- non-finite scores are counted by user and stop the stage ---------------------------
def nonfinite_case():
    """Six users, 8 items; users 0, 1, 2 and 4 have a non-finite candidate score, user 3
    only on an excluded item (never ranked), user 5 none."""
    nan, inf = float("nan"), float("inf")
    scores = torch.arange(48, dtype=torch.float32).reshape(6, 8)
    scores[0, 1] = nan  # the target
    scores[1, 6] = inf  # another candidate
    scores[2, 7] = -inf  # -inf from the model, not from an exclusion
    scores[3, 5] = nan  # excluded below
    scores[4, [2, 3, 4]] = nan  # counted once
    targets = UserItems.from_pairs(torch.arange(6), torch.ones(6, dtype=torch.long), 6)
    exclude = UserItems.from_pairs(torch.tensor([3, 3, 4]), torch.tensor([5, 0, 0]), 6)
    return scores, targets, exclude


def test_nonfinite_scores_are_counted_by_user_over_the_stage():
    scores, targets, exclude = nonfinite_case()
    ev = run_evaluator(scores, targets, exclude, [5], batch_size=4, prefix="val")  # batches of 4 and 2
    assert ev.nonfinite_users == 4 and ev.n_users == 6
    with pytest.raises(TrainingError, match=r"^val scores are NaN or infinite for 4 of 6 users at epoch 3,") as info:
        ev.check_finite("val", epoch=3)
    assert "\n" not in str(info.value)
    with pytest.raises(TrainingError, match="for 4 of 6 users"):
        ev.compute("val")  # never a metric from these scores


def test_scores_that_are_not_finite_only_on_excluded_items_are_fine():
    scores, targets, exclude = nonfinite_case()
    ev = RankingEvaluator([5], 8)
    ev.update(scores[3:4].clone(), eval_batch(torch.tensor([3]), targets, exclude), "test")  # user 3 only
    ev.check_finite("test", epoch=0)
    assert ev.nonfinite_users == 0
    assert ev.compute("test")["test/mrr"] == pytest.approx(1 / 6)  # items 2, 3, 4, 6, 7 above the target


def test_a_nonfinite_sampled_negative_is_counted():
    """A sampled negative is a candidate of the sampled metrics even where full ranking
    excludes it."""
    scores = torch.tensor([[3.0, 1.0, float("nan"), 0.0]])
    targets = UserItems.from_pairs(torch.tensor([0]), torch.tensor([1]), 1)
    exclude = UserItems.from_pairs(torch.tensor([0]), torch.tensor([2]), 1)
    sampled = {"sampled2": torch.tensor([[2, 3]])}
    ev = run_evaluator(scores, targets, exclude, [1], 1, prefix="test", sampled=sampled)
    assert ev.nonfinite_users == 1
    with pytest.raises(TrainingError, match="^test scores are NaN or infinite for 1 of 1 users at epoch 2,"):
        ev.check_finite("test", epoch=2)


# ---- targets are never excluded -------------------------------------------------------
def test_without_removes_only_each_users_own_targets():
    # user 0 history [1, 2, 3], target 2 (a repeat); user 1 history [2, 4], target 3;
    # user 2 history [0], no target.
    exclude = UserItems.from_pairs(torch.tensor([0, 0, 0, 1, 1, 2]), torch.tensor([1, 2, 3, 2, 4, 0]), 3)
    targets = UserItems.from_pairs(torch.tensor([0, 1]), torch.tensor([2, 3]), 3)
    out = _without(exclude, targets, n_items=5)
    rows = [sorted(out.items[out.indptr[u] : out.indptr[u + 1]].tolist()) for u in range(3)]
    # user 1 keeps item 2 excluded (it is user 0's target, not theirs); user 0 keeps 3 (user 1's target)
    assert rows == [[1, 3], [2, 4], [0]]


def test_without_random_against_set_reference():
    rng = np.random.default_rng(5)
    n_users, n_items = 15, 12
    e_pairs = [(u, int(i)) for u in range(n_users) for i in rng.choice(n_items, size=int(rng.integers(0, 8)), replace=False)]
    t_pairs = [(u, int(i)) for u in range(n_users) for i in rng.choice(n_items, size=int(rng.integers(0, 4)), replace=False)]
    exclude = UserItems.from_pairs(torch.tensor([p[0] for p in e_pairs]), torch.tensor([p[1] for p in e_pairs]), n_users)
    targets = UserItems.from_pairs(torch.tensor([p[0] for p in t_pairs]), torch.tensor([p[1] for p in t_pairs]), n_users)
    out = _without(exclude, targets, n_items)
    tset = set(t_pairs)
    for u in range(n_users):
        want = sorted(i for (v, i) in e_pairs if v == u and (u, i) not in tset)
        assert sorted(out.items[out.indptr[u] : out.indptr[u + 1]].tolist()) == want


class _TinyDataset:
    """A stand-in dataset reader: users re-consume items, so targets repeat history items."""

    name = "tiny"

    def load(self, data_dir):
        from recsys.data.interactions import Interactions, RawData

        seqs = {0: [0, 1, 2, 1, 3, 1], 1: [4, 5, 4, 4], 2: [2, 3, 5, 6, 0, 2, 6], 3: [1, 2]}
        user = [u for u, s in seqs.items() for _ in s]
        item = [i for s in seqs.values() for i in s]
        time = [t for s in seqs.values() for t in range(len(s))]
        inter = Interactions(torch.tensor(user), torch.tensor(item), torch.tensor(time), n_users=4, n_items=8)
        return RawData(interactions=inter)


def test_datamodule_eval_batches_never_exclude_own_targets():
    from recsys.data.datamodule import RecDataModule
    from recsys.data.splits import LeaveOneOut
    from recsys.data.views import PairView

    dm = RecDataModule(_TinyDataset(), LeaveOneOut(), data_dir="/nonexistent", sampled_eval=[1])
    split = dm.prepare()
    dm.attach(PairView(split))
    history = {u: set() for u in range(4)}
    for u, i in zip(split.train.user.tolist(), split.train.item.tolist()):
        history[u].add(i)
    for stage, tg in (("val", split.valid), ("test", split.test)):
        users = tg.users_with_items()
        assert users.tolist() == [0, 1, 2]  # user 3 has 2 events: no targets
        batch = dm.eval_batch(users, stage)
        for r, u in enumerate(users.tolist()):
            target = set(batch["target"][r][batch["target"][r] >= 0].tolist())
            excluded = set(batch["exclude_item"][batch["exclude_row"] == r].tolist())
            want = set(history[u])
            if stage == "test":
                want |= set(split.valid.items[split.valid.indptr[u] : split.valid.indptr[u + 1]].tolist())
            assert excluded == want - target, (stage, u)
            # sampled negatives avoid history and both targets
            held = history[u] | {int(split.valid.items[split.valid.indptr[u]]), int(split.test.items[split.test.indptr[u]])}
            assert not set(batch["sampled1"][r].tolist()) & held
    # user 0: test target 1 is also a training item, and stays rankable
    assert int(split.test.items[split.test.indptr[0]]) == 1 and 1 in history[0]



def test_datamodule_validates_only_the_valid_users_and_tests_with_the_held_out_items_in_the_input():
    """``split.valid_users=2``: validation batches cover the 2 drawn users only; every
    user's second-to-last item stays out of training, is excluded from its test ranking and
    ends its test input (the gSASRec files' protocol)."""
    from recsys.data.datamodule import RecDataModule
    from recsys.data.splits import LeaveOneOut
    from recsys.data.views import SequenceView

    dm = RecDataModule(_TinyDataset(), LeaveOneOut(valid_users=2, seed=1), data_dir="/nonexistent", eval_batch_size=1)
    split = dm.prepare()
    dm.attach(SequenceView(split, max_len=5, pad=8))
    chosen = split.validated_users().tolist()
    assert len(chosen) == 2 and set(chosen) <= {0, 1, 2}  # user 3 has 2 events: never validated
    assert torch.cat([batch["user"] for batch in dm.val_dataloader()]).tolist() == chosen
    assert torch.cat([batch["user"] for batch in dm.test_dataloader()]).tolist() == [0, 1, 2]
    seqs = {0: [0, 1, 2, 1, 3, 1], 1: [4, 5, 4, 4], 2: [2, 3, 5, 6, 0, 2, 6]}
    test = dm.eval_batch(torch.tensor([0, 1, 2]), "test")
    for r, (u, s) in enumerate(seqs.items()):
        assert int((split.train.user == u).sum()) == len(s) - 2  # held out of training, validated or not
        assert test["input"][r][test["input"][r] != 8].tolist() == s[:-1][-5:]  # ends with the second-to-last
        excluded = set(test["exclude_item"][test["exclude_row"] == r].tolist())
        assert s[-2] in excluded or s[-2] == s[-1]  # never ranked, unless it is the test target itself
