"""Train/validation/test splits and k-core filtering, all vectorized.

* :class:`LeaveOneOut` - the sequential-recommendation protocol (SASRec, BERT4Rec): each
  user's last event is the test target, the second to last the validation target, the rest
  is training. Users with fewer than ``min_events`` events stay wholly in training.
* :class:`FixedSplit` - the dataset's own test set (e.g. Gowalla's LightGCN split);
  validation is either carved out of training (``valid_ratio > 0``) or, as in the
  LightGCN protocol, the test set itself (``valid_ratio = 0``; model selection on test).
* :class:`GlobalTemporalSplit` - one time cut for everybody: events before the
  ``valid_start`` quantile of time train, then validation, then test after ``test_start``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from recsys.data.interactions import Interactions, RawData, SplitData, UserItems
from recsys.errors import ConfigError, DataError, check_number


def kcore(inter: Interactions, user_core: int = 0, item_core: int = 0) -> Interactions:
    """Drop users and items with fewer than ``user_core``/``item_core`` events, repeatedly,
    until every remaining user and item has enough. Ids are not renumbered."""
    if user_core <= 1 and item_core <= 1:
        return inter
    keep = torch.ones(len(inter), dtype=torch.bool)
    while True:
        user_n = torch.bincount(inter.user[keep], minlength=inter.n_users)  # [U]
        item_n = torch.bincount(inter.item[keep], minlength=inter.n_items)  # [I]
        ok = keep & (user_n[inter.user] >= user_core) & (item_n[inter.item] >= item_core)
        if bool((ok == keep).all()):
            break
        keep = ok
    return inter.subset(keep)


def compact(inter: Interactions) -> Interactions:
    """Renumber users and items so that only ids with events remain (after filtering)."""
    user_ids, user = torch.unique(inter.user, return_inverse=True)
    item_ids, item = torch.unique(inter.item, return_inverse=True)
    if user_ids.numel() == inter.n_users and item_ids.numel() == inter.n_items:
        return inter
    return Interactions(
        user=user,
        item=item,
        time=inter.time,
        n_users=int(user_ids.numel()),
        n_items=int(item_ids.numel()),
        has_timestamps=inter.has_timestamps,
        user_features={k: v[user_ids] for k, v in inter.user_features.items()},
        item_features={k: v[item_ids] for k, v in inter.item_features.items()},
        feature_cardinality=inter.feature_cardinality,
    )


def _rank_from_end(user: Tensor, n_users: int) -> Tensor:
    """``[E]`` 0 for each user's last event, 1 for the one before, ... (events sorted by user)."""
    counts = torch.bincount(user, minlength=n_users)  # [U]
    start = torch.cumsum(counts, 0) - counts  # [U]
    position = torch.arange(user.numel()) - start[user]  # [E]
    return counts[user] - 1 - position


class Split:
    """Base class: turns a dataset's :class:`RawData` into :class:`SplitData`."""

    def __call__(self, raw: RawData) -> SplitData:  # pragma: no cover - abstract
        raise NotImplementedError


class LeaveOneOut(Split):
    """Last event of each user -> test, second to last -> validation.

    Args:
        min_events: users with fewer events keep everything in training (default 3, as in
            SASRec's reference code).
        valid_users: ``None`` (default): validation evaluates every eligible user. An
            integer N: only N eligible users, drawn at random with ``seed``.
        unvalidated: what becomes of the second-to-last event of the users ``valid_users``
            leaves out. ``held_out`` (default): it stays out of training and is part of
            the test input, as in the gSASRec authors' data files (their training
            sequences drop the last two events of every user; they validate 512 users).
            ``train``: it becomes a training target (on ml1m, 5,528 more of them).
        seed: seed of the ``valid_users`` draw.

    Test is every eligible user's last event either way.
    """

    UNVALIDATED = ("held_out", "train")

    def __init__(self, min_events: int = 3, valid_users: int | None = None, unvalidated: str = "held_out",
                 seed: int = 0) -> None:
        if valid_users is not None and (isinstance(valid_users, bool) or not isinstance(valid_users, int)
                                        or valid_users < 1):
            raise ConfigError(f"split.valid_users must be a positive integer or null (every user), got {valid_users!r}")
        if unvalidated not in self.UNVALIDATED:
            raise ConfigError(f"split.unvalidated must be one of {', '.join(self.UNVALIDATED)}, got {unvalidated!r}")
        self.min_events = min_events
        self.valid_users = valid_users
        self.unvalidated = unvalidated
        self.seed = seed

    def __call__(self, raw: RawData) -> SplitData:
        inter = raw.interactions
        from_end = _rank_from_end(inter.user, inter.n_users)  # [E]
        user_eligible = inter.user_counts() >= self.min_events  # [U]
        eligible = user_eligible[inter.user]  # [E]
        is_test = eligible & (from_end == 0)
        is_valid = eligible & (from_end == 1)
        validated_users = None
        if self.valid_users is not None:
            candidates = user_eligible.nonzero().squeeze(1)  # [U_eligible]
            if self.valid_users > candidates.numel():
                raise ConfigError(f"split.valid_users={self.valid_users} but only {candidates.numel()} users have "
                                  f">= {self.min_events} events; lower it or set it to null (every user)")
            gen = torch.Generator().manual_seed(self.seed)
            chosen = candidates[torch.randperm(candidates.numel(), generator=gen)[: self.valid_users]]  # [N]
            if self.unvalidated == "train":  # the others' second-to-last events become training data
                is_valid &= torch.isin(inter.user, chosen)  # [E]
            else:  # held out as in leave-one-out; only the chosen users are evaluated
                validated_users = torch.sort(chosen).values  # [N]
        train = inter.subset(~(is_test | is_valid))
        n = inter.n_users
        return SplitData(
            train=train,
            valid=UserItems.from_pairs(inter.user[is_valid], inter.item[is_valid], n),
            test=UserItems.from_pairs(inter.user[is_test], inter.item[is_test], n),
            valid_users=validated_users,
        )


