"""In-batch negatives: the other rows' positives."""

from torch import Tensor

from recsys.data.interactions import SplitData
from recsys.samplers.base import Negatives, NegativeSampler, item_log_frequency


class InBatchSampler(NegativeSampler):
    """Uses the batch's positives as shared negatives for every row.

    Popular items appear in batches more often, so ``log_q`` is the log of the item's
    training frequency (Yi et al. 2019); the row's own positive (and duplicates of it) are
    accidental hits that the loss masks.
    """

    def setup(self, split: SplitData) -> None:
        super().setup(split)
        self.log_q = item_log_frequency(split)  # [I]

    def sample(self, pos: Tensor, user: Tensor) -> Negatives:
        log_q = self.log_q.to(pos.device)[pos]  # [B]
        return Negatives(items=pos, log_q=log_q, pos_log_q=log_q)
