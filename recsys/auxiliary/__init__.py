"""Auxiliary terms added to the main loss with a weight (config group ``aux``).

Unlike the main losses (``recsys.losses``: :class:`~recsys.losses.base.Scores` -> scalar),
an auxiliary term looks at the model itself and at the step's rows and negatives, so it
has its own contract, :class:`AuxTerm`.
"""

from recsys.auxiliary.base import AuxTerm

__all__ = ["AuxTerm"]
