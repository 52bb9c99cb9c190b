"""Full-ranking (and sampled) evaluation of a batch of users, accumulated over batches."""

from __future__ import annotations

import torch
from torch import Tensor

from recsys.data.interactions import SplitData
from recsys.errors import TrainingError
from recsys.metrics.chunked import Block, rank_in_chunks
from recsys.metrics.popularity import ItemPopularity, check_share, gini, list_metrics
from recsys.metrics.ranking import metrics_from_ranks, target_ranks
from recsys.models.chunked import check_item_chunk


class RankingEvaluator:
    """Accumulates per-user metrics over evaluation batches.

    Full ranking: every item is a candidate except the user's excluded items (training
    items, and for test the validation items); a user's own targets are never excluded.
    Sampled: the candidates are the targets plus the batch's sampled negatives
    (``sampled{N}``); those metrics carry the prefix ``<stage>_sampled<N>/``. Ranks follow
    the rule of :mod:`recsys.metrics.ranking` in both cases.

    Scores must be finite for every candidate: users with a NaN or infinite candidate
    score are counted (``nonfinite_users``), and :meth:`check_finite` stops the run.

    Beyond accuracy (full ranking only, definitions in :mod:`recsys.metrics.popularity`):
    the catalogue-level ``coverage@K`` and ``gini@K`` come from the exposure counts, an
    ``[I]`` tensor per K summed over batches (``exposure``); the per-user ``arp@K``,
    ``aplt@K`` and ``novelty@K`` need the training popularity, given once by :meth:`setup`
    (without it they are not reported).

    Args:
        ks: cut-offs, e.g. ``[10, 20]``.
        n_items: catalogue size, for coverage and the Gini index.
        short_head_share: share of training interactions held by the short head (APLT).
        item_chunk: None: :meth:`update_blocks` scores all items at once; an integer: that
            many items at a time (:mod:`recsys.metrics.chunked`, ``eval.item_chunk``).
    """

    def __init__(self, ks: list[int], n_items: int, short_head_share: float = 0.2, item_chunk: int | None = None) -> None:
        check_share(short_head_share)
        self.ks, self.n_items, self.short_head_share = list(ks), n_items, short_head_share
        self.item_chunk = check_item_chunk(item_chunk, "eval.item_chunk")
        self.popularity: ItemPopularity | None = None
        self.reset()

    def setup(self, split: SplitData) -> None:
        """Take the items' training popularity from the split (once, before evaluating)."""
        self.set_popularity(ItemPopularity.from_interactions(split.train, self.short_head_share))

    def set_popularity(self, popularity: ItemPopularity) -> None:
        self.popularity = popularity

    def reset(self) -> None:
        self.per_user: dict[str, list[Tensor]] = {}
        self.users: list[Tensor] = []
        self.n_users, self.nonfinite_users = 0, 0
        self.exposure = {k: torch.zeros(self.n_items, dtype=torch.long) for k in self.ks}  # [I] per K

    def update(self, scores: Tensor, batch: dict[str, Tensor], prefix: str) -> None:
        """scores ``[B, I]`` for the batch's users; ``batch`` holds ``target`` ``[B, T]``,
        ``exclude_row``/``exclude_item`` ``[nnz]`` and optional ``sampled{N}`` ``[B, N]``.
        Excluded entries of ``scores`` are overwritten with ``-inf`` in place (no copy of
        the ``[B, I]`` matrix); pass a tensor you no longer need. Users with a non-finite
        candidate score are counted in ``nonfinite_users`` first."""
        scores = scores.float()
        targets = batch["target"]
        nonfinite = _nonfinite_rows(scores, batch["exclude_row"], batch["exclude_item"])  # [B]
        sampled = {
            key: scores.gather(1, torch.cat([targets.clamp(min=0), batch[key]], 1))  # [B, T + N]
            for key in batch
            if key.startswith("sampled")
        }
        scores[batch["exclude_row"], batch["exclude_item"]] = float("-inf")
        top_scores, top = scores.topk(max(self.ks), dim=1)  # [B, Kmax]
        self._record(batch, prefix, target_ranks(scores, targets), top_scores, top, nonfinite, sampled)

    def update_blocks(self, block: Block, batch: dict[str, Tensor], prefix: str) -> None:
        """:meth:`update` with the scores given by ``block(cols)`` -> ``[B, len(cols)]``
        (``cols`` a slice or item ids; a new tensor): ``block(slice(None))`` at once, or
        with ``item_chunk`` set, ``[B, item_chunk]`` at a time with the same metrics
        (:func:`~recsys.metrics.chunked.rank_in_chunks`, which says when top-K ties differ)."""
        if self.item_chunk is None:
            self.update(block(slice(None)), batch, prefix)
            return
        r = rank_in_chunks(block, self.n_items, batch, max(self.ks), self.item_chunk)
        self._record(batch, prefix, r.ranks, r.top_scores, r.top, r.nonfinite, r.sampled)

    def _record(self, batch: dict[str, Tensor], prefix: str, ranks: Tensor, top_scores: Tensor, top: Tensor,
                nonfinite: Tensor, sampled: dict[str, Tensor]) -> None:
        """Add one batch: ``[B, T]`` target ranks, ``[B, Kmax]`` top-K scores and items,
        ``[B]`` non-finite users, ``sampled{N}`` -> ``[B, T + N]`` candidate scores."""
        targets = batch["target"]
        self._add(batch, "user", batch["user"])
        for key, cand_scores in sampled.items():
            nonfinite = nonfinite | ~torch.isfinite(cand_scores[:, targets.shape[1] :]).all(1)  # [B] negatives too
            cand_scores[:, : targets.shape[1]].masked_fill_(targets < 0, float("-inf"))
            local = torch.arange(targets.shape[1], device=targets.device).expand_as(targets)
            sampled_ranks = target_ranks(cand_scores, torch.where(targets >= 0, local, -1))
            for name, values in metrics_from_ranks(sampled_ranks, self.ks).items():
                self._add(batch, f"{prefix}_{key}/{name}", values)
        self.n_users += targets.shape[0]
        self.nonfinite_users += int(nonfinite.sum())
        for name, values in metrics_from_ranks(ranks, self.ks).items():
            self._add(batch, f"{prefix}/{name}", values)
        top, shown = top.cpu(), (top_scores > float("-inf")).cpu()  # excluded items are never recommended
        for k in self.ks:
            self.exposure[k] += torch.bincount(top[:, :k][shown[:, :k]], minlength=self.n_items)  # [I]
        if self.popularity is not None:
            for name, values in list_metrics(top, shown, self.popularity, self.ks).items():
                self._add(batch, f"{prefix}/{name}", values)

    def _add(self, batch: dict[str, Tensor], name: str, values: Tensor) -> None:
        self.per_user.setdefault(name, []).append(values.detach().cpu())

    def check_finite(self, stage: str, epoch: int | None = None) -> None:
        """Stop the run when some user had a NaN or infinite candidate score.

        Args:
            stage: named in the message, e.g. ``val`` or ``test``.
            epoch: the epoch being evaluated, named in the message when given.

        Raises:
            TrainingError: one line with the stage, the epoch and the number of users.
        """
        if self.nonfinite_users:
            when = "" if epoch is None else f" at epoch {epoch}"
            raise TrainingError(
                f"{stage} scores are NaN or infinite for {self.nonfinite_users} of {self.n_users} users{when}, "
                f"so no metrics are reported; lower optimizer.lr or check the model's vectors"
            )

    def compute(self, prefix: str) -> dict[str, float]:
        """Means over evaluated users, plus coverage and the Gini index of exposure;
        refuses non-finite scores (:meth:`check_finite`)."""
        self.check_finite(prefix)
        out = {name: float(torch.cat(v).mean()) for name, v in self.per_user.items() if name != "user"}
        for k in self.ks:
            out[f"{prefix}/coverage@{k}"] = float((self.exposure[k] > 0).float().mean())
            out[f"{prefix}/gini@{k}"] = gini(self.exposure[k])
        return out

    def per_user_table(self) -> dict[str, Tensor]:
        """Per-user values of every metric (column ``user`` holds the user ids)."""
        return {name: torch.cat(v) for name, v in self.per_user.items()}


def _nonfinite_rows(scores: Tensor, exclude_row: Tensor, exclude_item: Tensor) -> Tensor:
    """``[B]`` True for rows with a NaN or infinite score among their candidates (every item
    but the excluded ones, whose scores are never used)."""
    if bool(torch.isfinite(scores.sum())):  # one reduction; NaN and inf propagate
        return torch.zeros(scores.shape[0], dtype=torch.bool, device=scores.device)
    bad = ~torch.isfinite(scores)  # [B, I]
    bad[exclude_row, exclude_item] = False
    return bad.any(1)
