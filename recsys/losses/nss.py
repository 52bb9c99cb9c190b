"""Normalized Sampled Softmax."""

import math

import torch
from torch import Tensor

from recsys.losses.base import RecLoss, Scores, masked_softmax_ce


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
        # The mean is a constant here (no gradient): the row's softmax cross-entropy does not
        # change when every logit of the row moves by the same amount, and var = E[(x - mean)^2]
        # has the gradient 2 (x - mean) / count whether or not the mean is differentiated (its
        # own term sums to zero). Fewer [B, N] passes than the formula written out: the same
        # value and gradients.
        with torch.no_grad():
            mean = (pos.sum() + torch.where(valid, neg, 0.0).sum()) / count
        pos_c = pos - mean  # [B]
        neg_c = (neg - mean).masked_fill(~valid, 0.0).flatten()  # [B * N]
        var = (pos_c.dot(pos_c) + neg_c.dot(neg_c)) / count
        inv_std = (var + self.eps).rsqrt()
        correction = self.correction(valid.sum(1)).unsqueeze(1)  # [B, 1]
        neg_z = torch.addcmul(correction, neg_c.view_as(neg), inv_std)  # [B, N] (neg - mean) / std + correction
        return masked_softmax_ce(pos_c * inv_std, neg_z, valid)
