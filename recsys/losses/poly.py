"""Poly-1 loss (Leng et al., "PolyLoss: A Polynomial Expansion Perspective of Classification
Loss Functions", ICLR 2022)."""

import torch.nn.functional as F
from torch import Tensor

from recsys.losses.base import RecLoss, Scores, masked_logits, per_row_ce_first
from recsys.losses.catalogue import (
    CatalogueScores,
    catalogue_cross_entropy,
    poly1_mean,
    whole_catalogue_cross_entropy,
)
from recsys.metrics.chunked import check_item_chunk


class Poly1(RecLoss):
    """``CE + epsilon * (1 - p_target)`` with ``p_target`` the softmax probability of the
    positive among the candidates (positive + valid negatives). ``epsilon > 0`` puts more
    weight on well-classified rows, ``epsilon < 0`` less (``-1`` removes the first
    polynomial term of CE).

    With ``sampler=full`` it scores the catalogue itself, as ``loss=ce`` does
    (:mod:`recsys.losses.catalogue`: one ``[R, I]`` buffer for a dot-product model, or
    ``item_chunk`` items at a time); with sampled negatives it takes :class:`Scores`.

    Args:
        epsilon: weight of the first polynomial term.
        item_chunk: None (default): all items at once. An integer: ``item_chunk`` items
            at a time (bounded memory; ``sampler=full`` only).

    Shape:
        pos ``[B]``, neg ``[B, N]`` -> scalar.
    """

    def __init__(self, epsilon: float = 1.0, item_chunk: int | None = None) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.item_chunk = check_item_chunk(item_chunk, "loss.item_chunk")

    def takes_catalogue(self) -> bool:
        return True

    def forward(self, s: Scores | CatalogueScores) -> Tensor:
        if isinstance(s, CatalogueScores):
            if self.item_chunk is None:
                return whole_catalogue_cross_entropy(s, self.epsilon)
            return catalogue_cross_entropy(s, self.item_chunk, self.epsilon)  # loss.item_chunk: bounded memory
        if s.pos_column is not None and s.neg_mask is None:  # the whole catalogue, materialized
            ce = F.cross_entropy(s.neg.float(), s.pos_column, reduction="none")  # [B]
        else:
            ce = per_row_ce_first(masked_logits(s))  # [B]
        return poly1_mean(ce, self.epsilon)
