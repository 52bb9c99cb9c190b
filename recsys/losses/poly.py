"""Poly-1 loss (Leng et al., ICLR 2022)."""

import torch
from torch import Tensor

from recsys.losses.base import RecLoss, Scores, masked_logits, per_row_ce_first


class Poly1(RecLoss):
    """``CE + epsilon * (1 - p_target)`` with ``p_target`` the softmax probability of the
    positive among the candidates (positive + valid negatives). ``epsilon > 0`` puts more
    weight on well-classified rows, ``epsilon < 0`` less (``-1`` removes the first
    polynomial term of CE).

    Args:
        epsilon: weight of the first polynomial term.

    Shape:
        pos ``[B]``, neg ``[B, N]`` -> scalar.
    """

    def __init__(self, epsilon: float = 1.0) -> None:
        super().__init__()
        self.epsilon = epsilon

    def forward(self, s: Scores) -> Tensor:
        ce = per_row_ce_first(masked_logits(s))  # [B]
        p_target = torch.exp(-ce)  # softmax probability of column 0
        return (ce + self.epsilon * (1.0 - p_target)).mean()
