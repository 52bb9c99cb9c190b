"""The shared part of the entropy terms on an anchor model's anchor distributions."""

from __future__ import annotations

import torch
from torch import Tensor

from recsys.auxiliary.base import AuxTerm
from recsys.errors import ConfigError
from recsys.models.base import Encoded, RecModel
from recsys.samplers.base import Negatives

SOURCES = {"item_anchor_weights": "target", "user_anchor_weights": "user"}  # exposed name -> Encoded field


def entropy(p: Tensor) -> Tensor:
    """``H(p) = -sum_k p[k] ln p[k]`` (natural log, ``0 ln 0 = 0``): ``[..., K]`` -> ``[...]``."""
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


class AnchorUsage(AuxTerm):
    """Base of ``exclusiveness`` and ``inclusiveness``: reads the anchor distributions of the
    distinct items (or users) of the step's rows from ``model.exposed(source)``.

    Args:
        weight: weight in the total objective.
        source: ``item_anchor_weights`` (the rows' positive items) or
            ``user_anchor_weights`` (the rows' users); ``[*, K]`` rows that sum to 1.
        name: config key of the term.
    """

    def __init__(self, weight: float, source: str, name: str) -> None:
        super().__init__(weight, name)
        if source not in SOURCES:
            raise ConfigError(f"aux.{name}.source must be one of {', '.join(SOURCES)}, got {source!r}")
        self.source = source

    def check(self, model: RecModel) -> None:
        """Fails before training, naming what the model exposes, when it has no anchors."""
        model.exposed(self.source)

    def distributions(self, model: RecModel, enc: Encoded) -> Tensor:
        """``[M, K]`` the anchor distributions of the ``M`` distinct ids of the step's rows."""
        ids = torch.unique(getattr(enc, SOURCES[self.source]))  # [M]
        return model.exposed(self.source)[ids].float()  # [M, K]

    def value(self, weights: Tensor) -> Tensor:
        """``[M, K]`` distributions -> the term (a scalar)."""
        raise NotImplementedError

    def stats(self, weights: Tensor, value: Tensor) -> dict[str, Tensor]:
        """Diagnostics logged as ``train/aux/<term>/<name>`` (detached scalars)."""
        raise NotImplementedError

    def forward(
        self, model: RecModel, enc: Encoded, negatives: Negatives | None = None, batch: dict[str, Tensor] | None = None
    ) -> Tensor:
        weights = self.distributions(model, enc)  # [M, K]
        value = self.value(weights)
        self.last_stats = self.stats(weights.detach(), value.detach())
        return value
