"""Popularity-bias and beyond-accuracy metrics (ARP, APLT, novelty, Gini of exposure):
hand-computed cases, edge values, a plain-Python re-computation on random data (loops, no
call into ``recsys.metrics.popularity``) and batching invariance.

The hand-computed catalogue (5 items, 4 training users, 20 training interactions):

    item              0     1     2     3     4
    interactions      3     8     1     0     8
    distinct users    2     4     1     0     3

Short head at share 0.2 (4 interactions): items by count, equal counts by id, are
1 (8), 4 (8), 0 (3), 2 (1), 3 (0); item 1 has 0 before it (< 4) and is the head; item 4
has 8 before it, so it is in the long tail although it ties with item 1.
Self-information log2((U + 1) / (u_i + 1)) = log2(5 / (u_i + 1)):
0.736966, 0, 1.321928, 2.321928, 0.321928.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recsys.data.interactions import Interactions, SplitData, UserItems
from recsys.errors import ConfigError
from recsys.metrics.evaluator import RankingEvaluator
from recsys.metrics.popularity import ItemPopularity, gini, short_head

# (user, item) training events of the table above, repeats included
EVENTS = [(0, 0), (0, 0), (1, 0)] + [(u, 1) for u in range(4) for _ in range(2)] + [(2, 2)]
EVENTS += [(0, 4)] * 3 + [(1, 4)] * 3 + [(3, 4)] * 2
# three evaluated users' full rankings, best first (scores 5, 4, 3, 2, 1 in this order)
LISTS = [[1, 4, 0, 2, 3], [2, 3, 1, 0, 4], [4, 0, 2, 1, 3]]


def train_of(events: list[tuple[int, int]], n_users: int, n_items: int) -> Interactions:
    user = torch.tensor([u for u, _ in events])
    item = torch.tensor([i for _, i in events])
    return Interactions(user, item, torch.arange(len(events)), n_users, n_items).sorted()


def scores_of(lists: list[list[int]], n_items: int) -> torch.Tensor:
    scores = torch.empty(len(lists), n_items)
    for u, ranking in enumerate(lists):
        scores[u, ranking] = torch.arange(n_items, 0, -1).float()
    return scores


def batch_of(users: torch.Tensor, n_users: int, exclude: UserItems | None = None) -> dict[str, torch.Tensor]:
    """An evaluation batch; every user's target is item 2 (accuracy is not under test)."""
    targets = UserItems.from_pairs(torch.arange(n_users), torch.full((n_users,), 2), n_users)
    exclude = exclude or UserItems.from_pairs(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long), n_users)
    batch = {"user": users, "target": targets.padded(users)}
    batch["exclude_row"], batch["exclude_item"] = exclude.rows(users)
    return batch


def evaluate(scores, popularity, ks, batch_size, exclude=None, prefix="test") -> RankingEvaluator:
    ev = RankingEvaluator(ks, scores.shape[1])
    if popularity is not None:
        ev.set_popularity(popularity)
    users = torch.arange(scores.shape[0])
    for lo in range(0, users.numel(), batch_size):
        u = users[lo : lo + batch_size]
        ev.update(scores[u].clone(), batch_of(u, scores.shape[0], exclude), prefix)
    return ev


def hand_popularity() -> ItemPopularity:
    return ItemPopularity.from_interactions(train_of(EVENTS, 4, 5))


# ---- hand-computed ------------------------------------------------------------------
def test_training_statistics_of_the_hand_catalogue():
    pop = hand_popularity()
    assert pop.count.tolist() == [3.0, 8.0, 1.0, 0.0, 8.0]
    assert pop.long_tail.tolist() == [True, False, True, True, True]  # the tie 1 vs 4 goes to the lower id
    assert pop.self_information.tolist() == pytest.approx([0.736966, 0.0, 1.321928, 2.321928, 0.321928], abs=1e-6)


def test_short_head_share_picks_the_items_holding_that_share():
    count = torch.tensor([3.0, 8.0, 1.0, 0.0, 8.0])
    assert short_head(count, 0.2).tolist() == [False, True, False, False, False]
    assert short_head(count, 0.6).tolist() == [False, True, False, False, True]  # 8 before item 4 < 12
    assert short_head(count, 0.85).tolist() == [True, True, False, False, True]  # 16 before item 0 < 17
    assert not short_head(count, 0.0).any()  # no head: every item is long tail
    assert short_head(count, 1.0).tolist() == [True, True, True, False, True]  # never an unseen item


