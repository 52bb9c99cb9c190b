"""Full-softmax cross-entropy over the whole catalogue in bounded memory (``loss.item_chunk``).

The plain full-softmax path scores every training row against every item at once: an
``[R, I]`` matrix, kept for the backward pass with its softmax (about 11 bytes per cell at
its peak, 11 GB for 1,024 rows x 1M items). Here the catalogue is cut into chunks of
``item_chunk`` items. Each chunk's scores give that chunk's log-partition
``logsumexp_{i in chunk} s_ri`` and the positive's score if the positive lies in it; the
scores are then dropped and recomputed in the backward pass
(:func:`torch.utils.checkpoint.checkpoint`), so forward and backward hold the scores of one
chunk at a time (``[R, item_chunk]``), whatever the catalogue size. The chunks'
log-partitions combine exactly: ``logsumexp_i s_ri = logsumexp_k lse_rk``.

Any model composes: a chunk is scored by the model's own ``score(query, items[chunk])``, so
dot products, cosine scores and networks on pairs (NeuMF, Wide & Deep; their dropout is
replayed in the recomputation) all work. Cost: one extra scoring pass (the recomputation),
so about 4/3 of the matrix products of the plain path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from recsys.errors import ConfigError

Score = Callable[[Tensor, Tensor], Tensor]  # score(query [R, D], items [c, D]) -> [R, c]


@dataclass
class CatalogueScores:
    """The scores of every training row against the whole catalogue, not materialized:
    what a loss with ``item_chunk`` set receives instead of :class:`~recsys.losses.base.Scores`
    (``sampler=full``), to score the catalogue itself, chunk by chunk.

    Attributes:
        query: ``[R, D]`` one query vector per training row.
        items: ``[I, D]`` the vector of every item (``model.item_embeddings()``).
        target: ``[R]`` the positive item of each row.
        score: the model's ``score(query, items)`` -> ``[R, c]`` for ``items`` ``[c, D]``.
    """

    query: Tensor
    items: Tensor
    target: Tensor
    score: Score


def check_catalogue_sampler(loss: object, sampler: object) -> None:
    """A loss with ``item_chunk`` set scores the whole catalogue, which only ``sampler=full`` asks for."""
    from recsys.samplers.full import FullSampler

    if getattr(loss, "item_chunk", None) is not None and not isinstance(sampler, FullSampler):
        raise ConfigError(
            f"loss.item_chunk chunks the whole-catalogue softmax, but the sampler is {type(sampler).__name__}, "
            f"whose negatives are already few; use sampler=full or loss.item_chunk=null"
        )


def catalogue_cross_entropy(s: CatalogueScores, item_chunk: int) -> Tensor:
    """Mean over rows of ``logsumexp_i s_ri - s_r,target``, the value of
    ``F.cross_entropy(score(query, items), target)``, holding ``[R, item_chunk]`` scores at a time.

    Shape:
        query ``[R, D]``, items ``[I, D]``, target ``[R]`` -> scalar.
    """
    lse, pos = [], []
    for lo, block in zip(range(0, s.items.shape[0], item_chunk), s.items.split(item_chunk)):
        local = s.target - lo  # [R] the positive's column in this chunk, if it lies in it
        chunk_lse, chunk_pos = checkpoint(_chunk_terms, s.score, s.query, block, local, use_reentrant=False)
        lse.append(chunk_lse)  # [R]
        pos.append(chunk_pos)  # [R], 0 where the positive is elsewhere
    log_partition = torch.logsumexp(torch.stack(lse, dim=1), dim=1)  # [R]
    return (log_partition - torch.stack(pos, dim=1).sum(1)).mean()


def _chunk_terms(score: Score, query: Tensor, block: Tensor, local: Tensor) -> tuple[Tensor, Tensor]:
    """``[R]`` log-partition of one chunk and ``[R]`` the positive's score where it lies in the chunk (else 0)."""
    z = score(query, block)  # [R, c]
    z = z if z.dtype == torch.float64 else z.float()  # as the plain path: at least float32
    return _ChunkTerms.apply(z, local)


class _ChunkTerms(torch.autograd.Function):
    """``[R, c]`` chunk scores -> ``[R]`` row-wise ``logsumexp`` and ``[R]`` the score at
    column ``local`` (0 where ``local`` is outside the chunk), with one fused backward: the
    gradient of a chunk's log-partition is the softmax within the chunk, plus the
    positive's one-hot (autograd's own backward of ``logsumexp`` and ``gather`` would take
    several passes and a second ``[R, c]`` buffer)."""

    @staticmethod
    def forward(ctx, z: Tensor, local: Tensor) -> tuple[Tensor, Tensor]:
        inside = (local >= 0) & (local < z.shape[1])  # [R]
        column = local.clamp(0, z.shape[1] - 1).unsqueeze(1)  # [R, 1]
        pos = z.gather(1, column).squeeze(1).masked_fill(~inside, 0.0)  # [R]
        ctx.save_for_backward(z, column, inside)
        return torch.logsumexp(z, dim=1), pos

    @staticmethod
    def backward(ctx, grad_lse: Tensor, grad_pos: Tensor) -> tuple[Tensor, None]:
        z, column, inside = ctx.saved_tensors
        grad = torch.softmax(z, dim=1).mul_(grad_lse.unsqueeze(1))  # [R, c]
        return grad.scatter_add_(1, column, (grad_pos * inside).unsqueeze(1)), None
