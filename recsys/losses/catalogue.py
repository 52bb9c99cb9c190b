"""Full-softmax cross-entropy that scores the whole catalogue itself: in one pass with one
score buffer (the default of ``loss=ce`` and ``loss=poly``), or in bounded memory
(``loss.item_chunk``).

Poly-1 (Leng et al., ICLR 2022) adds ``epsilon * (1 - p_target)`` to each row's
cross-entropy (``epsilon`` argument; 0 = plain cross-entropy). Its gradient with respect to
the scores is the cross-entropy's, ``softmax - onehot``, times ``1 + epsilon * p_target``
row by row (``d p_t / d s_j = p_t (onehot_j - p_j)``), so both passes below serve it with
one extra ``[R]`` factor.

One pass (:func:`whole_catalogue_cross_entropy`): for a dot-product model the scores
``Q E^T`` ``[R, I]``, the softmax and its gradient share one buffer, turned in place into
the softmax in the forward pass and into the gradient of the scores in the backward pass
(``F.cross_entropy`` on materialized scores keeps the scores, their log-softmax and a
zero-filled gradient: three ``[R, I]`` buffers and twice the passes over them). On ml1m's
SASRec (13k rows x 3,416 items a step) this took a sixth off the training step on 2 CPU
cores. Other models, and mixed precision, score with ``model.score`` and use
``F.cross_entropy``.

Bounded memory:

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
replayed in the recomputation) all work; a dot-product model takes a fused path with the
same arithmetic and no autograd graph per chunk. Cost: one extra scoring pass (the
recomputation), so about 4/3 of the matrix products of the plain path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from recsys.errors import ConfigError

Score = Callable[[Tensor, Tensor], Tensor]  # score(query [R, D], items [c, D]) -> [R, c]


@dataclass
class CatalogueScores:
    """The scores of every training row against the whole catalogue, not materialized:
    what a loss that scores the catalogue itself (``RecLoss.takes_catalogue()``: ``loss=ce``, ``loss=poly``)
    receives instead of :class:`~recsys.losses.base.Scores` (``sampler=full``).

    Attributes:
        query: ``[R, D]`` one query vector per training row.
        items: ``[I, D]`` the vector of every item (``model.item_embeddings()``).
        target: ``[R]`` the positive item of each row.
        score: the model's ``score(query, items)`` -> ``[R, c]`` for ``items`` ``[c, D]``.
        dot: True when ``score`` is the plain dot product ``query @ items.T``.
    """

    query: Tensor
    items: Tensor
    target: Tensor
    score: Score
    dot: bool = False  # score(query, items) is query @ items.T (the one-pass path computes it itself)


def check_catalogue_sampler(loss: object, sampler: object) -> None:
    """A loss with ``item_chunk`` set scores the whole catalogue, which only ``sampler=full`` asks for."""
    from recsys.samplers.full import FullSampler

    if getattr(loss, "item_chunk", None) is not None and not isinstance(sampler, FullSampler):
        raise ConfigError(
            f"loss.item_chunk chunks the whole-catalogue softmax, but the sampler is {type(sampler).__name__}, "
            f"whose negatives are already few; use sampler=full or loss.item_chunk=null"
        )


def _fused(s: CatalogueScores) -> bool:
    """The fused paths compute ``query @ items.T`` themselves: dot-product models outside autocast."""
    return s.dot and not torch.is_autocast_enabled(s.query.device.type)


def poly1_mean(ce: Tensor, epsilon: float) -> Tensor:
    """Mean over rows of ``ce + epsilon * (1 - p_target)``, ``p_target = exp(-ce)``, from
    ``[R]`` per-row cross-entropies (``epsilon = 0``: their plain mean)."""
    if not epsilon:
        return ce.mean()
    return (ce + epsilon * (1.0 - torch.exp(-ce))).mean()


def whole_catalogue_cross_entropy(s: CatalogueScores, epsilon: float = 0.0) -> Tensor:
    """Mean over rows of ``logsumexp_i s_ri - s_r,target``, all items at once: the value of
    ``F.cross_entropy(score(query, items), target)``; one ``[R, I]`` buffer for a
    dot-product model outside autocast, ``F.cross_entropy`` otherwise. With ``epsilon``,
    Poly-1: each row's term plus ``epsilon * (1 - p_target)``.

    Shape:
        query ``[R, D]``, items ``[I, D]``, target ``[R]`` -> scalar.
    """
    if _fused(s):
        return _DotCrossEntropy.apply(s.query, s.items, s.target, float(epsilon))
    z = s.score(s.query, s.items)  # [R, I]
    z = z if z.dtype == torch.float64 else z.float()
    if not epsilon:
        return F.cross_entropy(z, s.target)
    return poly1_mean(F.cross_entropy(z, s.target, reduction="none"), epsilon)


class _DotCrossEntropy(torch.autograd.Function):
    """query ``[R, D]``, items ``[I, D]``, target ``[R]``, epsilon -> the mean cross-entropy
    (Poly-1 for ``epsilon != 0``) of the scores ``query @ items.T``, in one ``[R, I]``
    buffer: scores, then in place the softmax (kept for the backward pass), then in place
    the scores' gradient ``(softmax - onehot) * (1 + epsilon * p_target) / R``. The buffer
    is used up by the backward pass, which therefore runs once (no ``retain_graph``)."""

    @staticmethod
    def forward(ctx, query: Tensor, items: Tensor, target: Tensor, epsilon: float) -> Tensor:
        z = query @ items.T  # [R, I]
        pos = z.gather(1, target.unsqueeze(1))  # [R, 1]
        top = z.amax(1, keepdim=True)  # [R, 1]
        z.sub_(top).exp_()  # [R, I] exp(s - max)
        total = z.sum(1, keepdim=True)  # [R, 1]
        ce = total.log() + top - pos  # [R, 1]
        z.div_(total)  # [R, I] softmax
        row_weight = None
        if epsilon:
            p_target = torch.exp(-ce)  # [R, 1]
            row_weight = 1.0 + epsilon * p_target  # [R, 1] d poly / d ce, row by row
            ce = ce + epsilon * (1.0 - p_target)
        ctx.save_for_backward(query, items, target, z, row_weight)
        ctx.used = False
        return ce.mean()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        if ctx.used:
            raise RuntimeError("the one-pass full-softmax cross-entropy runs its backward pass once (no retain_graph)")
        ctx.used = True
        query, items, target, p, row_weight = ctx.saved_tensors
        p[torch.arange(target.numel(), device=target.device), target] -= 1.0  # [R, I] softmax - onehot
        scale = grad / target.numel()
        p.mul_(scale if row_weight is None else row_weight * scale)  # [R, I] d loss / d scores
        grad_query = p @ items if ctx.needs_input_grad[0] else None  # [R, D]
        grad_items = p.T @ query if ctx.needs_input_grad[1] else None  # [I, D]
        return grad_query, grad_items, None, None


def catalogue_cross_entropy(s: CatalogueScores, item_chunk: int, epsilon: float = 0.0) -> Tensor:
    """Mean over rows of ``logsumexp_i s_ri - s_r,target``, the value of
    ``F.cross_entropy(score(query, items), target)``, holding ``[R, item_chunk]`` scores at a
    time. With ``epsilon``, Poly-1: each row's term plus ``epsilon * (1 - p_target)``.

    A dot-product model outside autocast takes one autograd function that scores each
    chunk twice (forward: a running log-partition; backward: the chunk's softmax turned in
    place into its gradient); other models score through ``model.score`` under
    :func:`torch.utils.checkpoint.checkpoint` (their dropout replayed).

    Shape:
        query ``[R, D]``, items ``[I, D]``, target ``[R]`` -> scalar.
    """
    if _fused(s):
        return _ChunkedDotCrossEntropy.apply(s.query, s.items, s.target, item_chunk, float(epsilon))
    lse, pos = [], []
    for lo, block in zip(range(0, s.items.shape[0], item_chunk), s.items.split(item_chunk)):
        local = s.target - lo  # [R] the positive's column in this chunk, if it lies in it
        chunk_lse, chunk_pos = checkpoint(_chunk_terms, s.score, s.query, block, local, use_reentrant=False)
        lse.append(chunk_lse)  # [R]
        pos.append(chunk_pos)  # [R], 0 where the positive is elsewhere
    log_partition = torch.logsumexp(torch.stack(lse, dim=1), dim=1)  # [R]
    return poly1_mean(log_partition - torch.stack(pos, dim=1).sum(1), epsilon)


class _ChunkedDotCrossEntropy(torch.autograd.Function):
    """query ``[R, D]``, items ``[I, D]``, target ``[R]``, chunk, epsilon -> the mean
    cross-entropy (Poly-1 for ``epsilon != 0``) of ``query @ items.T``, holding ``[R, chunk]``
    scores at a time. Forward: each chunk's scores update a running maximum and sum of
    exponentials (the online log-sum-exp), and give the positive's score where it lies.
    Backward: each chunk's scores again, turned in place into ``(softmax - onehot) *
    (1 + epsilon * p_target) * grad / R`` with the saved log-partition, then the chunk's
    share of both gradients."""

    @staticmethod
    def forward(ctx, query: Tensor, items: Tensor, target: Tensor, chunk: int, epsilon: float) -> Tensor:
        rows = query.shape[0]
        top = query.new_full((rows,), float("-inf"))  # [R] running maximum
        total = query.new_zeros(rows)  # [R] running sum of exp(s - top)
        pos = query.new_zeros(rows)  # [R]
        for lo in range(0, items.shape[0], chunk):
            z = query @ items[lo:lo + chunk].T  # [R, c]
            inside = (target >= lo) & (target < lo + z.shape[1])  # [R]
            pos[inside] = z[inside, target[inside] - lo]
            new_top = torch.maximum(top, z.amax(1))  # [R]
            total = total * torch.exp(top - new_top) + z.sub_(new_top.unsqueeze(1)).exp_().sum(1)
            top = new_top
        log_partition = top + total.log()  # [R]
        ce = log_partition - pos  # [R]
        row_weight = None
        if epsilon:
            p_target = torch.exp(-ce)  # [R]
            row_weight = 1.0 + epsilon * p_target  # [R] d poly / d ce, row by row
            ce = ce + epsilon * (1.0 - p_target)
        ctx.save_for_backward(query, items, target, log_partition, row_weight)
        ctx.chunk = chunk
        return ce.mean()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor | None, None, None, None]:
        query, items, target, log_partition, row_weight = ctx.saved_tensors
        scale = grad / target.numel()
        if row_weight is not None:
            scale = (row_weight * scale).unsqueeze(1)  # [R, 1]
        grad_query = torch.zeros_like(query)  # [R, D]
        grad_items = torch.empty_like(items) if ctx.needs_input_grad[1] else None  # [I, D]
        for lo in range(0, items.shape[0], ctx.chunk):
            block = items[lo:lo + ctx.chunk]  # [c, D]
            p = (query @ block.T).sub_(log_partition.unsqueeze(1)).exp_()  # [R, c] softmax columns
            inside = ((target >= lo) & (target < lo + block.shape[0])).nonzero().squeeze(1)  # rows whose positive is here
            p[inside, target[inside] - lo] -= 1.0
            p.mul_(scale)  # [R, c] d loss / d scores
            grad_query += p @ block
            if grad_items is not None:
                grad_items[lo:lo + block.shape[0]] = p.T @ query
        return grad_query, grad_items, None, None, None


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
