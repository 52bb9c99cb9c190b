"""Training objectives: one contract (:class:`Scores` -> scalar), one file per loss."""

from recsys.losses.base import RecLoss, Scores

__all__ = ["RecLoss", "Scores"]