def test_hand_computed_arp_aplt_novelty_gini_and_coverage():
    got = evaluate(scores_of(LISTS, 5), hand_popularity(), [2, 3], batch_size=3).compute("test")
    # K=2, lists [1,4] [2,3] [4,0]
    assert got["test/arp@2"] == pytest.approx((8 + 0.5 + 5.5) / 3)  # 4.666667
    assert got["test/aplt@2"] == pytest.approx((0.5 + 1 + 1) / 3)  # 0.833333
    assert got["test/novelty@2"] == pytest.approx((0.160964 + 1.821928 + 0.529447) / 3, abs=1e-6)  # 0.837446
    assert got["test/gini@2"] == pytest.approx(4 / 30)  # exposure [1,1,1,1,2]: (-4-2+0+2+8)/(5*6)
    assert got["test/coverage@2"] == 1.0
    # K=3, lists [1,4,0] [2,3,1] [4,0,2]
    assert got["test/arp@3"] == pytest.approx((19 / 3 + 3 + 4) / 3)  # 4.444444
    assert got["test/aplt@3"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)  # 0.777778
    assert got["test/novelty@3"] == pytest.approx(0.787064, abs=1e-6)
    assert got["test/gini@3"] == pytest.approx(4 / 45)  # exposure [2,2,2,1,2]: (-4-4+0+4+8)/(5*9)


def test_per_user_values_of_the_hand_case():
    table = evaluate(scores_of(LISTS, 5), hand_popularity(), [2], batch_size=2).per_user_table()
    assert table["user"].tolist() == [0, 1, 2]
    assert table["test/arp@2"].tolist() == pytest.approx([8.0, 0.5, 5.5])
    assert table["test/aplt@2"].tolist() == pytest.approx([0.5, 1.0, 1.0])
    assert table["test/novelty@2"].tolist() == pytest.approx([0.160964, 1.821928, 0.529447], abs=1e-6)
    assert "test/gini@2" not in table  # catalogue level, like coverage


def test_gini_of_even_exposure_is_zero_and_of_one_item_is_n_minus_1_over_n():
    assert gini(torch.full((7,), 3)) == pytest.approx(0.0, abs=1e-12)
    assert gini(torch.tensor([0, 0, 5, 0])) == pytest.approx(3 / 4)
    assert math.isnan(gini(torch.zeros(4, dtype=torch.long)))
    # through the evaluator: every user gets the same single item (K=1)
    same = evaluate(scores_of([[2, 0, 1, 3, 4]] * 4, 5), None, [1], batch_size=3).compute("test")
    assert same["test/gini@1"] == pytest.approx(4 / 5)
    # five users, each a different first item: even exposure
    rotated = [[(u + j) % 5 for j in range(5)] for u in range(5)]
    even = evaluate(scores_of(rotated, 5), None, [1, 5], batch_size=2).compute("test")
    assert even["test/gini@1"] == pytest.approx(0.0, abs=1e-12) and even["test/gini@5"] == pytest.approx(0.0, abs=1e-12)


def test_a_user_with_fewer_allowed_items_than_k_averages_over_the_shown_ones():
    """User 0 may see only items 2 and 3 (the others are excluded): its ARP@3 is over
    those two items; excluded items never count as exposure."""
    exclude = UserItems.from_pairs(torch.zeros(3, dtype=torch.long), torch.tensor([0, 1, 4]), 1)
    ev = evaluate(scores_of([[0, 1, 2, 3, 4]], 5), hand_popularity(), [3], batch_size=1, exclude=exclude)
    got = ev.compute("test")
    assert got["test/arp@3"] == pytest.approx((1 + 0) / 2)
    assert got["test/aplt@3"] == 1.0
    assert got["test/novelty@3"] == pytest.approx((1.321928 + 2.321928) / 2, abs=1e-6)
    assert ev.exposure[3].tolist() == [0, 0, 1, 1, 0]
    assert got["test/gini@3"] == pytest.approx((2 * 4 - 6 + 2 * 5 - 6) / (5 * 2))  # c = [0,0,0,1,1]


def test_without_training_popularity_only_the_catalogue_metrics_are_reported():
    got = evaluate(scores_of(LISTS, 5), None, [2], batch_size=3).compute("val")
    assert {"val/coverage@2", "val/gini@2"} <= set(got)
    assert not any(name.split("/")[1].startswith(("arp", "aplt", "novelty")) for name in got)


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_a_short_head_share_outside_0_1_is_refused_naming_the_value(share):
    with pytest.raises(ConfigError, match=rf"eval.short_head_share must be a number in \[0, 1\] \(0.2 in Abdollahpouri et al.\), got {share}"):
        RankingEvaluator([10], 100, short_head_share=share)


