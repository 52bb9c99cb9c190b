"""Full-ranking (and sampled) evaluation of a batch of users, accumulated over batches."""

from __future__ import annotations

import torch
from torch import Tensor

from recsys.metrics.ranking import metrics_from_ranks, target_ranks


class RankingEvaluator:
    """Accumulates per-user metrics over evaluation batches.

    Full ranking: every item is a candidate except the user's excluded items (training
    items, and for test the validation items); a user's own targets are never excluded.
    Sampled: the candidates are the targets plus the batch's sampled negatives
    (``sampled{N}``); those metrics carry the prefix ``<stage>_sampled<N>/``.

    Args:
        ks: cut-offs, e.g. ``[10, 20]``.
        n_items: catalogue size, for coverage.
    """

    def __init__(self, ks: list[int], n_items: int) -> None:
        self.ks, self.n_items = list(ks), n_items
        self.reset()

    def reset(self) -> None:
        self.per_user: dict[str, list[Tensor]] = {}
        self.users: list[Tensor] = []
        self.recommended = {k: torch.zeros(self.n_items, dtype=torch.bool) for k in self.ks}

    def update(self, scores: Tensor, batch: dict[str, Tensor], prefix: str) -> None:
        """scores ``[B, I]`` for the batch's users; ``batch`` holds ``target`` ``[B, T]``,
        ``exclude_row``/``exclude_item`` ``[nnz]`` and optional ``sampled{N}`` ``[B, N]``.
        Excluded entries of ``scores`` are overwritten with ``-inf`` in place (no copy of
        the ``[B, I]`` matrix); pass a tensor you no longer need."""
        scores = scores.float()
        targets = batch["target"]
        self._add(batch, "user", batch["user"])
        for key in [k for k in batch if k.startswith("sampled")]:
            negatives = batch[key]  # [B, N]
            candidates = torch.cat([targets.clamp(min=0), negatives], 1)  # [B, T + N]
            cand_scores = scores.gather(1, candidates)
            cand_scores[:, : targets.shape[1]].masked_fill_(targets < 0, float("-inf"))
            local = torch.arange(targets.shape[1], device=scores.device).expand_as(targets)
            ranks = target_ranks(cand_scores, torch.where(targets >= 0, local, -1))
            for name, values in metrics_from_ranks(ranks, self.ks).items():
                self._add(batch, f"{prefix}_{key}/{name}", values)
        scores[batch["exclude_row"], batch["exclude_item"]] = float("-inf")
        for name, values in metrics_from_ranks(target_ranks(scores, targets), self.ks).items():
            self._add(batch, f"{prefix}/{name}", values)
        top_scores, top = scores.topk(max(self.ks), dim=1)  # [B, Kmax]
        shown = top_scores > float("-inf")  # excluded items are never recommended
        for k in self.ks:
            self.recommended[k][top[:, :k][shown[:, :k]].cpu()] = True

    def _add(self, batch: dict[str, Tensor], name: str, values: Tensor) -> None:
        self.per_user.setdefault(name, []).append(values.detach().cpu())

    def compute(self, prefix: str) -> dict[str, float]:
        """Means over evaluated users, plus coverage."""
        out = {name: float(torch.cat(v).mean()) for name, v in self.per_user.items() if name != "user"}
        for k in self.ks:
            out[f"{prefix}/coverage@{k}"] = float(self.recommended[k].float().mean())
        return out

    def per_user_table(self) -> dict[str, Tensor]:
        """Per-user values of every metric (column ``user`` holds the user ids)."""
        return {name: torch.cat(v) for name, v in self.per_user.items()}
