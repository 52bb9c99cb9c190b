"""CSAR: users and items as non-negative activations over learned interest prototypes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.data.interactions import SplitData
from recsys.data.views import BatchView, PairView, check_train_rows
from recsys.errors import ConfigError, check_number
from recsys.models.base import Encoded, RecModel


class CSAR(RecModel):
    """Interest-prototype model whose scores are non-negative energies.

    Defined by the project's design notes (``shared/seeds/000_*.txt``: the model whose
    softplus outputs are energies, trained with the log-energy loss ``loss=csar`` or
    ``nss``, with orthogonal interest prototypes); there is no public reference, and the
    notes give no formula, so the one below is this implementation's choice.

    With ``K`` prototypes ``P`` (``[K, D]``) and ID embeddings ``e_u``, ``e_i`` (``[D]``):

    - activations: ``a_u = softplus(e_u @ P^T)``, ``a_i = softplus(e_i @ P^T)`` (``[K]``,
      every entry > 0: how much the user/item has of each interest);
    - energy (the score): ``E(u, i) = sum_k a_u[k] * a_i[k] = <a_u, a_i> >= 0``, the match
      of the two activation profiles, a sum over interests of products of softplus
      outputs.

    The query and item vectors the module scores are the activations themselves (width
    ``K``), so the score is the base class's dot product and every loss, sampler and
    full-ranking evaluation applies unchanged. ``loss=csar`` takes ``ln(softplus(E))``
    (default ``loss.energy=softplus``, monotone in ``E``) or ``ln(E)``
    (``loss.energy=identity``) as logits. The prototypes are exposed as ``prototypes``
    (``aux=[orthogonal] aux.orthogonal.source=prototypes`` keeps them apart); the input ID
    tables as ``user_embeddings`` / ``item_embeddings`` (for ``aux=[embedding_l2]``).

    Consumes (user, item) training pairs.

    Args:
        n_users: number of users (from the data).
        n_items: number of items (from the data).
        embedding_dim: ID embedding size ``D``.
        num_prototypes: number of interest prototypes ``K`` (the width of the scored vectors).
        init_std: std of the normal initialization of the ID embeddings.
        prototype_std: std of the normal initialization of the prototypes.
        train_rows: ``events`` or ``users`` (see :class:`~recsys.data.views.PairView`).

    Shape:
        activations: ``[..., D]`` -> ``[..., K]``; scores ``[B, N]``.
    """

    def __init__(
        self, n_users: int, n_items: int, embedding_dim: int = 64, num_prototypes: int = 32, init_std: float = 0.1,
        prototype_std: float = 0.1, train_rows: str = "events",
    ) -> None:
        super().__init__()
        if embedding_dim < 1:
            raise ConfigError(f"model.embedding_dim must be >= 1, got {embedding_dim}")
        if isinstance(num_prototypes, bool) or not isinstance(num_prototypes, int) or num_prototypes < 1:
            raise ConfigError(f"model.num_prototypes must be an integer >= 1, got {num_prototypes!r}")
        for key, value in (("init_std", init_std), ("prototype_std", prototype_std)):
            check_number(f"model.{key}", value, 0, low_open=True)
        self.train_rows = check_train_rows(train_rows)
        self.user_emb = nn.Embedding(n_users, embedding_dim)
        self.item_emb = nn.Embedding(n_items, embedding_dim)
        self.prototypes = nn.Parameter(torch.randn(num_prototypes, embedding_dim) * prototype_std)  # [K, D]
        nn.init.normal_(self.user_emb.weight, std=init_std)
        nn.init.normal_(self.item_emb.weight, std=init_std)

    def activations(self, emb: Tensor) -> Tensor:
        """``softplus(emb @ P^T)``: ``[..., D]`` -> ``[..., K]`` non-negative interest activations."""
        return F.softplus(emb @ self.prototypes.T)  # [..., K]

    def make_view(self, split: SplitData) -> BatchView:
        return PairView(split, rows=self.train_rows)

    def encode(self, batch: dict[str, Tensor]) -> Encoded:
        query = self.activations(self.user_emb(batch["user"]))  # [B, K]
        return Encoded(query=query, target=batch["item"], user=batch["user"])

    def item_embeddings(self) -> Tensor:
        return self.activations(self.item_emb.weight)  # [I, K]

    def item_vectors(self, ids: Tensor) -> Tensor:
        return self.activations(self.item_emb(ids))  # [..., K]

    def user_queries(self, inputs: dict[str, Tensor]) -> Tensor:
        return self.activations(self.user_emb(inputs["user"]))  # [B, K]

    def named_vectors(self) -> dict[str, Tensor]:
        return {
            "prototypes": self.prototypes,  # [K, D]
            "item_embeddings": self.item_emb.weight,  # [I, D] input table
            "user_embeddings": self.user_emb.weight,  # [U, D] input table
        }
