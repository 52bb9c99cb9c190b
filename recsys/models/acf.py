"""ACF: Anchor-based Collaborative Filtering (Barkan et al., CIKM 2021)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from recsys.data.interactions import SplitData
from recsys.data.views import BatchView, PairView, check_train_rows
from recsys.errors import ConfigError, check_number
from recsys.models.base import Encoded, RecModel


class ACF(RecModel):
    """Users and items as convex combinations of ``K`` shared anchor vectors.

    Barkan, Hirsch, Katz, Caciularu & Koenigstein, "Anchor-based Collaborative
    Filtering", CIKM 2021. Anchors ``A`` (``[K, D]``) serve users and items alike; each
    user and item has its own ID embedding ``e`` (``[D]``) that only says where it sits
    among the anchors:

    - affinities: ``l = e @ A^T / tau`` (``[K]``, dot product with each anchor);
    - anchor distribution: ``w = softmax(l)`` (``w >= 0``, ``sum_k w[k] = 1``);
    - vector: ``v = w @ A = sum_k w[k] A[k]`` (``[D]``, inside the anchors' convex hull);
    - score: ``s(u, i) = <v_u, v_i>``.

    (The paper's abstract fixes the convex combination and the two constraints; the
    affinity as the embedding's dot product with the anchors, and the optional
    temperature ``tau``, are this implementation's reading.) The anchors are exposed as
    ``anchors`` (for ``aux=[orthogonal] aux.orthogonal.source=anchors``), the distributions
    of all items / users as ``item_anchor_weights`` / ``user_anchor_weights`` (``[I, K]``,
    ``[U, K]``: for ``aux=[exclusiveness]`` and ``aux=[inclusiveness]``), and the ID tables as
    ``item_embeddings`` / ``user_embeddings``.

    Consumes (user, item) training pairs.

    Args:
        n_users: number of users (from the data).
        n_items: number of items (from the data).
        embedding_dim: size ``D`` of anchors, ID embeddings and the scored vectors.
        num_anchors: number of anchors ``K``.
        temperature: ``tau``, divides the affinities (lower: sharper distributions).
        init_std: std of the normal initialization of the ID embeddings.
        anchor_std: std of the normal initialization of the anchors.
        train_rows: ``events`` or ``users`` (see :class:`~recsys.data.views.PairView`).

    Shape:
        anchor_weights: ``[..., D]`` -> ``[..., K]``; vectors ``[..., D]``; scores ``[B, N]``.
    """

    def __init__(
        self, n_users: int, n_items: int, embedding_dim: int = 64, num_anchors: int = 32, temperature: float = 1.0,
        init_std: float = 1.0, anchor_std: float = 0.2, train_rows: str = "events",
    ) -> None:
        super().__init__()
        if embedding_dim < 1:
            raise ConfigError(f"model.embedding_dim must be >= 1, got {embedding_dim}")
        if isinstance(num_anchors, bool) or not isinstance(num_anchors, int) or num_anchors < 1:
            raise ConfigError(f"model.num_anchors must be an integer >= 1, got {num_anchors!r}")
        for key, value in (("temperature", temperature), ("init_std", init_std), ("anchor_std", anchor_std)):
            check_number(f"model.{key}", value, 0, low_open=True)
        self.train_rows = check_train_rows(train_rows)
        self.temperature = float(temperature)
        self.user_emb = nn.Embedding(n_users, embedding_dim)
        self.item_emb = nn.Embedding(n_items, embedding_dim)
        self.anchors = nn.Parameter(torch.randn(num_anchors, embedding_dim) * anchor_std)  # [K, D]
        nn.init.normal_(self.user_emb.weight, std=init_std)
        nn.init.normal_(self.item_emb.weight, std=init_std)

    def anchor_weights(self, emb: Tensor) -> Tensor:
        """``softmax(emb @ A^T / tau)``: ``[..., D]`` -> ``[..., K]``, rows sum to 1."""
        return torch.softmax(emb @ self.anchors.T / self.temperature, dim=-1)  # [..., K]

    def combine(self, emb: Tensor) -> Tensor:
        """The convex combination of anchors: ``[..., D]`` -> ``[..., D]``."""
        return self.anchor_weights(emb) @ self.anchors  # [..., K] @ [K, D] -> [..., D]

    def make_view(self, split: SplitData) -> BatchView:
        return PairView(split, rows=self.train_rows)

    def encode(self, batch: dict[str, Tensor]) -> Encoded:
        return Encoded(query=self.combine(self.user_emb(batch["user"])), target=batch["item"], user=batch["user"])

    def item_embeddings(self) -> Tensor:
        return self.combine(self.item_emb.weight)  # [I, D]

    def item_vectors(self, ids: Tensor) -> Tensor:
        return self.combine(self.item_emb(ids))  # [..., D]

    def user_queries(self, inputs: dict[str, Tensor]) -> Tensor:
        return self.combine(self.user_emb(inputs["user"]))  # [B, D]

    def named_vectors(self) -> dict[str, Tensor]:
        return {
            "anchors": self.anchors,  # [K, D]
            "item_anchor_weights": self.anchor_weights(self.item_emb.weight),  # [I, K]
            "user_anchor_weights": self.anchor_weights(self.user_emb.weight),  # [U, K]
            "item_embeddings": self.item_emb.weight,  # [I, D] input table
            "user_embeddings": self.user_emb.weight,  # [U, D] input table
        }
