"""Binary cross-entropy: the positive labelled 1, each negative labelled 0."""

import torch.nn.functional as F
from torch import Tensor

from recsys.losses.base import RecLoss, Scores


class BCE(RecLoss):
    """``-ln sigmoid(s_pos) - sum_j ln(1 - sigmoid(s_neg_j))`` per row, averaged over rows.

    This is SASRec's original objective with one negative (Kang & McAuley, ICDM 2018); with
    ``N`` negatives the negative terms are summed, as in gSASRec (Petrov & Macdonald 2023).
    ``-ln(1 - sigmoid(x))`` is computed as ``softplus(x)`` for stability.

    Shape:
        pos ``[B]``, neg ``[B, N]`` -> scalar.
    """

    def forward(self, s: Scores) -> Tensor:
        pos_term = F.softplus(-s.pos.float())  # [B]
        neg_term = (F.softplus(s.neg.float()) * s.valid()).sum(1)  # [B]
        return (pos_term + neg_term).mean()
