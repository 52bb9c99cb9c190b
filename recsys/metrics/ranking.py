"""Per-user ranking metrics computed from target ranks.

Tie policy (pessimistic): an item whose score *equals* a target's score is ranked above
that target. A model that gives every item the same score therefore ranks each target
last, never first, and no metric can be inflated by ties. Ranks are 1-based:
``rank(t) = #{items j allowed for the user : s_j >= s_t}`` (``t`` counts itself).

Definitions for a user with target set ``T`` and cut-off ``K``:

* ``hr@K`` = 1 if some target has rank <= K;
* ``recall@K`` = (#targets with rank <= K) / |T|;
* ``ndcg@K`` = sum over targets with rank <= K of 1/log2(rank + 1), divided by the ideal
  value sum_{i=1..min(|T|, K)} 1/log2(i + 1);
* ``mrr`` = 1 / (best target rank), over the full ranking (no cut-off);
* ``coverage@K`` (catalogue level) = share of items that appear in some user's top K.

With one target (leave-one-out) recall@K equals hr@K and ndcg@K is 1/log2(rank + 1).
"""

from __future__ import annotations

import torch
from torch import Tensor


def target_ranks(scores: Tensor, targets: Tensor, chunk: int = 1 << 24, bisect_above: int = 16) -> Tensor:
    """Pessimistic 1-based rank of each target.

    With few targets per user (leave-one-out) each target's score is compared with the
    whole row (``O(B T N)``). With more than ``bisect_above`` (Gowalla's test sets hold up
    to hundreds of items) only the targets' scores are sorted and every item is placed
    among them by binary search (``O(B N log T)``); a per-row histogram of those positions,
    summed from the top, counts the items at or above each target. Both paths give
    exactly the same ranks, ties included (1.4 s instead of 45 s for 1024 users x 41k
    items x 200 targets on 2 CPU cores; a full sort of the rows would take 2 s).

    Args:
        scores: ``[B, N]`` scores, excluded items already at ``-inf``.
        targets: ``[B, T]`` column indices into ``scores``, ``-1`` for padding.
        chunk: rows are processed in pieces of at most this many comparisons.
        bisect_above: use the binary-search path when ``T`` exceeds this.

    Returns:
        ``[B, T]`` float ranks, ``inf`` at padding.
    """
    b, n = scores.shape
    t = targets.shape[1]
    valid = targets >= 0  # [B, T]
    target_scores = scores.gather(1, targets.clamp(min=0))  # [B, T]
    if t > bisect_above:
        padded = target_scores.masked_fill(~valid, float("inf"))  # [B, T] padding sorts last
        ascending, order = padded.sort(dim=1)  # [B, T]
        position = torch.searchsorted(ascending, scores.contiguous(), side="right")  # [B, N] #{t: s_t <= s_j}
        histogram = torch.zeros(b, t + 1, dtype=torch.long, device=scores.device)
        histogram.scatter_add_(1, position, torch.ones_like(position))  # [B, T + 1]
        at_or_above = histogram.flip(1).cumsum(1).flip(1)[:, 1:]  # [B, T] #{j: s_j >= k-th smallest s_t}
        ranks = torch.empty(b, t, dtype=torch.float32, device=scores.device)
        ranks.scatter_(1, order, at_or_above.float())
        return ranks.masked_fill(~valid, float("inf"))
    ranks = torch.empty(b, t, dtype=torch.float32, device=scores.device)
    step = max(1, chunk // max(1, n * t))
    for lo in range(0, b, step):
        s = scores[lo : lo + step].unsqueeze(1)  # [b, 1, N]
        ts = target_scores[lo : lo + step].unsqueeze(2)  # [b, T, 1]
        ranks[lo : lo + step] = (s >= ts).sum(2).float()  # [b, T]
    return ranks.masked_fill(~valid, float("inf"))


def metrics_from_ranks(ranks: Tensor, ks: list[int] | tuple[int, ...]) -> dict[str, Tensor]:
    """Per-user metrics from ``[B, T]`` ranks (``inf`` = padding).

    Returns:
        name -> ``[B]`` values, names ``ndcg@K``, ``hr@K``, ``recall@K`` and ``mrr``.
    """
    n_targets = torch.isfinite(ranks).sum(1).clamp(min=1).float()  # [B]
    gain = 1.0 / torch.log2(ranks + 1.0)  # [B, T], 0 at padding
    positions = torch.arange(1, ranks.shape[1] + 1, device=ranks.device, dtype=torch.float32)
    ideal_gain = 1.0 / torch.log2(positions + 1.0)  # [T]
    out: dict[str, Tensor] = {}
    for k in ks:
        hit = ranks <= k  # [B, T]
        ideal_n = n_targets.clamp(max=k).long()  # [B]
        ideal = torch.cumsum(ideal_gain, 0)[ideal_n - 1]  # [B]
        out[f"ndcg@{k}"] = (gain * hit).sum(1) / ideal
        out[f"hr@{k}"] = hit.any(1).float()
        out[f"recall@{k}"] = hit.sum(1).float() / n_targets
    out["mrr"] = 1.0 / ranks.min(1).values
    return out
