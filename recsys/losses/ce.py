"""Full softmax cross-entropy over the whole catalogue."""

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


class CE(RecLoss):
    """``-s_pos + ln(exp(s_pos) + sum_j exp(s_neg_j))`` with every other item as a
    negative; use it with ``sampler=full`` (the positive's own column is masked out of
    ``neg``). This is the objective that makes SASRec match BERT4Rec (Klenitskiy &
    Vasilev, RecSys 2023).

    With ``sampler=full`` the loss scores the catalogue itself (:mod:`recsys.losses.catalogue`):
    given :class:`CatalogueScores` it computes a dot-product model's scores, softmax and
    gradient in one ``[R, I]`` buffer; given :class:`Scores` (the loss contract tests,
    other callers) it takes ``neg`` as the scores.

    Args:
        item_chunk: None (default): all items at once (``[R, I]``). An integer: ``item_chunk``
            items at a time in forward and backward, for catalogues whose ``[R, I]``
            matrix does not fit; the same value and gradients up to float rounding.
            ``sampler=full`` only.

    Shape:
        pos ``[B]``, neg ``[B, I]`` -> scalar.
    """

    epsilon: float = 0.0  # Poly-1's weight of 1 - p_target (recsys.losses.poly); 0: plain cross-entropy

    def __init__(self, item_chunk: int | None = None) -> None:
        super().__init__()
        self.item_chunk = check_item_chunk(item_chunk, "loss.item_chunk")

    def takes_catalogue(self) -> bool:
        return True

    def forward(self, s: Scores | CatalogueScores) -> Tensor:
        if isinstance(s, CatalogueScores):
            if self.item_chunk is None:
                return whole_catalogue_cross_entropy(s, self.epsilon)
            return catalogue_cross_entropy(s, self.item_chunk, self.epsilon)  # loss.item_chunk: bounded memory
        if s.pos_column is not None and s.neg_mask is None:  # fused path, same value
            ce = F.cross_entropy(s.neg.float(), s.pos_column, reduction="none")  # [B]
        else:
            ce = per_row_ce_first(masked_logits(s))  # [B]
        return poly1_mean(ce, self.epsilon)
