"""Dynamic-margin BPR."""

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys.errors import ConfigError
from recsys.losses.base import RecLoss, Scores


class DynamicMarginBPR(RecLoss):
    """BPR with a margin that grows with how well a pair is already ranked:

    ``m = alpha * sigmoid(s_pos - s_neg)``, ``loss = softplus(-(s_pos - s_neg - m))``,
    averaged over the valid negatives of each row, then over rows. Easy pairs (large
    difference) must clear a margin up to ``alpha``; hard pairs train almost as plain BPR
    (Rendle et al. 2009, with the dynamic margin of the design notes).

    The margin is **detached** by default (``detach_margin=True``): it is a target the
    difference must clear, not something the model may shrink; without detaching, the
    margin's own gradient would partly cancel the push on easy pairs.

    Args:
        alpha: largest margin (scheduled).
        detach_margin: stop gradients through the margin.

    Shape:
        pos ``[B]``, neg ``[B, N]`` -> scalar.
    """

    scheduled = ("alpha",)

    def __init__(self, alpha: float = 1.0, detach_margin: bool = True) -> None:
        super().__init__()
        if alpha < 0:
            raise ConfigError(f"loss.alpha must be >= 0, got {alpha}")
        self.alpha, self.detach_margin = alpha, detach_margin

    def forward(self, s: Scores) -> Tensor:
        diff = (s.pos.unsqueeze(1) - s.neg).float()  # [B, N]
        margin = self.alpha * torch.sigmoid(diff.detach() if self.detach_margin else diff)
        valid = s.valid().float()
        per_pair = F.softplus(-(diff - margin))  # [B, N]
        return ((per_pair * valid).sum(1) / valid.sum(1).clamp(min=1.0)).mean()