class FixedSplit(Split):
    """The dataset's own train/test files.

    Args:
        valid_ratio: fraction of each user's training events (chosen at random with
            ``seed``) held out for validation. ``0`` validates on the test set, which is the
            LightGCN protocol; say so when reporting.
        seed: seed of the validation draw.
    """

    def __init__(self, valid_ratio: float = 0.0, seed: int = 0) -> None:
        check_number("split.valid_ratio", valid_ratio, 0, 1, high_open=True)
        self.valid_ratio = valid_ratio
        self.seed = seed

    def __call__(self, raw: RawData) -> SplitData:
        if raw.fixed_test is None:
            raise ConfigError(
                "split=fixed needs a dataset with its own test file (e.g. data=gowalla); "
                "use split=leave_one_out or split=temporal for this one"
            )
        train, test_inter = raw.interactions, raw.fixed_test
        test = UserItems.from_pairs(test_inter.user, test_inter.item, train.n_users)
        if self.valid_ratio == 0.0:
            return SplitData(train=train, valid=test, test=test)
        gen = torch.Generator().manual_seed(self.seed)
        held = torch.rand(len(train), generator=gen) < self.valid_ratio  # [E]
        valid = UserItems.from_pairs(train.user[held], train.item[held], train.n_users)
        return SplitData(train=train.subset(~held), valid=valid, test=test)


class GlobalTemporalSplit(Split):
    """One global time cut: events with time quantile below ``valid_start`` train, between
    ``valid_start`` and ``test_start`` validate, the rest test. Evaluation targets are
    kept only for users who have training events.

    Args:
        valid_start: quantile of the time axis where validation starts (e.g. 0.8).
        test_start: quantile where the test period starts (e.g. 0.9).
    """

    def __init__(self, valid_start: float = 0.8, test_start: float = 0.9) -> None:
        if not 0.0 < valid_start <= test_start < 1.0:
            raise ConfigError(
                f"split=temporal needs 0 < split.valid_start <= split.test_start < 1, got {valid_start} and {test_start}"
            )
        self.valid_start = valid_start
        self.test_start = test_start

    def __call__(self, raw: RawData) -> SplitData:
        inter = raw.interactions
        if not inter.has_timestamps:
            raise ConfigError(
                "split=temporal needs real timestamps, and this dataset gives order only; "
                "use split=leave_one_out"
            )
        times = inter.time.double()
        # numpy: torch.quantile refuses more than 2**24 elements (same linear interpolation)
        t_valid, t_test = (float(t) for t in np.quantile(times.numpy(), [self.valid_start, self.test_start]))
        is_train = times < t_valid
        is_test = times >= t_test
        is_valid = ~is_train & ~is_test
        known = torch.bincount(inter.user[is_train], minlength=inter.n_users) > 0  # [U]
        is_valid &= known[inter.user]
        is_test &= known[inter.user]
        n = inter.n_users
        return SplitData(
            train=inter.subset(is_train),
            valid=UserItems.from_pairs(inter.user[is_valid], inter.item[is_valid], n),
            test=UserItems.from_pairs(inter.user[is_test], inter.item[is_test], n),
        )


def check_not_empty(split: SplitData, name: str) -> None:
    """Fail with one line when filtering or splitting left nothing to train or evaluate."""
    if len(split.train) == 0:
        raise DataError(
            f"dataset {name} has no training interactions after filtering and splitting; "
            f"lower data.user_core/data.item_core or check the input file"
        )
    if split.test.items.numel() == 0:
        raise DataError(
            f"dataset {name} has no test targets after splitting (users need at least a few "
            f"events); lower data.user_core/data.item_core or choose another split (split=leave_one_out, temporal or fixed)"
        )
