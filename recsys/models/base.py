"""The model contract.

A model turns a training batch into query vectors and says which item each query should
rank first (:meth:`RecModel.encode`); it exposes the vectors of the whole catalogue
(:meth:`RecModel.item_embeddings`, for full softmax and full ranking) and of given items
(:meth:`RecModel.item_vectors`, for sampled and in-batch negatives, so that a model whose
item vectors are computed encodes only the items a step scores) and encodes users for
evaluation (:meth:`RecModel.user_queries`). It also declares how it consumes training data
(:meth:`RecModel.make_view`). Scores are dot products unless a model overrides
:meth:`RecModel.score`. Losses live elsewhere (``recsys.losses``). Sequence and user-tower
models also give one representation per batch row (:meth:`RecModel.represent`), for
auxiliary terms such as ``aux=[contrastive]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.data.interactions import SplitData
from recsys.data.views import BatchView
from recsys.errors import ConfigError, check_number


@dataclass
class Encoded:
    """The training rows of a batch, flattened.

    Attributes:
        query: ``[R, D]`` one query vector per training row.
        target: ``[R]`` the positive item of each row.
        user: ``[R]`` the user of each row.
    """

    query: Tensor
    target: Tensor
    user: Tensor


@dataclass
class Represented:
    """One representation per row of a training batch (:meth:`RecModel.represent`).

    Attributes:
        vector: ``[B, D]`` one sequence/user representation per batch row.
        target: ``[B]`` the item that row predicts next (rows with the same target are
            positives of each other for ``aux.contrastive.positives=same_target``).
    """

    vector: Tensor
    target: Tensor


def check_transformer_sizes(embedding_dim: int, num_heads: int, max_len: int, num_blocks: int) -> None:
    """One-line errors for transformer sizes that cannot work (SASRec, BERT4Rec)."""
    if embedding_dim % num_heads != 0:
        raise ConfigError(f"model.embedding_dim ({embedding_dim}) must be divisible by model.num_heads ({num_heads})")
    if max_len < 2 or num_blocks < 1:
        raise ConfigError(f"model.max_len must be >= 2 and num_blocks >= 1, got {max_len}, {num_blocks}")


def cosine_scores(query: Tensor, items: Tensor, temperature: float) -> Tensor:
    """Cosine similarity divided by ``temperature``; items ``[N, D]`` or ``[B, N, D]``."""
    q = F.normalize(query, dim=-1)
    v = F.normalize(items, dim=-1)
    scores = q @ v.T if v.dim() == 2 else (q.unsqueeze(1) * v).sum(-1)
    return scores / temperature


class RecModel(nn.Module):
    """Base class of models.

    ``scheduled`` names float attributes that callbacks may set during training (e.g. a
    score temperature); the module logs them every step as ``sched/<name>``.

    A model that implements :meth:`represent` (one vector per batch row, for auxiliary
    terms) also sets ``dim`` (the width ``D`` of those vectors) and, when the vectors are
    read from an item-id sequence, ``sequence_key`` (the batch key of that ``[B, L]``
    sequence, left-padded with :attr:`pad_id`, which augmentations may rewrite) and
    ``mask_id`` (its ``[MASK]`` token; None: an augmentation's masked items become
    padding).
    """

    scheduled: tuple[str, ...] = ()
    sequence_key: str | None = None  # batch key of the [B, L] item-id sequence that represent() reads
    mask_id: int | None = None  # the [MASK] token id, if the model has one
    trainable: bool = True  # False: nothing to fit (model=pop); the run only evaluates
    score_kind: str = "dot"
    score_temperature: float = 1.0

    def set_scoring(self, score: str, temperature: float) -> None:
        """Score by ``dot`` product or by ``cosine`` similarity divided by ``temperature``
        (then scheduled as ``score_temperature``, e.g. by ``temperature_annealing``)."""
        if score not in ("dot", "cosine"):
            raise ConfigError(f"model.score must be one of dot, cosine, got {score!r}")
        check_number("model.score_temperature", temperature, 0, low_open=True)
        self.score_kind, self.score_temperature = score, float(temperature)
        self.scheduled = ("score_temperature",) if score == "cosine" else ()

    @property
    def scores_by_dot_product(self) -> bool:
        """True when :meth:`score` is ``query @ items.T`` (a loss may then compute the
        scores itself, fused with what it does with them)."""
        return self.score_kind == "dot" and type(self).score is RecModel.score

    def schedule_values(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in self.scheduled}

    @property
    def pad_id(self) -> int:
        """The padding id of item sequences: ``n_items`` (one past the last item) unless a
        model sets another (``self.pad_id = ...``)."""
        return self.__dict__.get("_pad_id", self.n_items)

    @pad_id.setter
    def pad_id(self, value: int) -> None:
        self.__dict__["_pad_id"] = int(value)

    def represents(self) -> bool:
        """Whether the model implements :meth:`represent`."""
        return type(self).represent is not RecModel.represent

    def represent(self, batch: dict[str, Tensor]) -> Represented:
        """One sequence/user representation per row of a training ``batch`` and the item
        each row predicts next (shapes in :class:`Represented`). Called in the model's
        current mode, so two calls in training mode differ by their dropout masks.
        Models without such a representation (MF, LightGCN) raise a one-line error.
        """
        raise ConfigError(
            f"model {type(self).__name__} has no sequence/user representation for aux.contrastive; "
            f"use model=sasrec, bert4rec or two_tower"
        )

    def setup(self, split: SplitData) -> None:
        """Called once with the split before training (e.g. LightGCN builds its graph)."""

    def make_view(self, split: SplitData) -> BatchView:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, batch: dict[str, Tensor]) -> Encoded:  # pragma: no cover - abstract
        raise NotImplementedError

    def item_embeddings(self) -> Tensor:  # pragma: no cover - abstract
        """``[I, D]`` the vector of every item."""
        raise NotImplementedError

    def item_vectors(self, ids: Tensor) -> Tensor:
        """The vectors of the items ``ids``: row ``ids[j]`` of :meth:`item_embeddings`.

        Models that compute item vectors (a tower) override it to compute only these items,
        once per distinct id (so that, in training mode, a repeated item gets one dropout
        mask, as when the whole catalogue is encoded).

        Shape:
            ids ``[...]`` -> ``[..., D]``.
        """
        return self.item_embeddings()[ids]  # [..., D]

    def user_queries(self, inputs: dict[str, Tensor]) -> Tensor:  # pragma: no cover - abstract
        """``[B, D]`` query vectors of the users in ``inputs`` (from the view)."""
        raise NotImplementedError

    def named_vectors(self) -> dict[str, Tensor]:
        """Sets of vectors (``[K, D]``) that auxiliary losses may regularize, by name."""
        return {"item_embeddings": self.item_embeddings()}

    def exposed(self, name: str) -> Tensor:
        """The vectors exposed under ``name``; a clear error when there are none."""
        vectors = self.named_vectors()
        if name not in vectors:
            raise ConfigError(
                f"model {type(self).__name__} exposes no vectors named '{name}'; it exposes: "
                f"{', '.join(sorted(vectors))} (change aux.<term>.source, the aux term or the model)"
            )
        return vectors[name]

    def score(self, query: Tensor, items: Tensor) -> Tensor:
        """Scores of queries against item vectors.

        Shape:
            query ``[B, D]``; items ``[N, D]`` (shared) or ``[B, N, D]`` (per row) ->
            ``[B, N]``.
        """
        if self.score_kind == "cosine":
            return cosine_scores(query, items, self.score_temperature)  # [B, N]
        if items.dim() == 2:
            return query @ items.T  # [B, N]
        return torch.bmm(items, query.unsqueeze(2)).squeeze(2)  # [B, N], no [B, N, D] product
