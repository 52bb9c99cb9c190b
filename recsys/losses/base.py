"""The loss contract shared by every objective.

A model never computes its loss. The LightningModule scores each training row's positive
and its negatives, packs them into :class:`Scores`, and calls the injected loss. Any model
therefore trains with any loss by changing ``loss=`` (and ``sampler=``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from recsys.data.interactions import SplitData


@dataclass
class Scores:
    """Scores of one training batch.

    Attributes:
        pos: ``[B]`` score of each row's positive item.
        neg: ``[B, N]`` scores of the negatives (sampled, in-batch or the whole catalogue).
        neg_mask: ``[B, N]`` bool, False where a "negative" is really a positive (an
            accidental hit) or padding; such entries must not affect value or gradient.
        pos_log_q: ``[B]`` log sampling probability of the positives (logQ correction).
        neg_log_q: ``[B, N]`` log sampling probability of the negatives.
        pos_column: ``[B]`` set when ``neg`` scores the whole catalogue: the column of
            ``neg`` that holds the positive itself, which is not a negative. Losses see it
            masked out through :meth:`valid`; full cross-entropy uses it directly.
        query: ``[B, D]`` the query (user) vectors that produced the scores, for losses
            that look at the representations (e.g. entropy-adaptive InfoNCE).
    """

    pos: Tensor
    neg: Tensor
    neg_mask: Tensor | None = None
    pos_log_q: Tensor | None = None
    neg_log_q: Tensor | None = None
    pos_column: Tensor | None = None
    query: Tensor | None = None

    def valid(self) -> Tensor:
        """``[B, N]`` True for the entries that are real negatives."""
        valid = torch.ones_like(self.neg, dtype=torch.bool) if self.neg_mask is None else self.neg_mask
        if self.pos_column is not None:
            columns = torch.arange(self.neg.shape[1], device=self.neg.device)
            valid = valid & (columns.unsqueeze(0) != self.pos_column.unsqueeze(1))  # [B, N]
        return valid


class RecLoss(nn.Module):
    """Base class of losses.

    ``scheduled`` names the float attributes that callbacks may change during training
    (temperature, logQ lambda, margin...); each is logged every step as ``sched/<name>``.

    A loss whose :meth:`takes_catalogue` is True scores the whole catalogue itself: with
    ``sampler=full`` the module passes it
    :class:`~recsys.losses.catalogue.CatalogueScores` (query and item vectors) instead of
    an ``[R, I]`` :class:`Scores` (``loss=ce`` and ``loss=poly``: in one pass, or
    ``item_chunk`` items at a time with ``loss.item_chunk=N``).
    """

    scheduled: ClassVar[tuple[str, ...]] = ()
    item_chunk: int | None = None

    def takes_catalogue(self) -> bool:
        """True: with ``sampler=full`` this loss receives :class:`CatalogueScores` (by
        default only when it chunks the catalogue, ``item_chunk``)."""
        return self.item_chunk is not None

    def setup(self, split: SplitData) -> None:
        """Called once before training with the data split, as models and samplers are
        (:func:`recsys.wiring.build`); the base keeps the catalogue size, which some
        corrections need."""
        self.n_items = split.n_items

    def forward(self, scores: Scores) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def schedule_values(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in self.scheduled}


def masked_logits(scores: Scores, neg: Tensor | None = None) -> Tensor:
    """``[B, 1 + N]`` positive logit first, then negatives with masked ones at ``-inf``."""
    neg = scores.neg if neg is None else neg
    neg = neg.masked_fill(~scores.valid(), float("-inf"))
    return torch.cat([scores.pos.unsqueeze(1), neg], dim=1)


def negative_mask(scores: Scores) -> Tensor | None:
    """``[B, N]`` :meth:`Scores.valid`, or None when every negative is valid (no mask to apply)."""
    if scores.neg_mask is None and scores.pos_column is None:
        return None
    return scores.valid()


def masked_softmax_ce(pos: Tensor, neg: Tensor, valid: Tensor | None) -> Tensor:
    """Mean over rows of ``-pos + ln(exp(pos) + sum_{valid j} exp(neg_j))``: the value and
    gradients of ``softmax_ce_first`` on ``[pos, neg]`` with invalid negatives at ``-inf``,
    without building that ``[B, 1 + N]`` matrix: one ``[B, N]`` buffer holds the masked
    negatives, then in place their softmax (kept for the backward pass), in float32 or wider.

    Shape:
        pos ``[B]``, neg ``[B, N]``, valid ``[B, N]`` bool or None (all valid) -> scalar.
    """
    dtype = torch.promote_types(neg.dtype, torch.float32)
    return _MaskedSoftmaxCE.apply(pos.to(dtype), neg.to(dtype), valid)


class _MaskedSoftmaxCE(torch.autograd.Function):
    """pos ``[B]``, neg ``[B, N]``, valid -> the mean softmax cross-entropy with the positive
    as target. Gradients: ``(p_neg) / B`` for the negatives (0 where invalid) and
    ``(p_pos - 1) / B`` for the positives."""

    @staticmethod
    def forward(ctx, pos: Tensor, neg: Tensor, valid: Tensor | None) -> Tensor:
        z = neg.clone() if valid is None else neg.masked_fill(~valid, float("-inf"))  # [B, N]
        top = torch.maximum(z.amax(1), pos) if z.shape[1] else pos  # [B]
        z.sub_(top.unsqueeze(1)).exp_()  # [B, N] exp(s - top), 0 where invalid
        pos_exp = torch.exp(pos - top)  # [B]
        total = z.sum(1) + pos_exp  # [B]
        loss = (total.log() + top - pos).mean()
        z.div_(total.unsqueeze(1))  # [B, N] softmax of the negatives
        ctx.save_for_backward(z, pos_exp / total)
        return loss

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        p_neg, p_pos = ctx.saved_tensors
        scale = grad / p_pos.numel()
        return (p_pos - 1.0) * scale, p_neg * scale, None


def softmax_ce_first(logits: Tensor) -> Tensor:
    """Mean cross-entropy with the target in column 0 of ``logits`` (``[B, 1 + N]``)."""
    return per_row_ce_first(logits).mean()


def per_row_ce_first(logits: Tensor) -> Tensor:
    """``[B]`` cross-entropy of each row with the target in column 0."""
    return torch.logsumexp(logits.float(), dim=1) - logits[:, 0].float()
