"""Uniform sampling of items outside each user's forbidden set (training history, and for
evaluation also the held-out targets), shared by the sampled evaluation of the data module
and by the ``presampled`` training sampler."""

from __future__ import annotations

import torch
from torch import Tensor

from recsys.data.interactions import SplitData
from recsys.errors import ConfigError


def sample_excluding(
    users: Tensor, n: int, n_items: int, forbidden: Tensor, generator: torch.Generator, what: str
) -> Tensor:
    """``[len(users), n]`` uniform items that are not in each user's forbidden set.

    Args:
        users: ``[U']`` user ids.
        forbidden: sorted ``int64`` keys ``user * n_items + item`` that may not be drawn.
        what: name used in the error when a user has too few allowed items.

    Draws are repeated only for the entries that hit a forbidden item, so the cost is a
    few vectorized passes.
    """
    allowed = n_items - _forbidden_per_user(users, n_items, forbidden)
    if users.numel() and int(allowed.min()) < n:
        raise ConfigError(
            f"{what}: a user has only {int(allowed.min())} items outside their history, fewer than "
            f"the {n} negatives asked for; lower the number of negatives"
        )
    out = torch.randint(n_items, (users.numel(), n), generator=generator)  # [U', n]
    while True:
        keys = users.unsqueeze(1) * n_items + out  # [U', n]
        pos = torch.searchsorted(forbidden, keys).clamp(max=max(forbidden.numel() - 1, 0))
        bad = forbidden[pos] == keys if forbidden.numel() else torch.zeros_like(out, dtype=torch.bool)
        if not bool(bad.any()):
            return out
        out[bad] = torch.randint(n_items, (int(bad.sum()),), generator=generator)


def _forbidden_per_user(users: Tensor, n_items: int, forbidden: Tensor) -> Tensor:
    lo = torch.searchsorted(forbidden, users * n_items)
    hi = torch.searchsorted(forbidden, (users + 1) * n_items)
    return hi - lo


def history_keys(split: SplitData, include_targets: bool = True) -> Tensor:
    """Sorted unique keys ``user * n_items + item`` of every user's training items (and
    validation and test targets)."""
    parts = [split.train.user * split.n_items + split.train.item]
    if include_targets:
        for targets in (split.valid, split.test):
            users = torch.repeat_interleave(torch.arange(targets.n_users), targets.counts())
            parts.append(users * split.n_items + targets.items)
    return torch.unique(torch.cat(parts))
