"""Full-ranking evaluation of a batch of users in bounded memory (``eval.item_chunk``).

The plain evaluator scores a batch's ``B`` users against all ``I`` items at once (``[B, I]``,
4 GB for 1,024 users x 1M items, plus as much again for the rank counts). Here the items
are scored ``item_chunk`` at a time, and each chunk is reduced before the next is scored:

1. the targets' scores come first, from the target columns alone (at most ``item_chunk``
   columns at a time);
2. for each chunk of items: the scores, with the targets' columns set to the scores of
   step 1 and the user's excluded items to ``-inf`` (as the plain path does on the whole
   matrix); every target's count of items scoring at least as high grows by that chunk's
   count (:func:`~recsys.metrics.ranking.count_at_or_above`, counts add over chunks); the
   running top-K list is merged with the chunk's; non-finite scores and the sampled
   negatives' scores are picked up;
3. ranks from the counts (:func:`~recsys.metrics.ranking.ranks_from_counts`).

Scores are computed by ``block(cols)``, the model's scores of the batch's users against
the items ``cols`` (a slice or a tensor of ids). The result equals the plain evaluator's
on the matrix whose columns ``block`` returns: exactly for ranks, hr, ndcg, recall, mrr and
the sampled metrics, ties included (every count is over the same values). Top-K lists hold
the same items with the same scores unless the K-th score of a row is tied: then this path
keeps the tied items of lowest id (best score first, equal scores by increasing id), while
``torch.topk`` on the whole row keeps an unspecified subset, so coverage, gini, arp, aplt
and novelty can differ there. Scores of continuous vectors almost never tie; a model
with ties at the cut-off (``model=pop``) is deterministic here and not in the plain path.
Matrix products give the same value for a (user, item) pair whichever columns are scored
with it (checked on CPU for the dot product), so ``block`` returns the plain matrix's values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from recsys.errors import ConfigError
from recsys.metrics.ranking import count_at_or_above, ranks_from_counts

Block = Callable[[slice | Tensor], Tensor]  # block(cols) -> [B, len(cols)] scores of items cols


def check_item_chunk(item_chunk: object, key: str) -> int | None:
    """``item_chunk`` if it is None or a positive integer, else a one-line error naming
    ``key`` (``loss.item_chunk``, ``eval.item_chunk``: items scored at once)."""
    if item_chunk is None:
        return None
    if isinstance(item_chunk, bool) or not isinstance(item_chunk, int) or item_chunk < 1:
        raise ConfigError(f"{key} must be null (no chunking) or an integer >= 1 (items scored at once), got {item_chunk!r}")
    return item_chunk


@dataclass
class Ranked:
    """What the evaluator records for one batch, from chunked scores.

    Attributes:
        ranks: ``[B, T]`` target ranks (:func:`~recsys.metrics.ranking.target_ranks`).
        top_scores: ``[B, Kmax]`` scores of each user's top-K list, ``-inf`` past its end.
        top: ``[B, Kmax]`` the items of that list, best first.
        nonfinite: ``[B]`` True for users with a NaN or infinite score among their candidates.
        sampled: ``sampled{N}`` -> ``[B, T + N]`` scores of the targets then the sampled negatives.
    """

    ranks: Tensor
    top_scores: Tensor
    top: Tensor
    nonfinite: Tensor
    sampled: dict[str, Tensor]


def rank_in_chunks(block: Block, n_items: int, batch: dict[str, Tensor], kmax: int, item_chunk: int) -> Ranked:
    """One batch's ranks, top-K lists and checks, holding ``[B, item_chunk]`` scores at a time.

    Args:
        block: ``block(cols)`` -> ``[B, len(cols)]`` scores (a new tensor: it is overwritten).
        n_items: catalogue size ``I``.
        batch: ``target`` ``[B, T]`` (``-1`` padding), ``exclude_row``/``exclude_item``
            ``[nnz]``, optional ``sampled{N}`` ``[B, N]``, as for the plain evaluator.
        kmax: length of the top-K lists.
        item_chunk: items scored at once.
    """
    targets, rows, items = batch["target"], batch["exclude_row"], batch["exclude_item"]
    valid = targets >= 0  # [B, T]
    raw = _target_scores(block, targets, item_chunk)  # [B, T] before exclusion
    excluded = _excluded_targets(targets, rows, items, n_items)  # [B, T]
    target_scores = raw.masked_fill(excluded, float("-inf"))  # [B, T] the scores ranked
    user = torch.arange(targets.shape[0], device=targets.device).unsqueeze(1).expand_as(targets)  # [B, T]
    counts = torch.zeros_like(targets)  # [B, T] columns scoring >= each target
    nonfinite = torch.zeros(targets.shape[0], dtype=torch.bool, device=targets.device)  # [B]
    negatives = {key: batch[key] for key in batch if key.startswith("sampled")}  # [B, N] each
    negative_scores = {key: torch.empty(neg.shape, device=neg.device) for key, neg in negatives.items()}
    top = _Top(targets.shape[0], kmax, targets.device)
    for lo in range(0, n_items, item_chunk):
        hi = min(lo + item_chunk, n_items)
        z = block(slice(lo, hi)).float()  # [B, c]
        here = valid & (targets >= lo) & (targets < hi)  # [B, T]
        z[user[here], targets[here] - lo] = raw[here]  # the targets' columns hold the scores ranked
        inside = (items >= lo) & (items < hi)  # [nnz]
        chunk_rows, chunk_items = rows[inside], items[inside] - lo  # excluded pairs in this chunk
        nonfinite |= nonfinite_rows(z, chunk_rows, chunk_items)
        for key, neg in negatives.items():
            taken = (neg >= lo) & (neg < hi)  # [B, N]
            negative_scores[key][taken] = z[taken.nonzero()[:, 0], neg[taken] - lo]
        z[chunk_rows, chunk_items] = float("-inf")
        counts += count_at_or_above(z, target_scores, valid)  # [B, T]
        top.merge(z, lo)
    sampled = {key: torch.cat([raw, negative_scores[key]], 1) for key in negatives}  # [B, T + N]
    return Ranked(ranks_from_counts(target_scores, targets, counts), top.values, top.ids, nonfinite, sampled)


def _target_scores(block: Block, targets: Tensor, item_chunk: int) -> Tensor:
    """``[B, T]`` each row's scores of its targets (0 at padding), scoring only the batch's
    distinct target columns, ``item_chunk`` at a time."""
    valid = targets >= 0  # [B, T]
    columns = torch.unique(targets[valid])  # [U] ascending
    where = torch.searchsorted(columns, targets.clamp(min=0))  # [B, T] position in columns
    user = torch.arange(targets.shape[0], device=targets.device).unsqueeze(1).expand_as(targets)  # [B, T]
    out = torch.zeros(targets.shape, device=targets.device)  # [B, T]
    for lo in range(0, columns.numel(), item_chunk):
        z = block(columns[lo : lo + item_chunk]).float()  # [B, c]
        here = valid & (where >= lo) & (where < lo + z.shape[1])  # [B, T]
        out[here] = z[user[here], where[here] - lo]
    return out


def _excluded_targets(targets: Tensor, rows: Tensor, items: Tensor, n_items: int) -> Tensor:
    """``[B, T]`` True where a target is among its user's excluded items (the plain path
    scores it ``-inf`` then; the data never excludes a target)."""
    keys = torch.arange(targets.shape[0], device=targets.device).unsqueeze(1) * n_items + targets  # [B, T]
    return (targets >= 0) & torch.isin(keys, rows * n_items + items)


def nonfinite_rows(z: Tensor, rows: Tensor, items: Tensor) -> Tensor:
    """``[B]`` rows with a NaN or infinite score in ``z`` (``[B, c]``, all items or a chunk)
    outside the excluded pairs ``(rows, items)``, whose scores are never used."""
    if bool(torch.isfinite(z.sum())):  # one reduction; NaN and inf propagate
        return torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
    bad = ~torch.isfinite(z)  # [B, c]
    bad[rows, items] = False
    return bad.any(1)


class _Top:
    """Running top-``k`` lists over chunks seen in increasing item order: best score first,
    equal scores by increasing item id (a deterministic order, kept across merges)."""

    def __init__(self, n_rows: int, k: int, device: torch.device) -> None:
        self.k = k
        self.values = torch.empty(n_rows, 0, device=device)  # [B, m]
        self.ids = torch.empty(n_rows, 0, dtype=torch.long, device=device)  # [B, m]

    def merge(self, z: Tensor, lo: int) -> None:
        """Merge the top of chunk ``z`` (``[B, c]``, items ``lo..lo + c - 1``)."""
        values, ids = _chunk_top(z, self.k)  # [B, k'] each, ordered
        values = torch.cat([self.values, values], 1)  # [B, m + k'] earlier (lower) ids first
        ids = torch.cat([self.ids, ids + lo], 1)
        order = values.sort(dim=1, descending=True, stable=True).indices[:, : self.k]  # ties keep the lower id
        self.values, self.ids = values.gather(1, order), ids.gather(1, order)


def _chunk_top(z: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``[B, k]`` best scores of ``z`` and their columns, best first, equal scores by
    increasing column; ``torch.topk`` picks among ties at the cut-off arbitrarily, so rows
    whose ``k``-th score is tied with the next are redone with a stable sort."""
    k = min(k, z.shape[1])
    wide = min(k + 1, z.shape[1])
    values, ids = z.topk(wide, dim=1)  # [B, k + 1]
    if wide > k:
        tied = (values[:, k] == values[:, k - 1]).nonzero().squeeze(1)  # rows whose cut-off is tied
        if tied.numel():
            ids[tied] = z[tied].sort(dim=1, descending=True, stable=True).indices[:, :wide]
            values[tied] = z[tied].gather(1, ids[tied])
        values, ids = values[:, :k], ids[:, :k]
    by_id = ids.sort(dim=1).indices  # [B, k] the k chosen by increasing column
    values, ids = values.gather(1, by_id), ids.gather(1, by_id)
    order = values.sort(dim=1, descending=True, stable=True).indices  # best first, ties by column
    return values.gather(1, order), ids.gather(1, order)
