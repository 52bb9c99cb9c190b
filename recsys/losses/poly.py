"""Poly-1 loss (Leng et al., "PolyLoss: A Polynomial Expansion Perspective of Classification
Loss Functions", ICLR 2022)."""

from recsys.losses.ce import CE


class Poly1(CE):
    """``CE + epsilon * (1 - p_target)`` with ``p_target`` the softmax probability of the
    positive among the candidates (positive + valid negatives). ``epsilon > 0`` puts more
    weight on well-classified rows, ``epsilon < 0`` less (``-1`` removes the first
    polynomial term of CE); ``epsilon = 0`` is :class:`CE`.

    With ``sampler=full`` it scores the catalogue itself, as ``loss=ce`` does
    (:mod:`recsys.losses.catalogue`: one ``[R, I]`` buffer for a dot-product model, or
    ``item_chunk`` items at a time; the gradient is CE's times ``1 + epsilon * p_target``
    row by row); with sampled negatives it takes :class:`~recsys.losses.base.Scores`.

    Args:
        epsilon: weight of the first polynomial term.
        item_chunk: None (default): all items at once. An integer: ``item_chunk`` items
            at a time (bounded memory; ``sampler=full`` only).

    Shape:
        pos ``[B]``, neg ``[B, N]`` -> scalar.
    """

    def __init__(self, epsilon: float = 1.0, item_chunk: int | None = None) -> None:
        super().__init__(item_chunk)
        self.epsilon = epsilon
