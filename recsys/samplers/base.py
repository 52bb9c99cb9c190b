"""The sampler contract and shared helpers."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from recsys.data.interactions import SplitData
from recsys.errors import ConfigError


@dataclass
class Negatives:
    """Negative items for a batch of ``B`` training rows.

    Attributes:
        items: ``[B, N]`` per-row negatives, ``[N]`` negatives shared by every row, or
            ``None`` meaning every item of the catalogue (full softmax).
        log_q: log sampling probability of each negative (same shape as ``items``), for
            logQ correction; ``None`` when the sampler does not define one.
        pos_log_q: ``[B]`` log probability with which the positives would be sampled.
    """

    items: Tensor | None
    log_q: Tensor | None = None
    pos_log_q: Tensor | None = None


class NegativeSampler:
    """Base class. :meth:`setup` sees the training split once; :meth:`sample` is called on
    every training step with the positives and their users."""

    def setup(self, split: SplitData) -> None:
        self.n_items = split.n_items

    def sample(self, pos: Tensor, user: Tensor) -> Negatives:  # pragma: no cover - abstract
        raise NotImplementedError


def check_count(num_negatives: int) -> None:
    if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
        raise ConfigError(f"sampler.num_negatives must be a positive integer, got {num_negatives!r}")


def item_log_frequency(split: SplitData, alpha: float = 1.0) -> Tensor:
    """``[I]`` log of each item's training frequency raised to ``alpha``, normalized to a
    distribution; items never seen in training get probability 0 (``-inf``)."""
    weight = split.train.item_counts().double().pow(alpha)  # [I]
    weight[split.train.item_counts() == 0] = 0.0
    return (weight / weight.sum()).log().float()
