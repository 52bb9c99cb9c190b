"""Full-ranking (and sampled) evaluation of a batch of users, accumulated over batches."""

from __future__ import annotations

import torch
from torch import Tensor

from recsys.data.interactions import SplitData
from recsys.distributed import all_gather_objects, world_size
from recsys.errors import TrainingError
from recsys.metrics.chunked import Block, check_item_chunk, nonfinite_rows, rank_in_chunks
from recsys.metrics.popularity import ItemPopularity, check_share, gini, list_metrics
from recsys.metrics.ranking import metrics_from_ranks, target_ranks


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

    Several processes (``trainer=ddp``): each evaluates its share of the users; :meth:`gather`
    then gives every process all processes' users, each user once and in increasing id order
    (a single process's order, since the evaluation batches list users by increasing id), so
    :meth:`compute` returns exactly a single process's values on every process. Each process
    keeps its users' top-K lists and non-finite flags for that (``[B, Kmax]`` and ``[B]`` per
    batch; a single process keeps none): the exposure counts and the user counts are recounted
    from the kept users, never summed, because the distributed sampler repeats users to give
    every process the same number of batches.

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
        self.n_users, self.nonfinite_users = 0, 0
        self.exposure = {k: torch.zeros(self.n_items, dtype=torch.long) for k in self.ks}  # [I] per K
        self.distributed = world_size() > 1  # keep what gather() needs to recount exposure and users
        self.top_lists: list[Tensor] = []  # [B, Kmax] shown items, -1 where none (distributed only)
        self.nonfinite_rows: list[Tensor] = []  # [B] bool (distributed only)

    def update(self, scores: Tensor, batch: dict[str, Tensor], prefix: str) -> None:
        """scores ``[B, I]`` for the batch's users; ``batch`` holds ``target`` ``[B, T]``,
        ``exclude_row``/``exclude_item`` ``[nnz]`` and optional ``sampled{N}`` ``[B, N]``.
        Excluded entries of ``scores`` are overwritten with ``-inf`` in place (no copy of
        the ``[B, I]`` matrix); pass a tensor you no longer need. Users with a non-finite
        candidate score are counted in ``nonfinite_users`` first."""
        scores = scores.float()
        targets = batch["target"]
        nonfinite = nonfinite_rows(scores, batch["exclude_row"], batch["exclude_item"])  # [B]
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
        if self.distributed:
            self.nonfinite_rows.append(nonfinite.cpu())
        for name, values in metrics_from_ranks(ranks, self.ks).items():
            self._add(batch, f"{prefix}/{name}", values)
        top, shown = top.cpu(), (top_scores > float("-inf")).cpu()  # excluded items are never recommended
        for k in self.ks:
            self.exposure[k] += torch.bincount(top[:, :k][shown[:, :k]], minlength=self.n_items)  # [I]
        if self.distributed:
            self.top_lists.append(top.masked_fill(~shown, -1))  # [B, Kmax]
        if self.popularity is not None:
            for name, values in list_metrics(top, shown, self.popularity, self.ks).items():
                self._add(batch, f"{prefix}/{name}", values)

    def _add(self, batch: dict[str, Tensor], name: str, values: Tensor) -> None:
        self.per_user.setdefault(name, []).append(values.detach().cpu())

    def gather(self) -> None:
        """Under several processes, replace this process's users by all processes' users
        (:meth:`merge` of every process's :meth:`local_state`). One collective: every process
        must call it, after the last :meth:`update` of a stage and before
        :meth:`check_finite`; nothing to do in a single process, or once gathered."""
        if self.distributed:
            self.merge(all_gather_objects(self.local_state()))

    def local_state(self) -> dict:
        """What this process evaluated, on the CPU: per-user values, top-K lists, flags."""
        return {
            "per_user": {name: torch.cat(v) for name, v in self.per_user.items()},
            "top": torch.cat(self.top_lists) if self.top_lists else torch.zeros(0, max(self.ks), dtype=torch.long),
            "nonfinite": torch.cat(self.nonfinite_rows) if self.nonfinite_rows else torch.zeros(0, dtype=torch.bool),
        }

    def merge(self, parts: list[dict]) -> None:
        """Hold the users of ``parts`` (:meth:`local_state` of every process): each user once
        (a user evaluated twice, as the distributed sampler's padding does, has the same
        values both times; the first is kept), by increasing user id; the exposure counts and
        ``n_users``/``nonfinite_users`` are recounted from them."""
        parts = [p for p in parts if p["per_user"]]  # a process may have had no batch
        self.distributed, self.top_lists, self.nonfinite_rows = False, [], []
        if not parts:
            return
        keep = first_of_each(torch.cat([p["per_user"]["user"] for p in parts]))  # [U] rows, by user id
        self.per_user = {name: [torch.cat([p["per_user"][name] for p in parts])[keep]] for name in parts[0]["per_user"]}
        top = torch.cat([p["top"] for p in parts])[keep]  # [U, Kmax]
        nonfinite = torch.cat([p["nonfinite"] for p in parts])[keep]  # [U]
        self.n_users, self.nonfinite_users = int(keep.numel()), int(nonfinite.sum())
        for k in self.ks:
            shown = top[:, :k][top[:, :k] >= 0]
            self.exposure[k] = torch.bincount(shown, minlength=self.n_items)  # [I]

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


def first_of_each(users: Tensor) -> Tensor:
    """``[U]`` the index of each distinct id's first row in ``users`` (``[R]``), ordered by
    increasing id."""
    distinct, inverse = torch.unique(users, return_inverse=True)  # [U], [R]
    rows = torch.arange(users.numel())  # [R]
    first = torch.full((distinct.numel(),), users.numel(), dtype=torch.long)
    return first.scatter_reduce_(0, inverse, rows, reduce="amin")  # [U]
