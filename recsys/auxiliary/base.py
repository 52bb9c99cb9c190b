"""The contract of auxiliary terms."""

from __future__ import annotations

from torch import Tensor, nn

from recsys.data.interactions import SplitData
from recsys.errors import check_number
from recsys.models.base import Encoded, RecModel
from recsys.samplers.base import Negatives


class AuxTerm(nn.Module):
    """A term of the objective besides the main loss: ``total = main + sum(weight * term)``.

    Subclasses implement :meth:`forward` and, when they need something from the model,
    :meth:`check`, which the wiring calls once before training so that a model lacking it
    fails at once with one line instead of mid-training (and where a term builds
    parameters that depend on the model, such as a projection head, so that they exist
    before the optimizer is made and are saved in checkpoints).

    ``scheduled`` names the float attributes that callbacks may set during training
    (a :class:`~recsys.callbacks.schedule.Schedule` with ``owner: aux.<name>``): ``weight``
    for every term, plus a term's own (the contrastive temperature). The module logs them every step
    as ``sched/aux.<name>.<attribute>``, and logs the tensors a term leaves in
    ``last_stats`` (e.g. rows a term had to skip) as ``train/aux/<name>/<stat>``.

    Args:
        weight: the term's weight in the total objective; a number >= 0.
        name: config key of the term, used in error messages (``aux.<name>.weight``).
    """

    scheduled: tuple[str, ...] = ("weight",)

    def __init__(self, weight: float, name: str) -> None:
        super().__init__()
        self.name = name
        self.weight = weight
        self.last_stats: dict[str, Tensor] = {}  # set by forward; logged by the module

    @property
    def weight(self) -> float:
        return self._weight

    @weight.setter
    def weight(self, value: float) -> None:
        self._weight = check_number(f"aux.{self.name}.weight", value, 0)

    def schedule_values(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in self.scheduled}

    def setup(self, split: SplitData) -> None:
        """Called once with the data split before training, like models, samplers and
        losses (:func:`recsys.wiring.build`); nothing to do by default."""

    def check(self, model: RecModel) -> None:
        """Raise a :class:`~recsys.errors.ConfigError` if ``model`` lacks what the term
        needs; build what depends on the model."""

    def forward(  # pragma: no cover - abstract
        self, model: RecModel, enc: Encoded, negatives: Negatives, batch: dict[str, Tensor]
    ) -> Tensor:
        """The unweighted value (a scalar) for the step's rows ``enc`` and ``negatives``;
        ``batch`` is the training batch they came from (for terms that encode it again,
        e.g. a second view)."""
        raise NotImplementedError
