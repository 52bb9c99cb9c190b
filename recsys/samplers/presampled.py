"""A fixed list of negatives per user, drawn once with a seed."""

import torch
from torch import Tensor

from recsys.data.interactions import SplitData
from recsys.samplers.base import Negatives, NegativeSampler, check_count, history_keys, sample_excluding


class PresampledSampler(NegativeSampler):
    """Draws ``num_negatives`` items per user once, at set-up, with ``seed``; every training
    row of the user reuses them. No list contains the user's training items or their
    validation or test targets.

    Args:
        num_negatives: negatives per user.
        seed: seed of the one-off draw.
    """

    def __init__(self, num_negatives: int = 100, seed: int = 0) -> None:
        check_count(num_negatives)
        self.num_negatives, self.seed = num_negatives, seed

    def setup(self, split: SplitData) -> None:
        super().setup(split)
        gen = torch.Generator().manual_seed(self.seed)
        users = torch.arange(split.n_users)
        self.table = sample_excluding(
            users, self.num_negatives, split.n_items, history_keys(split), gen, "sampler=presampled"
        )  # [U, N]

    def sample(self, pos: Tensor, user: Tensor) -> Negatives:
        return Negatives(items=self.table[user.cpu()].to(pos.device))  # [B, N]
