"""A fixed list of negatives per user, drawn once with a seed."""

import torch
from torch import Tensor

from recsys.data.interactions import SplitData
from recsys.data.sampling import history_keys, sample_excluding
from recsys.samplers.base import Negatives, NegativeSampler, check_count


class PresampledSampler(NegativeSampler):
    """Draws ``num_negatives`` items per user once, at set-up, from the sampler's generator
    (seeded from ``seed``; the sampled evaluation's negatives come from other streams, so
    the training lists are not the evaluation lists); every training row of the user
    reuses them. No list contains the user's *training* items; the
    validation and test targets may be drawn, as any other item: excluding them would tell
    the model which items are held out (a leak). Sampled *evaluation* negatives
    (``data.sampled_eval``) do exclude every item of the user.

    Args:
        num_negatives: negatives per user.
        seed: seed of the one-off draw.
    """

    def __init__(self, num_negatives: int = 100, seed: int = 0) -> None:
        super().__init__(seed)
        check_count(num_negatives)
        self.num_negatives = num_negatives

    def setup(self, split: SplitData) -> None:
        super().setup(split)
        users = torch.arange(split.n_users)
        forbidden = history_keys(split, include_targets=False)
        self.table = sample_excluding(
            users, self.num_negatives, split.n_items, forbidden, self.generator(), "sampler=presampled"
        )  # [U, N]

    def sample(self, pos: Tensor, user: Tensor) -> Negatives:
        return Negatives(items=self.table[user.cpu()].to(pos.device))  # [B, N]
