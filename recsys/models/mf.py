"""Matrix factorization (Koren, Bell & Volinsky 2009; with BPR: Rendle et al. 2009)."""

from __future__ import annotations

from torch import Tensor, nn

from recsys.data.interactions import SplitData
from recsys.data.views import BatchView, PairView, check_train_rows
from recsys.errors import ConfigError
from recsys.models.base import Encoded, RecModel


class MF(RecModel):
    """A user vector and an item vector per id; the score is their dot product.

    Consumes (user, item) training pairs.

    Args:
        n_users: number of users (from the data).
        n_items: number of items (from the data).
        embedding_dim: vector size ``D``.
        init_std: standard deviation of the normal initialization.
        train_rows: ``events`` or ``users`` (see :class:`~recsys.data.views.PairView`).
    """

    def __init__(
        self, n_users: int, n_items: int, embedding_dim: int = 64, init_std: float = 0.1, train_rows: str = "events"
    ) -> None:
        super().__init__()
        if embedding_dim < 1:
            raise ConfigError(f"model.embedding_dim must be >= 1, got {embedding_dim}")
        self.train_rows = check_train_rows(train_rows)
        self.user_emb = nn.Embedding(n_users, embedding_dim)
        self.item_emb = nn.Embedding(n_items, embedding_dim)
        nn.init.normal_(self.user_emb.weight, std=init_std)
        nn.init.normal_(self.item_emb.weight, std=init_std)

    def make_view(self, split: SplitData) -> BatchView:
        return PairView(split, rows=self.train_rows)

    def encode(self, batch: dict[str, Tensor]) -> Encoded:
        return Encoded(query=self.user_emb(batch["user"]), target=batch["item"], user=batch["user"])  # [B, D]

    def item_embeddings(self) -> Tensor:
        return self.item_emb.weight  # [I, D]

    def named_vectors(self) -> dict[str, Tensor]:
        return {"item_embeddings": self.item_emb.weight, "user_embeddings": self.user_emb.weight}

    def user_queries(self, inputs: dict[str, Tensor]) -> Tensor:
        return self.user_emb(inputs["user"])  # [B, D]
