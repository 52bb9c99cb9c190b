"""In-batch negatives: the other rows' positives."""

import torch
from torch import Tensor

from recsys.data.interactions import SplitData
from recsys.errors import ConfigError
from recsys.samplers.base import Negatives, NegativeSampler, item_log_frequency


class InBatchSampler(NegativeSampler):
    """Uses the batch's positives as shared negatives for every row.

    Popular items appear in batches more often, so ``log_q`` is the log of the item's
    training frequency (Yi et al. 2019); the row's own positive (and duplicates of it) are
    accidental hits that the loss masks.

    Args:
        max_negatives: cap on the number of in-batch negatives. A sequence model trains on
            every position, so one SASRec batch of 128 sequences of length 200 has ~25k
            positives and an uncapped ``[25k, 25k]`` logit matrix; above the cap a uniform
            random subset of the batch's positives (drawn without replacement from the
            positions, so still proportional to item frequency: ``log_q`` is unchanged) is
            used. ``None``: no cap.
        seed: seed of the subset draw (:class:`NegativeSampler`).
    """

    def __init__(self, max_negatives: int | None = None, seed: int = 0) -> None:
        super().__init__(seed)
        if max_negatives is not None and (
            isinstance(max_negatives, bool) or not isinstance(max_negatives, int) or max_negatives < 2
        ):
            raise ConfigError(f"sampler.max_negatives must be an integer >= 2 or null, got {max_negatives!r}")
        self.max_negatives = max_negatives

    def setup(self, split: SplitData) -> None:
        super().setup(split)
        self.log_q = item_log_frequency(split)  # [I]

    def batch_items(self, pos: Tensor) -> Tensor:
        """``[M]`` the negatives: the batch's positives ``[B]``, or a random subset of
        ``max_negatives`` of them when the batch is larger."""
        if self.max_negatives is None or pos.numel() <= self.max_negatives:
            return pos  # [B]
        gen = self.generator(pos.device)
        keep = torch.randperm(pos.numel(), generator=gen, device=pos.device)[: self.max_negatives]  # [M]
        return pos[keep]  # [M]

    def sample(self, pos: Tensor, user: Tensor) -> Negatives:
        items = self.batch_items(pos)  # [M]
        log_q_table = self.log_q.to(pos.device)
        return Negatives(items=items, log_q=log_q_table[items], pos_log_q=log_q_table[pos])
