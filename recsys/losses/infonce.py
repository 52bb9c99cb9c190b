"""InfoNCE with a temperature (van den Oord et al. 2018; SimCLR, Chen et al. 2020)."""

from torch import Tensor

from recsys.errors import check_positive
from recsys.losses.base import RecLoss, Scores, masked_softmax_ce, negative_mask


class InfoNCE(RecLoss):
    """``-ln exp(s_pos/tau) / (exp(s_pos/tau) + sum_j exp(s_neg_j/tau))`` averaged over
    rows: one positive against ``N`` negatives, sampled or in-batch (accidental hits
    masked). ``temperature`` is a scheduled attribute (``temperature_annealing``).

    Args:
        temperature: tau > 0.

    Shape:
        pos ``[B]``, neg ``[B, N]`` -> scalar.
    """

    scheduled = ("temperature",)

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        check_positive("loss.temperature", temperature)
        self.temperature = temperature

    def forward(self, s: Scores) -> Tensor:
        return masked_softmax_ce(s.pos / self.temperature, s.neg / self.temperature, negative_mask(s))
