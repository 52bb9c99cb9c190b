"""Negatives drawn by training popularity, exposing their log-probabilities for logQ."""

import torch
from torch import Tensor

from recsys.data.interactions import SplitData
from recsys.errors import ConfigError
from recsys.samplers.base import Negatives, NegativeSampler, check_count, item_log_frequency


class PopularitySampler(NegativeSampler):
    """Draws item ``j`` with probability ``q_j`` proportional to ``count_j ** alpha``.

    ``log_q`` of every drawn item (and ``pos_log_q`` of the positives) is returned, so that
    a sampled-softmax loss can subtract it (logQ correction, Yi et al. 2019).

    Args:
        num_negatives: number of negatives (shared by the batch or per row).
        alpha: popularity exponent; 1 samples by frequency, 0.75 is word2vec's smoothing.
        shared: one set of negatives for the whole batch instead of one per row.
        seed: seed of the sampler's generator (:class:`NegativeSampler`).
    """

    def __init__(self, num_negatives: int = 256, alpha: float = 1.0, shared: bool = True, seed: int = 0) -> None:
        super().__init__(seed)
        check_count(num_negatives)
        if alpha < 0:
            raise ConfigError(f"sampler.alpha must be >= 0, got {alpha}")
        self.num_negatives, self.alpha, self.shared = num_negatives, alpha, shared

    def setup(self, split: SplitData) -> None:
        super().setup(split)
        self.log_q = item_log_frequency(split, self.alpha)  # [I]
        self.probs = self.log_q.exp()

    def sample(self, pos: Tensor, user: Tensor) -> Negatives:
        device = pos.device
        rows = 1 if self.shared else pos.numel()
        count = rows * self.num_negatives
        items = torch.multinomial(self.probs, count, replacement=True, generator=self.generator())  # on the CPU
        items = items.view(-1) if self.shared else items.view(rows, self.num_negatives)  # [N] or [B, N]
        log_q = self.log_q[items]
        return Negatives(items=items.to(device), log_q=log_q.to(device), pos_log_q=self.log_q[pos.cpu()].to(device))
