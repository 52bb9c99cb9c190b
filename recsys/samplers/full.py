"""Every item is a negative: no sampling (full softmax cross-entropy)."""

from torch import Tensor

from recsys.samplers.base import Negatives, NegativeSampler


class FullSampler(NegativeSampler):
    """Scores the positive against the whole catalogue; the loss masks the positive out."""

    def sample(self, pos: Tensor, user: Tensor) -> Negatives:
        return Negatives(items=None)
