"""The contract of auxiliary terms."""

from __future__ import annotations

from torch import Tensor, nn

from recsys.data.interactions import SplitData
from recsys.errors import ConfigError
from recsys.models.base import Encoded, RecModel
from recsys.samplers.base import Negatives


class AuxTerm(nn.Module):
    """A term of the objective besides the main loss: ``total = main + sum(weight * term)``.

    Subclasses implement :meth:`forward` and, when they need something from the model,
    :meth:`check`, which the wiring calls once before training so that a model lacking it
    fails at once with one line instead of mid-training.

    Args:
        weight: the term's weight in the total objective; a number >= 0.
        name: config key of the term, used in error messages (``aux.<name>.weight``).
    """

    def __init__(self, weight: float, name: str) -> None:
        super().__init__()
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ConfigError(f"aux.{name}.weight must be a number >= 0, got {weight!r}")
        self.weight = float(weight)

    def setup(self, split: SplitData) -> None:
        """Called once with the data split before training, like models, samplers and
        losses (:func:`recsys.wiring.build`); nothing to do by default."""

    def check(self, model: RecModel) -> None:
        """Raise a :class:`~recsys.errors.ConfigError` if ``model`` lacks what the term needs."""

    def forward(self, model: RecModel, enc: Encoded, negatives: Negatives) -> Tensor:  # pragma: no cover - abstract
        """The unweighted value (a scalar) for the step's rows ``enc`` and ``negatives``."""
        raise NotImplementedError
