"""Log-energy softmax for models whose scores are non-negative energies."""

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys.errors import ConfigError
from recsys.losses.base import RecLoss, Scores, masked_softmax_ce, negative_mask


class CSAR(RecLoss):
    """Softmax cross-entropy on log-energies: ``logits = ln(energy)``.

    Models such as CSAR produce multiplicative, non-negative energies (softplus outputs);
    the log turns products into sums so a softmax applies. For a model with raw scores,
    ``energy="softplus"`` (the default) first maps scores to energies with softplus,
    which keeps the ranking order; ``energy="identity"`` takes the scores as energies.

    Args:
        energy: ``"softplus"`` or ``"identity"``.
        eps: floor inside the log.

    Shape:
        pos ``[B]``, neg ``[B, N]`` -> scalar.
    """

    def __init__(self, energy: str = "softplus", eps: float = 1e-8) -> None:
        super().__init__()
        if energy not in ("softplus", "identity"):
            raise ConfigError(f"loss.energy must be 'softplus' or 'identity', got {energy!r}")
        self.energy, self.eps = energy, eps

    def log_energy(self, scores: Tensor) -> Tensor:
        scores = scores.float()
        energy = F.softplus(scores) if self.energy == "softplus" else scores.clamp(min=0.0)
        return torch.log(energy + self.eps)

    def forward(self, s: Scores) -> Tensor:
        return masked_softmax_ce(self.log_energy(s.pos), self.log_energy(s.neg), negative_mask(s))
