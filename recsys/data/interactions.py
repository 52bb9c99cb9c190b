"""In-memory containers for interaction data.

All ids are 0-based and contiguous: users ``0..n_users-1`` and items ``0..n_items-1``.
Sequence models use ``n_items`` as the padding id. Everything is a tensor built once at
load time; training batches are then cut from these tensors by indexing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Interactions:
    """A set of (user, item, time) events, sorted by user and then by time.

    Attributes:
        user: ``[E]`` int64 user ids.
        item: ``[E]`` int64 item ids.
        time: ``[E]`` int64 timestamps, or the position in the user's history when the
            source gives order only (``has_timestamps`` tells which).
        n_users: size of the user id space (may exceed the number of active users).
        n_items: size of the item id space.
        has_timestamps: True when ``time`` holds real timestamps.
        user_features: categorical user side features, name -> ``[n_users]`` int64
            (``-1`` for unknown).
        item_features: categorical item side features, name -> ``[n_items, L]`` int64
            padded with ``-1`` (multi-valued features such as genres).
        feature_cardinality: name -> number of distinct values of each feature.
    """

    user: Tensor
    item: Tensor
    time: Tensor
    n_users: int
    n_items: int
    has_timestamps: bool = False
    user_features: dict[str, Tensor] = field(default_factory=dict)
    item_features: dict[str, Tensor] = field(default_factory=dict)
    feature_cardinality: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.user.numel())

    def sorted(self) -> "Interactions":
        """Return a copy sorted by (user, time), keeping the given order among ties."""
        key = self.time - self.time.min() if len(self) else self.time
        span = int(key.max()) + 1 if len(self) else 1
        order = torch.argsort(self.user * span + key, stable=True)  # [E]
        return self.subset(order)

    def subset(self, index: Tensor) -> "Interactions":
        """Rows selected by an index or boolean mask, with the same id spaces and features."""
        return Interactions(
            user=self.user[index],
            item=self.item[index],
            time=self.time[index],
            n_users=self.n_users,
            n_items=self.n_items,
            has_timestamps=self.has_timestamps,
            user_features=self.user_features,
            item_features=self.item_features,
            feature_cardinality=self.feature_cardinality,
        )

    def user_counts(self) -> Tensor:
        """``[n_users]`` number of events per user."""
        return torch.bincount(self.user, minlength=self.n_users)

    def item_counts(self) -> Tensor:
        """``[n_items]`` number of events per item."""
        return torch.bincount(self.item, minlength=self.n_items)

    def csr(self) -> "UserItems":
        """Per-user item lists (in time order) as a CSR structure."""
        return UserItems.from_pairs(self.user, self.item, self.n_users)


@dataclass
class UserItems:
    """Items of each user in CSR form: user ``u`` owns ``items[indptr[u]:indptr[u+1]]``.

    Used for evaluation targets (one item per user for leave-one-out, several for a fixed
    or temporal split) and for the items excluded from a user's ranking.
    """

    indptr: Tensor  # [U + 1]
    items: Tensor  # [nnz]

    @staticmethod
    def from_pairs(user: Tensor, item: Tensor, n_users: int) -> "UserItems":
        """Build from (user, item) pairs; pairs must already be grouped by user."""
        if user.numel() and bool((user[1:] < user[:-1]).any()):
            order = torch.argsort(user, stable=True)
            user, item = user[order], item[order]
        counts = torch.bincount(user, minlength=n_users)  # [U]
        indptr = torch.zeros(n_users + 1, dtype=torch.long)
        indptr[1:] = torch.cumsum(counts, 0)
        return UserItems(indptr=indptr, items=item.clone())

    @property
    def n_users(self) -> int:
        return int(self.indptr.numel() - 1)

    def counts(self) -> Tensor:
        """``[U]`` number of items per user."""
        return self.indptr[1:] - self.indptr[:-1]

    def users_with_items(self) -> Tensor:
        """Ids of users that own at least one item."""
        return torch.nonzero(self.counts() > 0).flatten()

    def rows(self, users: Tensor) -> tuple[Tensor, Tensor]:
        """Flattened (row-in-batch, item) pairs for the given users.

        Returns:
            ``(row, item)``, both ``[nnz_batch]``: ``row[k]`` indexes ``users``.
        """
        start, end = self.indptr[users], self.indptr[users + 1]  # [B], [B]
        lengths = end - start  # [B]
        row = torch.repeat_interleave(torch.arange(users.numel()), lengths)  # [nnz]
        offset = torch.arange(int(lengths.sum())) - torch.repeat_interleave(
            torch.cumsum(lengths, 0) - lengths, lengths
        )  # [nnz] position inside each row
        return row, self.items[torch.repeat_interleave(start, lengths) + offset]

    def padded(self, users: Tensor, pad: int = -1) -> Tensor:
        """``[B, T]`` items of the given users, right-padded with ``pad``."""
        row, item = self.rows(users)
        lengths = self.counts()[users]
        width = max(int(lengths.max()) if lengths.numel() else 0, 1)
        out = torch.full((users.numel(), width), pad, dtype=torch.long)
        col = torch.arange(row.numel()) - torch.repeat_interleave(
            torch.cumsum(lengths, 0) - lengths, lengths
        )
        out[row, col] = item
        return out

    def merge(self, other: "UserItems") -> "UserItems":
        """Union of two per-user lists over the same users (duplicates kept)."""
        n = self.n_users
        users = torch.arange(n)
        r1, i1 = self.rows(users)
        r2, i2 = other.rows(users)
        return UserItems.from_pairs(torch.cat([r1, r2]), torch.cat([i1, i2]), n)


@dataclass
class RawData:
    """What a dataset reader returns: all events, and the fixed test set if it has one."""

    interactions: Interactions
    fixed_test: Interactions | None = None


@dataclass
class SplitData:
    """A train/validation/test split ready for training and full-ranking evaluation.

    Attributes:
        train: training events, sorted by user and time.
        valid: validation targets per user (CSR; empty rows for users without one).
        test: test targets per user.
        valid_users: ``[V]`` increasing ids of the users whose validation target is
            evaluated, or ``None`` (default): every user with one. Targets of the others
            still stay out of training and in the test input (``split.valid_users``).
        n_users, n_items: id space sizes shared by all parts.
    """

    train: Interactions
    valid: UserItems
    test: UserItems
    valid_users: Tensor | None = None

    def validated_users(self) -> Tensor:
        """``[V]`` increasing ids of the users validation evaluates."""
        return self.valid.users_with_items() if self.valid_users is None else self.valid_users

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items
