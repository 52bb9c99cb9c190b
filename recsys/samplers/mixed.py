"""Mixed negative sampling: in-batch negatives plus a pool shared by the batch."""

import torch
from torch import Tensor

from recsys.data.interactions import SplitData
from recsys.errors import ConfigError, check_number
from recsys.samplers.base import Negatives, check_count, item_log_frequency
from recsys.samplers.in_batch import InBatchSampler

POOLS = ("uniform", "popularity")


class MixedSampler(InBatchSampler):
    """Mixed negative sampling (Yang et al., "Mixed Negative Sampling for Learning
    Two-tower Neural Networks in Recommendations", WWW 2020 companion): every row's
    negatives are the batch's in-batch negatives (the other rows' positives, exactly as
    :class:`InBatchSampler` gives them, ``max_negatives`` included) followed by a pool of
    ``num_negatives`` items drawn once per batch, with replacement, and shared by all rows.
    In-batch negatives are drawn by popularity only; the pool also reaches the long tail
    (``pool=uniform``) or a smoothed popularity (``pool=popularity``, ``alpha < 1``).

    **log q.** With ``B'`` in-batch candidates (the batch size, or ``max_negatives`` when
    the batch is larger) distributed as the training item frequency ``f_j`` (positives
    follow the interactions) and ``N`` pool draws from ``p_j`` (``1 / I`` for
    ``pool=uniform``, ``count_j ** alpha / sum_k count_k ** alpha`` for
    ``pool=popularity``), the expected number of times item ``j`` is among the batch's
    ``B' + N`` candidates is ``B' f_j + N p_j``, and

        ``log_q_j = log(B' * f_j + N * p_j)``

    is returned for every negative (``log_q``) and every positive (``pos_log_q``), so that
    ``loss=ssm`` subtracts it as it does for ``in_batch`` and ``popularity`` (the sampling
    bias correction of Yi et al. 2019 for the mixture; an expected count, as TensorFlow's
    sampled softmax subtracts ``log(expected_count)``). Counts, not probabilities: the
    mixture's probability ``(B' f_j + N p_j) / (B' + N)`` differs by ``log(B' + N)``, a
    shift shared by every candidate of the batch, positive included, which cancels in the
    softmax. What must not be done is to give in-batch candidates ``log f_j`` and pool
    candidates ``log p_j``: each is off by a different constant (``log B'`` and
    ``log N``), which does not cancel, and an item in both parts would get two values.
    Accidental hits (the row's own positive among the in-batch part or drawn into the
    pool) are masked by :meth:`~recsys.module.RecModule.scores`, as for other samplers.

    Args:
        num_negatives: size ``N`` of the shared pool.
        pool: ``uniform`` (over the catalogue) or ``popularity`` (``count ** alpha``).
        alpha: popularity exponent of ``pool=popularity`` (ignored by ``uniform``).
        max_negatives: cap on the in-batch part (:class:`InBatchSampler`); ``None``: no cap.
        seed: seed of the in-batch subset and pool draws (:class:`NegativeSampler`).
    """

    def __init__(
        self,
        num_negatives: int = 256,
        pool: str = "uniform",
        alpha: float = 1.0,
        max_negatives: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(max_negatives=max_negatives, seed=seed)
        check_count(num_negatives)
        if pool not in POOLS:
            raise ConfigError(f"sampler.pool must be one of {', '.join(POOLS)}, got {pool!r}")
        check_number("sampler.alpha", alpha, 0)
        self.num_negatives, self.pool, self.alpha = num_negatives, pool, float(alpha)

    def setup(self, split: SplitData) -> None:
        super().setup(split)  # self.log_q: [I] log f_j
        self.freq = self.log_q.exp()  # [I] f_j
        if self.pool == "uniform":
            self.pool_probs = torch.full((self.n_items,), 1.0 / self.n_items)  # [I] p_j
        else:
            self.pool_probs = item_log_frequency(split, self.alpha).exp()  # [I] p_j, 0 if never trained
        self._tables: dict[str, tuple[Tensor, Tensor]] = {}

    def tables(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """``f`` and ``p`` (``[I]`` each) on ``device``, copied there once."""
        key = str(device)
        if key not in self._tables:
            self._tables[key] = (self.freq.to(device), self.pool_probs.to(device))
        return self._tables[key]

    def mixture_log_q(self, items: Tensor, in_batch: int) -> Tensor:
        """``log(B' f_j + N p_j)`` of ``items`` (any shape) for ``B' = in_batch``."""
        freq, probs = self.tables(items.device)
        return (in_batch * freq[items] + self.num_negatives * probs[items]).log()

    def sample(self, pos: Tensor, user: Tensor) -> Negatives:
        in_batch = self.batch_items(pos)  # [B'] the batch's positives, or a subset
        gen = self.generator(pos.device)
        if self.pool == "uniform":
            drawn = torch.randint(self.n_items, (self.num_negatives,), generator=gen, device=pos.device)  # [N]
        else:
            probs = self.tables(pos.device)[1]
            drawn = torch.multinomial(probs, self.num_negatives, replacement=True, generator=gen)  # [N]
        items = torch.cat([in_batch, drawn])  # [B' + N] shared by every row
        b = in_batch.numel()
        return Negatives(items=items, log_q=self.mixture_log_q(items, b), pos_log_q=self.mixture_log_q(pos, b))
