"""Splits, k-core filtering, CSR helpers and training views, on hand-built data and
against plain-Python reference implementations."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from recsys.data.interactions import Interactions, RawData, SplitData, UserItems
from recsys.data.splits import FixedSplit, GlobalTemporalSplit, LeaveOneOut, check_not_empty, compact, kcore
from recsys.data.views import PairView, SequenceView
from recsys.errors import ConfigError, DataError


def make_inter(seqs: dict[int, list[int]], n_users: int, n_items: int, times=None, has_timestamps=False, **kw):
    """Interactions sorted by user, then by position (or by the given per-user ``times``)."""
    user = [u for u in sorted(seqs) for _ in seqs[u]]
    item = [i for u in sorted(seqs) for i in seqs[u]]
    if times is None:
        time = [t for u in sorted(seqs) for t in range(len(seqs[u]))]
    else:
        time = [t for u in sorted(seqs) for t in times[u]]
    return Interactions(
        torch.tensor(user, dtype=torch.long),
        torch.tensor(item, dtype=torch.long),
        torch.tensor(time, dtype=torch.long),
        n_users=n_users,
        n_items=n_items,
        has_timestamps=has_timestamps,
        **kw,
    )


def row(ui: UserItems, u: int) -> list[int]:
    return ui.items[ui.indptr[u] : ui.indptr[u + 1]].tolist()


def train_lists(inter: Interactions) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for u, i in zip(inter.user.tolist(), inter.item.tolist()):
        out.setdefault(u, []).append(i)
    return out


# ---- leave-one-out ------------------------------------------------------------------------
def test_leave_one_out_hand_case():
    seqs = {0: [0, 1, 2, 3, 4], 1: [5, 2], 2: [1, 3, 0]}  # user 3 has no events
    split = LeaveOneOut()(RawData(make_inter(seqs, n_users=4, n_items=6)))
    assert train_lists(split.train) == {0: [0, 1, 2], 1: [5, 2], 2: [1]}
    assert [row(split.valid, u) for u in range(4)] == [[3], [], [3], []]
    assert [row(split.test, u) for u in range(4)] == [[4], [], [0], []]
    assert split.train.time.tolist() == [0, 1, 2, 0, 1, 0]
    assert split.n_users == 4 and split.n_items == 6
    assert split.valid.n_users == 4 and split.test.n_users == 4


def test_leave_one_out_min_events():
    seqs = {0: [0, 1, 2], 1: [3, 4, 5, 0]}
    split = LeaveOneOut(min_events=4)(RawData(make_inter(seqs, n_users=2, n_items=6)))
    assert train_lists(split.train) == {0: [0, 1, 2], 1: [3, 4]}
    assert [row(split.test, u) for u in range(2)] == [[], [0]]
    assert [row(split.valid, u) for u in range(2)] == [[], [5]]


def _valid_users_data():
    rng = np.random.default_rng(1)
    seqs = {u: rng.integers(0, 20, size=int(rng.integers(1, 9))).tolist() for u in range(40)}
    return seqs, make_inter(seqs, n_users=40, n_items=20)


def test_leave_one_out_valid_users_evaluates_a_seeded_subset_and_holds_out_the_rest_like_the_gsasrec_files():
    """The gSASRec authors' files: every user's last two events leave training; 512 users
    are validated (their third-to-last also leaves training there, an off-by-one not copied)."""
    seqs, inter = _valid_users_data()
    full = LeaveOneOut()(RawData(inter))
    part = LeaveOneOut(valid_users=5, seed=3)(RawData(inter))
    assert full.valid_users is None and full.validated_users().tolist() == full.valid.users_with_items().tolist()
    chosen = part.validated_users().tolist()
    assert len(chosen) == 5 and chosen == sorted(chosen) and set(chosen) <= set(full.valid.users_with_items().tolist())
    assert LeaveOneOut(valid_users=5, seed=3)(RawData(inter)).validated_users().tolist() == chosen
    assert LeaveOneOut(valid_users=5, seed=4)(RawData(inter)).validated_users().tolist() != chosen
    assert train_lists(part.train) == train_lists(full.train)  # the split itself is leave-one-out
    for u in range(40):
        assert row(part.valid, u) == row(full.valid, u) and row(part.test, u) == row(full.test, u)


def test_leave_one_out_valid_users_with_unvalidated_train_trains_on_the_others_second_to_last():
    seqs, inter = _valid_users_data()
    full = LeaveOneOut()(RawData(inter))
    held = LeaveOneOut(valid_users=5, seed=3)(RawData(inter))
    part = LeaveOneOut(valid_users=5, unvalidated="train", seed=3)(RawData(inter))
    validated = part.validated_users().tolist()
    assert part.valid_users is None and validated == held.validated_users().tolist()  # the same draw
    got_train = train_lists(part.train)
    for u, s in seqs.items():
        assert row(part.test, u) == row(full.test, u)  # test is unchanged
        if u in validated:
            assert got_train.get(u, []) == s[:-2] and row(part.valid, u) == [s[-2]]
        elif len(s) >= 3:  # not validated: the second-to-last event is training data
            assert got_train.get(u, []) == s[:-1] and row(part.valid, u) == []
    assert len(part.train) == len(full.train) + len(full.valid.users_with_items()) - 5


def test_leave_one_out_unvalidated_must_be_held_out_or_train():
    with pytest.raises(ConfigError) as info:
        LeaveOneOut(valid_users=5, unvalidated="drop")
    assert str(info.value) == "split.unvalidated must be one of held_out, train, got 'drop'"


@pytest.mark.parametrize("bad", [0, -1, 2.5, "512", True])
def test_leave_one_out_valid_users_must_be_a_positive_integer(bad):
    with pytest.raises(ConfigError, match="split.valid_users must be a positive integer"):
        LeaveOneOut(valid_users=bad)


def test_leave_one_out_more_valid_users_than_eligible_users_is_one_line():
    split = LeaveOneOut(valid_users=3)
    with pytest.raises(ConfigError, match="split.valid_users=3 but only 1 users have >= 3 events"):
        split(RawData(make_inter({0: [0, 1, 2], 1: [3, 4]}, n_users=2, n_items=6)))


def test_leave_one_out_random_against_reference():
    rng = np.random.default_rng(0)
    seqs = {u: rng.integers(0, 20, size=int(rng.integers(0, 9))).tolist() for u in range(40)}
    seqs = {u: s for u, s in seqs.items() if s}
    split = LeaveOneOut()(RawData(make_inter(seqs, n_users=40, n_items=20)))
    got_train = train_lists(split.train)
    for u in range(40):
        s = seqs.get(u, [])
        if len(s) >= 3:
            assert got_train.get(u, []) == s[:-2] and row(split.valid, u) == [s[-2]] and row(split.test, u) == [s[-1]]
        else:
            assert got_train.get(u, []) == s and row(split.valid, u) == [] and row(split.test, u) == []


# ---- fixed split --------------------------------------------------------------------------
def fixed_raw(seed=0):
    rng = np.random.default_rng(seed)
    train = {u: rng.choice(30, size=int(rng.integers(1, 12)), replace=False).tolist() for u in range(12)}
    test = {u: rng.choice(30, size=int(rng.integers(0, 4)), replace=False).tolist() for u in range(12)}
    test = {u: s for u, s in test.items() if s}
    return RawData(make_inter(train, 12, 30), fixed_test=make_inter(test, 12, 30)), train, test


def test_fixed_split_valid_is_test_when_ratio_zero():
    raw, train, test = fixed_raw()
    split = FixedSplit(valid_ratio=0.0)(raw)
    assert split.valid is split.test
    assert train_lists(split.train) == train
    assert [row(split.test, u) for u in range(12)] == [test.get(u, []) for u in range(12)]


def test_fixed_split_carves_disjoint_validation():
    raw, train, test = fixed_raw(seed=1)
    split = FixedSplit(valid_ratio=0.3, seed=4)(raw)
    new_train = train_lists(split.train)
    n_valid = 0
    for u in range(12):
        kept, held = new_train.get(u, []), row(split.valid, u)
        assert not set(kept) & set(held)  # items are unique per user: events are disjoint
        assert sorted(kept + held) == sorted(train[u])  # and together they are the training set
        assert kept == [i for i in train[u] if i in set(kept)]  # time order kept
        n_valid += len(held)
    total = sum(len(s) for s in train.values())
    assert 0 < n_valid < total
    assert [row(split.test, u) for u in range(12)] == [test.get(u, []) for u in range(12)]
    again = FixedSplit(valid_ratio=0.3, seed=4)(raw)
    assert torch.equal(again.valid.items, split.valid.items)
    other = FixedSplit(valid_ratio=0.3, seed=5)(raw)
    assert not torch.equal(other.valid.indptr, split.valid.indptr) or not torch.equal(other.valid.items, split.valid.items)


def test_fixed_split_errors():
    raw, _, _ = fixed_raw()
    for bad in (1.0, -0.1):
        with pytest.raises(ConfigError):
            FixedSplit(valid_ratio=bad)
    with pytest.raises(ConfigError):
        FixedSplit()(RawData(raw.interactions))


# ---- global temporal ----------------------------------------------------------------------
def temporal_raw(seed=0):
    rng = np.random.default_rng(seed)
    seqs, times = {}, {}
    for u in range(25):
        n = int(rng.integers(1, 15))
        times[u] = sorted(rng.integers(1_000, 2_000, size=n).tolist())
        seqs[u] = rng.choice(40, size=n, replace=False).tolist()  # (user, item) names one event
    seqs[25], times[25] = [1, 2, 3], [1_990, 1_995, 1_999]  # only late events: no training history
    return RawData(make_inter(seqs, 26, 40, times=times, has_timestamps=True)), seqs, times


def test_global_temporal_split_against_reference():
    raw, seqs, times = temporal_raw()
    split = GlobalTemporalSplit(valid_start=0.7, test_start=0.85)(raw)
    all_times = np.array([t for u in sorted(times) for t in times[u]], dtype=np.float64)
    t_valid, t_test = np.quantile(all_times, 0.7), np.quantile(all_times, 0.85)
    want_train, want_valid, want_test = {}, {}, {}
    for u in sorted(seqs):
        tr = [i for i, t in zip(seqs[u], times[u]) if t < t_valid]
        if tr:
            want_train[u] = tr
            want_valid[u] = [i for i, t in zip(seqs[u], times[u]) if t_valid <= t < t_test]
            want_test[u] = [i for i, t in zip(seqs[u], times[u]) if t >= t_test]
    assert train_lists(split.train) == want_train
    for u in range(26):
        assert row(split.valid, u) == want_valid.get(u, []), u
        assert row(split.test, u) == want_test.get(u, []), u
    assert row(split.test, 25) == [] and row(split.valid, 25) == []  # no training events
    assert sum(len(v) for v in want_valid.values()) > 0 and sum(len(v) for v in want_test.values()) > 0


def test_global_temporal_split_time_order():
    raw, _, _ = temporal_raw(seed=3)
    inter = raw.interactions
    split = GlobalTemporalSplit(valid_start=0.6, test_start=0.8)(raw)
    # items are unique per user, so (user, item) recovers each target event's time
    train_max = int(split.train.time.max())
    known = set(split.train.user.tolist())
    valid_pairs = {(u, i) for u in range(26) for i in row(split.valid, u)}
    test_pairs = {(u, i) for u in range(26) for i in row(split.test, u)}
    vt = [t for u, i, t in zip(inter.user.tolist(), inter.item.tolist(), inter.time.tolist()) if (u, i) in valid_pairs]
    tt = [t for u, i, t in zip(inter.user.tolist(), inter.item.tolist(), inter.time.tolist()) if (u, i) in test_pairs]
    assert vt and tt
    assert train_max < min(vt) and max(vt) <= min(tt)
    assert {u for u in range(26) if row(split.valid, u) or row(split.test, u)} <= known


def test_global_temporal_split_errors():
    raw, _, _ = temporal_raw()
    raw.interactions.has_timestamps = False
    with pytest.raises(ConfigError):
        GlobalTemporalSplit()(raw)
    for a, b in ((0.0, 0.5), (0.9, 0.8), (0.5, 1.0)):
        with pytest.raises(ConfigError):
            GlobalTemporalSplit(valid_start=a, test_start=b)


@pytest.mark.slow
def test_global_temporal_split_more_events_than_torch_quantile_accepts():
    """torch.quantile refuses inputs above 2**24 elements; the split must still work."""
    n = (1 << 24) + 10
    gen = torch.Generator().manual_seed(0)
    user = torch.sort(torch.randint(1000, (n,), generator=gen)).values
    inter = Interactions(user, torch.randint(50, (n,), generator=gen), torch.arange(n), n_users=1000, n_items=50, has_timestamps=True)
    split = GlobalTemporalSplit(valid_start=0.8, test_start=0.9)(RawData(inter))
    assert abs(len(split.train) - int(0.8 * n)) <= 2


# ---- k-core and compact -------------------------------------------------------------------
def ref_kcore(users: list[int], items: list[int], uk: int, ik: int) -> list[int]:
    alive = list(range(len(users)))
    while True:
        uc = Counter(users[e] for e in alive)
        ic = Counter(items[e] for e in alive)
        keep = [e for e in alive if uc[users[e]] >= uk and ic[items[e]] >= ik]
        if keep == alive:
            return alive
        alive = keep


def skewed_inter(seed: int, n_users=60, n_items=40, n_events=500):
    rng = np.random.default_rng(seed)
    p_user = np.linspace(2, 0.1, n_users)
    users = np.sort(rng.choice(n_users, size=n_events, p=p_user / p_user.sum()))  # skewed activity
    items = np.minimum(rng.zipf(1.6, size=n_events) - 1, n_items - 1)  # long tail of items
    return Interactions(
        torch.from_numpy(users).long(), torch.from_numpy(items).long(), torch.arange(n_events), n_users=n_users, n_items=n_items
    )


@pytest.mark.parametrize("uk,ik", [(5, 0), (0, 4), (5, 5), (10, 3)])
@pytest.mark.parametrize("seed", [0, 1])
def test_kcore_matches_reference(uk, ik, seed):
    inter = skewed_inter(seed)
    got = kcore(inter, uk, ik)
    kept = ref_kcore(inter.user.tolist(), inter.item.tolist(), uk, ik)
    assert 0 < len(kept) < len(inter)  # the case does filter something (and keeps something)
    assert got.user.tolist() == [inter.user.tolist()[e] for e in kept]
    assert got.item.tolist() == [inter.item.tolist()[e] for e in kept]
    assert got.time.tolist() == kept  # time = original position here
    uc, ic = Counter(got.user.tolist()), Counter(got.item.tolist())
    assert min(uc.values()) >= uk and min(ic.values()) >= ik
    assert got.n_users == inter.n_users and got.n_items == inter.n_items  # ids not renumbered


def test_kcore_cascade_hand_case():
    # item 2 has one event; removing it leaves user 1 with 1 event, which then goes too,
    # which leaves item 1 with 1 event, which goes, leaving user 0 with 2 events.
    inter = make_inter({0: [0, 0, 1], 1: [1, 2], 2: [0, 0]}, n_users=3, n_items=3)
    got = kcore(inter, user_core=2, item_core=2)
    assert list(zip(got.user.tolist(), got.item.tolist())) == [(0, 0), (0, 0), (2, 0), (2, 0)]
    assert kcore(inter, 0, 0) is inter and kcore(inter, 1, 1) is inter


def test_compact_renumbers_contiguously():
    inter = make_inter(
        {1: [4, 2], 3: [2], 6: [7, 4, 2]},
        n_users=8,
        n_items=9,
        user_features={"age": torch.arange(8) * 10},
        item_features={"genre": torch.arange(18).view(9, 2)},
        feature_cardinality={"age": 80, "genre": 18},
    )
    out = compact(inter)
    assert out.n_users == 3 and out.n_items == 3
    assert out.user.tolist() == [0, 0, 1, 2, 2, 2]
    assert out.item.tolist() == [1, 0, 0, 2, 1, 0]  # 2 -> 0, 4 -> 1, 7 -> 2
    assert out.time.tolist() == inter.time.tolist()
    assert out.user_features["age"].tolist() == [10, 30, 60]
    assert out.item_features["genre"].tolist() == [[4, 5], [8, 9], [14, 15]]
    assert out.feature_cardinality == {"age": 80, "genre": 18}
    assert compact(out) is out  # nothing left to renumber


def test_compact_after_kcore_against_reference():
    inter = skewed_inter(2)
    filtered = kcore(inter, 5, 5)
    out = compact(filtered)
    u_ids = sorted(set(filtered.user.tolist()))
    i_ids = sorted(set(filtered.item.tolist()))
    assert out.n_users == len(u_ids) and out.n_items == len(i_ids)
    assert out.user.tolist() == [u_ids.index(u) for u in filtered.user.tolist()]
    assert out.item.tolist() == [i_ids.index(i) for i in filtered.item.tolist()]
    assert set(out.user.tolist()) == set(range(out.n_users)) and set(out.item.tolist()) == set(range(out.n_items))


def test_check_not_empty():
    empty = make_inter({}, n_users=2, n_items=3)
    targets = UserItems.from_pairs(torch.tensor([0]), torch.tensor([1]), 2)
    with pytest.raises(DataError) as info:
        check_not_empty(SplitData(train=empty, valid=targets, test=targets), "tiny")
    assert "\n" not in str(info.value) and "tiny" in str(info.value)
    train = make_inter({0: [0, 1]}, n_users=2, n_items=3)
    no_targets = UserItems.from_pairs(torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), 2)
    with pytest.raises(DataError) as info:
        check_not_empty(SplitData(train=train, valid=no_targets, test=no_targets), "tiny")
    assert "\n" not in str(info.value)
    check_not_empty(SplitData(train=train, valid=targets, test=targets), "tiny")  # no error


# ---- UserItems ----------------------------------------------------------------------------
def test_user_items_from_unsorted_pairs_rows_padded_merge():
    ui = UserItems.from_pairs(torch.tensor([2, 0, 2, 0, 3]), torch.tensor([5, 1, 6, 2, 7]), n_users=4)
    assert ui.indptr.tolist() == [0, 2, 2, 4, 5]
    assert ui.items.tolist() == [1, 2, 5, 6, 7]  # grouped by user, order within a user kept
    assert ui.counts().tolist() == [2, 0, 2, 1]
    assert ui.users_with_items().tolist() == [0, 2, 3]
    r, i = ui.rows(torch.tensor([2, 1, 0]))
    assert r.tolist() == [0, 0, 2, 2] and i.tolist() == [5, 6, 1, 2]
    assert ui.padded(torch.tensor([3, 0, 1])).tolist() == [[7, -1], [1, 2], [-1, -1]]
    assert ui.padded(torch.tensor([1]), pad=9).tolist() == [[9]]
    other = UserItems.from_pairs(torch.tensor([1, 2, 2]), torch.tensor([4, 5, 0]), n_users=4)
    merged = ui.merge(other)
    assert [row(merged, u) for u in range(4)] == [[1, 2], [4], [5, 6, 5, 0], [7]]  # duplicates kept


# ---- views --------------------------------------------------------------------------------
def ref_sequence_rows(train: dict[int, list[int]], max_len: int, pad: int):
    rows = {}
    for u, s in train.items():
        if len(s) < 2:
            continue
        inp, tgt = s[:-1][-max_len:], s[1:][-max_len:]
        rows[u] = ([pad] * (max_len - len(inp)) + inp, [pad] * (max_len - len(tgt)) + tgt)
    return rows


def test_sequence_view_hand_case():
    # items 0..9, pad 10. user 0: 5 training items (truncated to the 3 most recent inputs);
    # user 1: 2 items (left padding); user 2: 1 item (no row); user 3: none.
    train = make_inter({0: [1, 2, 3, 4, 5], 1: [6, 7], 2: [8]}, n_users=4, n_items=10)
    valid = UserItems.from_pairs(torch.tensor([0, 1, 2]), torch.tensor([9, 0, 3]), 4)
    test = UserItems.from_pairs(torch.tensor([0, 1, 2]), torch.tensor([6, 1, 4]), 4)
    view = SequenceView(SplitData(train=train, valid=valid, test=test), max_len=3, pad=10)
    assert len(view) == 2
    b = view.batch(torch.tensor([1, 0]))
    assert b["user"].tolist() == [1, 0]
    assert b["input"].tolist() == [[10, 10, 6], [2, 3, 4]]
    assert b["target"].tolist() == [[10, 10, 7], [3, 4, 5]]
    val = view.user_inputs(torch.tensor([0, 1, 2, 3]), "val")
    assert val["user"].tolist() == [0, 1, 2, 3]
    assert val["input"].tolist() == [[3, 4, 5], [10, 6, 7], [10, 10, 8], [10, 10, 10]]  # ends with last train item
    tst = view.user_inputs(torch.tensor([0, 1, 2]), "test")
    assert tst["input"].tolist() == [[4, 5, 9], [6, 7, 0], [10, 8, 3]]  # ends with the validation item


def test_sequence_view_random_against_reference():
    rng = np.random.default_rng(4)
    seqs = {u: rng.integers(0, 30, size=int(rng.integers(0, 12))).tolist() for u in range(30)}
    seqs = {u: s for u, s in seqs.items() if s}
    train = make_inter(seqs, n_users=30, n_items=30)
    valid = UserItems.from_pairs(torch.arange(30), torch.from_numpy(rng.integers(0, 30, size=30)), 30)
    view = SequenceView(SplitData(train=train, valid=valid, test=valid), max_len=5, pad=30)
    want = ref_sequence_rows(seqs, 5, 30)
    assert view.users.tolist() == sorted(want)
    got = view.batch(torch.arange(len(view)))
    for r, u in enumerate(got["user"].tolist()):
        assert (got["input"][r].tolist(), got["target"][r].tolist()) == want[u], u
    users = torch.arange(30)
    val, tst = view.user_inputs(users, "val")["input"], view.user_inputs(users, "test")["input"]
    for u in range(30):
        hist = seqs.get(u, [])
        assert val[u].tolist() == ([30] * 5 + hist)[-5:], u
        assert tst[u].tolist() == ([30] * 5 + hist + [int(valid.items[u])])[-5:], u


def test_pair_view_batch_by_index():
    train = make_inter({0: [3, 1], 2: [0, 4, 2]}, n_users=3, n_items=5)
    view = PairView(SplitData(train=train, valid=train.csr(), test=train.csr()))
    assert len(view) == 5
    b = view.batch(torch.tensor([4, 0, 2]))
    assert b["user"].tolist() == [2, 0, 2] and b["item"].tolist() == [2, 3, 0]


def test_pair_view_user_rows_draw_users_then_items_uniformly():
    """rows=users (LightGCN's reference sampler): a user with 1 event is drawn as often as
    one with 8, never a user without events, and each user's items equally often."""
    train = make_inter({0: [7], 1: list(range(8)), 3: [2, 5]}, n_users=5, n_items=9)
    view = PairView(SplitData(train=train, valid=train.csr(), test=train.csr()), rows="users")
    assert len(view) == 11  # an epoch still has one row per event
    draws = 60_000
    b = view.batch(torch.zeros(draws, dtype=torch.long))
    pairs = Counter(zip(b["user"].tolist(), b["item"].tolist()))
    allowed = {(0, 7), *((1, i) for i in range(8)), (3, 2), (3, 5)}
    assert set(pairs) == allowed  # only training pairs, every one of them drawn
    users = Counter(b["user"].tolist())
    for u in (0, 1, 3):
        assert users[u] / draws == pytest.approx(1 / 3, abs=0.01)
    for i in range(8):  # user 1's eight items, 1/8 each
        assert pairs[(1, i)] / users[1] == pytest.approx(1 / 8, abs=0.01)
    view.set_seed(0)
    torch.manual_seed(123)  # the global generator plays no part
    again = view.batch(torch.zeros(draws, dtype=torch.long))
    assert torch.equal(again["user"], b["user"]) and torch.equal(again["item"], b["item"])  # the view's seed fixes them
    view.set_seed(1)
    assert not torch.equal(view.batch(torch.zeros(draws, dtype=torch.long))["user"], b["user"])


def test_pair_view_draws_continue_exactly_after_load_state_dict():
    """The data module saves the view's generator in checkpoints: a view restored from a
    state draws what the original drew after that state."""
    train = make_inter({0: [7], 1: list(range(8)), 3: [2, 5]}, n_users=5, n_items=9)
    split = SplitData(train=train, valid=train.csr(), test=train.csr())
    view = PairView(split, rows="users", seed=3)
    view.batch(torch.arange(11))
    state = view.state_dict()
    expected = [view.batch(torch.arange(11)) for _ in range(3)]
    restored = PairView(split, rows="users", seed=3)
    restored.load_state_dict(state)
    for want in expected:
        got = restored.batch(torch.arange(11))
        assert torch.equal(got["user"], want["user"]) and torch.equal(got["item"], want["item"])


def test_pair_view_rejects_an_unknown_row_scheme():
    train = make_inter({0: [1]}, n_users=1, n_items=2)
    with pytest.raises(ConfigError, match="train_rows must be one of events, users"):
        PairView(SplitData(train=train, valid=train.csr(), test=train.csr()), rows="user")


def test_target_train_counts_are_the_training_interactions_of_each_users_target(cfg_factory):
    from hydra.utils import instantiate

    datamodule = instantiate(cfg_factory(["data.dataset.n_users=60", "data.dataset.n_items=100"]).data)
    split = datamodule.prepare()
    item_counts = split.train.item_counts()
    for stage, targets in (("val", split.valid), ("test", split.test)):
        counts = datamodule.target_train_counts(stage)
        for user in range(split.n_users):
            row, items = targets.rows(torch.tensor([user]))
            expected = int(item_counts[items].min()) if items.numel() else -1
            assert counts[user] == expected
