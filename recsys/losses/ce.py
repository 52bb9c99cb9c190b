"""Full softmax cross-entropy over the whole catalogue."""

import torch.nn.functional as F
from torch import Tensor

from recsys.losses.base import RecLoss, Scores, masked_logits, softmax_ce_first


class CE(RecLoss):
    """``-s_pos + ln(exp(s_pos) + sum_j exp(s_neg_j))`` with every other item as a
    negative; use it with ``sampler=full`` (the positive's own column is masked out of
    ``neg``). This is the objective that makes SASRec match BERT4Rec (Klenitskiy &
    Vasilev, RecSys 2023).

    Shape:
        pos ``[B]``, neg ``[B, I]`` -> scalar.
    """

    def forward(self, s: Scores) -> Tensor:
        if s.pos_column is not None and s.neg_mask is None:  # fused path, same value
            return F.cross_entropy(s.neg.float(), s.pos_column)
        return softmax_ce_first(masked_logits(s))
