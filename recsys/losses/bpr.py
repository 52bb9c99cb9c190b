"""Bayesian Personalized Ranking (Rendle et al., UAI 2009)."""

import torch.nn.functional as F
from torch import Tensor

from recsys.losses.base import RecLoss, Scores


class BPR(RecLoss):
    """``-ln sigmoid(s_pos - s_neg)``, averaged over the valid negatives of each row and
    then over rows.

    Shape:
        pos ``[B]``, neg ``[B, N]`` -> scalar.
    """

    def forward(self, s: Scores) -> Tensor:
        valid = s.valid().float()  # [B, N]
        per_pair = F.softplus(-(s.pos.unsqueeze(1) - s.neg).float())  # [B, N] = -ln sigmoid(diff)
        per_row = (per_pair * valid).sum(1) / valid.sum(1).clamp(min=1.0)  # [B]
        return per_row.mean()
