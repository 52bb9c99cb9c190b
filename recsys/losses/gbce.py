"""Generalized binary cross-entropy of gSASRec (Petrov & Macdonald, RecSys 2023)."""

import torch.nn.functional as F
from torch import Tensor

from recsys.errors import check_number
from recsys.losses.base import RecLoss, Scores


class GBCE(RecLoss):
    """BCE whose positive probability is raised to the power ``beta``:

    ``loss = -beta * ln sigmoid(s_pos) - sum_j ln(1 - sigmoid(s_neg_j))``, with
    ``beta = alpha * (t * (1 - 1/alpha) + 1/alpha)`` and the sampling rate
    ``alpha = k / (|I| - 1)`` for ``k`` negatives per positive. ``t = 0`` is plain BCE;
    ``t = 1`` fully counteracts the overconfidence that negative sampling induces. The
    gSASRec code writes the same thing as a BCE on a transformed positive logit
    ``ln(1 / (sigmoid(s)^-beta - 1))``; this form is the same value without its clamps.

    ``t`` is a scheduled attribute: ``callbacks=[default,gbce_t_warmup]`` warms it up from
    0 (BCE) to its value, and every value set is checked to lie in [0, 1].

    Args:
        t: calibration parameter in [0, 1] (0.75 in the paper's ML-1M setting).

    Shape:
        pos ``[B]``, neg ``[B, k]`` -> scalar.
    """

    scheduled = ("t",)

    def __init__(self, t: float = 0.75) -> None:
        super().__init__()
        self.t = t
        self.n_items: int | None = None

    @property
    def t(self) -> float:
        return self._t

    @t.setter
    def t(self, value: float) -> None:
        self._t = check_number("loss.t", value, 0, 1)

    def beta(self, negatives: int) -> float:
        if self.n_items is None:
            raise RuntimeError("GBCE.setup(split) must be called before training")
        alpha = min(1.0, negatives / (self.n_items - 1))
        return alpha * (self.t * (1.0 - 1.0 / alpha) + 1.0 / alpha)

    def forward(self, s: Scores) -> Tensor:
        valid = s.valid()
        beta = self.beta(s.neg.shape[1])
        pos_term = beta * F.softplus(-s.pos.float())  # [B] = -beta ln sigmoid(pos)
        neg_term = (F.softplus(s.neg.float()) * valid).sum(1)  # [B]
        return (pos_term + neg_term).mean()
