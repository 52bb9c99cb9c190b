"""Uniform negatives over the catalogue."""

import math

import torch
from torch import Tensor

from recsys.samplers.base import Negatives, NegativeSampler, check_count


class UniformSampler(NegativeSampler):
    """Draws negatives uniformly at random (with replacement).

    A draw can hit the positive itself; the loss masks such accidental hits.

    Args:
        num_negatives: negatives per training row (or in total when ``shared``).
        shared: one set of negatives for the whole batch (cheaper: one matmul) instead of
            a set per row.
        seed: seed of the sampler's generator (:class:`NegativeSampler`).
    """

    def __init__(self, num_negatives: int = 1, shared: bool = False, seed: int = 0) -> None:
        super().__init__(seed)
        check_count(num_negatives)
        self.num_negatives, self.shared = num_negatives, shared

    def sample(self, pos: Tensor, user: Tensor) -> Negatives:
        shape = (self.num_negatives,) if self.shared else (pos.numel(), self.num_negatives)
        gen = self.generator(pos.device)
        items = torch.randint(self.n_items, shape, generator=gen, device=pos.device)  # [N] or [B, N]
        log_q = torch.full(shape, -math.log(self.n_items), device=pos.device)
        return Negatives(items=items, log_q=log_q, pos_log_q=torch.full_like(pos, -math.log(self.n_items), dtype=log_q.dtype))
