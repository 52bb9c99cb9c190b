"""ACF's inclusiveness constraint: every anchor is used."""

from __future__ import annotations

import math

from torch import Tensor

from recsys.auxiliary.anchor_usage import AnchorUsage, entropy


class Inclusiveness(AnchorUsage):
    """Minus the entropy of the step's mean anchor usage, ``-H((1/M) sum_i w_i)`` over the
    step's distinct items; minimizing it maximizes that entropy, so that all anchors serve
    some item (Barkan et al., CIKM 2021). Its value lies in ``[-ln K, 0]``: ``-ln K`` when
    the batch uses every anchor equally, 0 when all its items sit on one anchor.

    An auxiliary term (``aux=[inclusiveness]``, ``model=acf``): the module adds
    ``weight * value`` (i.e. ``-weight * entropy``) and logs it as
    ``train/loss/inclusiveness``; ``last_stats`` logs ``train/aux/inclusiveness/used_anchors``
    (how many anchors are some item's largest weight) and ``usage_entropy_ratio``
    (the entropy divided by ``ln K``).

    Args:
        weight: weight in the total objective.
        source: ``item_anchor_weights`` or ``user_anchor_weights``.

    Shape:
        distributions ``[M, K]`` -> scalar.
    """

    def __init__(self, weight: float = 0.1, source: str = "item_anchor_weights") -> None:
        super().__init__(weight, source, "inclusiveness")

    def value(self, weights: Tensor) -> Tensor:
        """``[M, K]`` distributions -> minus the entropy of their mean."""
        return -entropy(weights.mean(0))

    def stats(self, weights: Tensor, value: Tensor) -> dict[str, Tensor]:
        k = weights.shape[1]
        return {
            "used_anchors": weights.argmax(1).unique().numel() * weights.new_ones(()),
            "usage_entropy_ratio": -value / math.log(k) if k > 1 else weights.new_ones(()),
        }
