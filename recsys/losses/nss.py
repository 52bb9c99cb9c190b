"""Normalized Sampled Softmax."""

import math

import torch
from torch import Tensor

from recsys.losses.base import RecLoss, Scores, masked_logits, softmax_ce_first


class NSS(RecLoss):
    """Normalized sampled softmax, stable without temperature tuning.

    1. z-score the batch's scores: ``s' = (s - mean) / std`` over the positives and the
       valid negatives of the whole batch (masked entries excluded from the statistics);
    2. sampled-softmax correction: each row's negatives stand for the ``N_items - 1``
       items that are not its positive, so their logits get ``+ ln((N_items - 1) / n)``,
       ``n`` being the row's number of valid negatives (``B - 1`` for in-batch negatives);
    3. softmax cross-entropy with the positive as target.

    Shape:
        pos ``[B]``, neg ``[B, N]`` -> scalar.
    """

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.n_items: int | None = None

    def correction(self, valid_negatives: Tensor) -> Tensor:
        """``[B]`` ln((N_items - 1) / n) for ``n`` valid negatives per row."""
        if self.n_items is None:
            raise RuntimeError("NSS.setup(split) must be called before training")
        return math.log(self.n_items - 1) - valid_negatives.float().clamp(min=1.0).log()

    def forward(self, s: Scores) -> Tensor:
        valid = s.valid()  # [B, N]
        pos, neg = s.pos.float(), s.neg.float()
        count = pos.numel() + valid.sum()
        mean = (pos.sum() + (neg * valid).sum()) / count
        var = (((pos - mean) ** 2).sum() + (((neg - mean) ** 2) * valid).sum()) / count
        std = (var + self.eps).sqrt()
        pos_z, neg_z = (pos - mean) / std, (neg - mean) / std
        neg_z = neg_z + self.correction(valid.sum(1)).unsqueeze(1)  # [B, N]
        return softmax_ce_first(masked_logits(Scores(pos=pos_z, neg=neg_z, neg_mask=valid)))
