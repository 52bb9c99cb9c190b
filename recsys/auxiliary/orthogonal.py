"""Orthogonality regularizer between vectors a model exposes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys.auxiliary.base import AuxTerm
from recsys.errors import ConfigError
from recsys.models.base import Encoded, RecModel
from recsys.samplers.base import Negatives


class Orthogonal(AuxTerm):
    """Pushes a set of vectors apart: the mean over distinct pairs ``(i, j)`` of
    ``|cos(v_i, v_j)|`` (``kind="l1"``) or ``cos(v_i, v_j)^2`` (``kind="l2"``), so that
    interest prototypes, attention heads or embeddings do not collapse onto each other.

    An auxiliary term: the module adds ``weight * value`` to the main loss and logs the
    value as ``train/loss/<name>``. The vectors come from ``model.exposed(source)``.

    Args:
        weight: weight in the total objective.
        source: name under which the model exposes the vectors (``[K, D]``).
        kind: ``"l1"`` or ``"l2"``.
        max_vectors: when ``K`` is larger, a random subset of this many is used per step.
    """

    def __init__(self, weight: float = 0.1, source: str = "item_embeddings", kind: str = "l1", max_vectors: int = 1024) -> None:
        super().__init__(weight, "orthogonal")
        if kind not in ("l1", "l2"):
            raise ConfigError(f"aux.orthogonal.kind must be 'l1' or 'l2', got {kind!r}")
        if max_vectors < 2:
            raise ConfigError(f"aux.orthogonal.max_vectors must be >= 2, got {max_vectors}")
        self.source, self.kind, self.max_vectors = source, kind, max_vectors

    def penalty(self, vectors: Tensor) -> Tensor:
        """vectors ``[K, D]`` -> scalar mean pairwise penalty."""
        if vectors.shape[0] > self.max_vectors:
            pick = torch.randperm(vectors.shape[0], device=vectors.device)[: self.max_vectors]
            vectors = vectors[pick]
        k = vectors.shape[0]
        if k < 2:
            return vectors.sum() * 0.0
        unit = F.normalize(vectors.float(), dim=1)
        cos = unit @ unit.T  # [K, K]
        off = cos[~torch.eye(k, dtype=torch.bool, device=cos.device)]  # [K * (K - 1)]
        return off.abs().mean() if self.kind == "l1" else off.pow(2).mean()

    def check(self, model: RecModel) -> None:
        """Fails before training when the model does not expose ``source``."""
        model.exposed(self.source)

    def forward(
        self, model: RecModel, enc: Encoded | None = None, negatives: Negatives | None = None,
        batch: dict[str, Tensor] | None = None,
    ) -> Tensor:
        """The penalty on the model's ``source`` vectors (the step's rows and batch are not used)."""
        return self.penalty(model.exposed(self.source))