def test_the_split_gives_the_evaluator_its_training_popularity():
    held_out = UserItems.from_pairs(torch.arange(4), torch.tensor([3, 2, 3, 0]), 4)
    ev = RankingEvaluator([2], 5, short_head_share=0.6)
    ev.setup(SplitData(train=train_of(EVENTS, 4, 5), valid=held_out, test=held_out))
    assert ev.popularity.long_tail.tolist() == [True, False, True, True, False]
    assert ev.popularity.count.tolist() == [3.0, 8.0, 1.0, 0.0, 8.0]


# ---- random data against a plain-Python loop ------------------------------------------
def random_case(n_users=29, n_items=37, n_train_users=50, seed=3):
    rng = np.random.default_rng(seed)
    scores = torch.from_numpy(rng.permutation(n_users * n_items).reshape(n_users, n_items).astype(np.float32))
    # Zipf-like training events with repeats; a few items never seen
    weights = 1.0 / np.arange(1, n_items + 1) ** 1.1
    weights[rng.choice(n_items, 4, replace=False)] = 0
    items = rng.choice(n_items, size=600, p=weights / weights.sum())
    events = [(int(rng.integers(0, n_train_users)), int(i)) for i in items]
    e_user, e_item = [], []
    for u in range(n_users):
        n_e = int(rng.integers(0, 8))
        e_user += [u] * n_e
        e_item += rng.choice(n_items, n_e, replace=False).tolist()
    exclude = UserItems.from_pairs(torch.tensor(e_user, dtype=torch.long), torch.tensor(e_item, dtype=torch.long), n_users)
    return scores, events, exclude, n_train_users


def reference(scores, events, exclude, n_train_users, ks, share):
    """Everything by loops over users and items."""
    n_users, n_items = scores.shape
    count = [0] * n_items
    for _, i in events:
        count[i] += 1
    seen = [set() for _ in range(n_items)]
    for u, i in events:
        seen[i].add(u)
    n_seen_users = len({u for u, _ in events})
    info = [math.log2((n_seen_users + 1) / (len(seen[i]) + 1)) for i in range(n_items)]
    by_popularity = sorted(range(n_items), key=lambda i: (-count[i], i))
    head, before = set(), 0
    for i in by_popularity:
        if before < share * len(events):
            head.add(i)
        before += count[i]
    out = {}
    for k in ks:
        exposure = [0] * n_items
        arp, aplt, nov = [], [], []
        for u in range(n_users):
            banned = set(exclude.items[exclude.indptr[u] : exclude.indptr[u + 1]].tolist())
            row = scores[u].tolist()
            top = sorted((i for i in range(n_items) if i not in banned), key=lambda i: -row[i])[:k]
            for i in top:
                exposure[i] += 1
            arp.append(sum(count[i] for i in top) / len(top))
            aplt.append(sum(i not in head for i in top) / len(top))
            nov.append(sum(info[i] for i in top) / len(top))
        mean = sum(exposure) / n_items
        mad = sum(abs(a - b) for a in exposure for b in exposure)  # Gini as mean absolute difference
        out.update({f"arp@{k}": np.mean(arp), f"aplt@{k}": np.mean(aplt), f"novelty@{k}": np.mean(nov),
                    f"gini@{k}": mad / (2 * n_items**2 * mean), f"coverage@{k}": sum(c > 0 for c in exposure) / n_items})
    return out


@pytest.mark.parametrize("share", [0.2, 0.5])
def test_random_data_matches_a_python_loop(share):
    ks = [1, 5, 10]
    scores, events, exclude, n_train = random_case()
    ev = RankingEvaluator(ks, scores.shape[1], short_head_share=share)
    ev.set_popularity(ItemPopularity.from_interactions(train_of(events, n_train, scores.shape[1]), share))
    users = torch.arange(scores.shape[0])
    for lo in range(0, users.numel(), 8):
        u = users[lo : lo + 8]
        ev.update(scores[u].clone(), batch_of(u, scores.shape[0], exclude), "test")
    got = ev.compute("test")
    for name, value in reference(scores, events, exclude, n_train, ks, share).items():
        assert got[f"test/{name}"] == pytest.approx(value, abs=1e-5), name


def test_results_do_not_depend_on_the_batch_size():
    ks = [3, 10]
    scores, events, exclude, n_train = random_case(seed=5)
    pop = ItemPopularity.from_interactions(train_of(events, n_train, scores.shape[1]))
    runs = [evaluate(scores, pop, ks, bs, exclude) for bs in (1, 6, scores.shape[0])]
    want, want_table = runs[0].compute("test"), runs[0].per_user_table()
    for ev in runs[1:]:
        assert ev.compute("test") == pytest.approx(want, abs=1e-6)
        table = ev.per_user_table()
        for name in want_table:
            torch.testing.assert_close(table[name], want_table[name])
        for k in ks:
            assert torch.equal(ev.exposure[k], runs[0].exposure[k])
