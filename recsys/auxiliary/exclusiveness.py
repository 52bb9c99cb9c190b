"""ACF's exclusiveness constraint: each item uses few anchors."""

from __future__ import annotations

from torch import Tensor

from recsys.auxiliary.anchor_usage import AnchorUsage, entropy


class Exclusiveness(AnchorUsage):
    """Mean entropy of the anchor distributions of the step's distinct items,
    ``(1/M) sum_i H(w_i)`` with ``H(p) = -sum_k p_k ln p_k``; minimized, it pushes each
    item towards a single representative anchor (Barkan et al., CIKM 2021). Uniform over
    ``K`` anchors gives ``ln K``, one-hot gives 0.

    An auxiliary term (``aux=[exclusiveness]``, ``model=acf``): the module adds
    ``weight * value`` and logs it as ``train/loss/exclusiveness``; ``last_stats`` logs the
    mean largest weight as ``train/aux/exclusiveness/top_weight``.

    Args:
        weight: weight in the total objective.
        source: ``item_anchor_weights`` or ``user_anchor_weights``.

    Shape:
        distributions ``[M, K]`` -> scalar.
    """

    def __init__(self, weight: float = 0.1, source: str = "item_anchor_weights") -> None:
        super().__init__(weight, source, "exclusiveness")

    def value(self, weights: Tensor) -> Tensor:
        """``[M, K]`` distributions -> their mean entropy."""
        return entropy(weights).mean()

    def stats(self, weights: Tensor, value: Tensor) -> dict[str, Tensor]:
        return {"top_weight": weights.max(1).values.mean()}
