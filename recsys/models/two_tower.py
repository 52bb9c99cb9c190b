"""A hybrid two-tower retrieval model whose user tower fuses a graph view, a sequence view
and side features (YouTube-style two towers, Yi et al. 2019; graph view: LightGCN, He et
al. 2020; gated fusion in the spirit of MMoE, Ma et al. 2018)."""

from __future__ import annotations

import torch
from torch import Tensor

from recsys.data.interactions import SplitData
from recsys.data.views import BatchView, EventHistoryView
from recsys.errors import ConfigError
from recsys.models.base import Encoded, RecModel, Represented
from recsys.models.lightgcn import LightGCN
from recsys.models.towers import CategoricalFeatures, ConcatFusion, GatedFusion, ItemTower, SequenceEncoder


class TwoTower(RecModel):
    """Item tower: item ID embedding + content features -> MLP head (``item_tower.head``).
    User tower: ``graph`` (LightGCN user vector), ``sequence`` (transformer over the items
    before the target, attention- or last-pooled) and ``meta`` (user side features),
    combined by ``fusion`` (``gated`` or ``concat``). Scores: dot product, or cosine
    divided by ``score_temperature``.

    Submodule names (for ``callbacks.freeze_curriculum``): ``item_tower`` (``.id_emb``,
    ``.features``, ``.head``), ``graph``, ``sequence``, ``meta``, ``fusion``.

    Args:
        n_users, n_items, user_features, item_features, feature_cardinality: from the data.
        embedding_dim: ``D``.
        max_len: history positions of the sequence view.
        seq_layers, seq_heads: transformer encoder size.
        pooling: ``attention`` (over all positions) or ``last``.
        seq_buckets: the sequence view encodes a batch in this many groups of similar
            history length, each cut to its longest history (same result, less padding
            to encode; 1 = the whole ``[B, max_len]`` batch at once).
        graph_layers: LightGCN propagation layers.
        fusion: ``gated`` or ``concat``.
        score: ``dot`` or ``cosine``.
        score_temperature: divides cosine scores (ignored for dot).
        dropout: dropout in the MLPs and the encoder.
    """

    sequence_key = "input"  # represent() reads the history before each row's item (augmentations rewrite it)

    def __init__(
        self,
        n_users: int,
        n_items: int,
        user_features: dict[str, Tensor],
        item_features: dict[str, Tensor],
        feature_cardinality: dict[str, int],
        embedding_dim: int = 64,
        max_len: int = 50,
        seq_layers: int = 1,
        seq_heads: int = 1,
        pooling: str = "attention",
        seq_buckets: int = 4,
        graph_layers: int = 2,
        fusion: str = "gated",
        score: str = "dot",
        score_temperature: float = 1.0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        for name, value, allowed in (("pooling", pooling, ("attention", "last")), ("fusion", fusion, ("gated", "concat"))):
            if value not in allowed:
                raise ConfigError(f"model.{name} must be one of {', '.join(allowed)}, got {value!r}")
        if isinstance(seq_buckets, bool) or not isinstance(seq_buckets, int) or seq_buckets < 1:
            raise ConfigError(f"model.seq_buckets must be an integer >= 1, got {seq_buckets!r}")
        if embedding_dim % seq_heads:
            raise ConfigError(f"model.embedding_dim ({embedding_dim}) must be divisible by model.seq_heads ({seq_heads})")
        self.set_scoring(score, score_temperature)
        d = embedding_dim
        self.n_items, self.max_len, self.dim = n_items, max_len, d
        self.item_tower = ItemTower(n_items, item_features, feature_cardinality, d, dropout)
        self.graph = LightGCN(n_users, n_items, d, graph_layers)
        self.sequence = SequenceEncoder(n_items, d, max_len, seq_layers, seq_heads, dropout, pooling, seq_buckets)
        self.meta = CategoricalFeatures(user_features, feature_cardinality, d // 2)
        fusion_cls = GatedFusion if fusion == "gated" else ConcatFusion
        self.fusion = fusion_cls(d, self.meta.out_dim, dropout)

    def setup(self, split: SplitData) -> None:
        self.graph.setup(split)

    def make_view(self, split: SplitData) -> BatchView:
        return EventHistoryView(split, self.max_len, pad=self.n_items)

    def user_vector(self, user: Tensor, history: Tensor) -> Tensor:
        v_graph = self.graph.propagate()[user]  # [B, D]
        v_seq = self.sequence(history)  # [B, D]
        return self.fusion(v_graph, v_seq, self.meta(user))  # [B, D]

    def encode(self, batch: dict[str, Tensor]) -> Encoded:
        return Encoded(query=self.user_vector(batch["user"], batch["input"]), target=batch["item"], user=batch["user"])

    def represent(self, batch: dict[str, Tensor]) -> Represented:
        """The user tower's vector of each row (its user and history) and the row's item."""
        return Represented(vector=self.user_vector(batch["user"], batch["input"]), target=batch["item"])  # [B, D], [B]

    def item_embeddings(self) -> Tensor:
        return self.item_tower()  # [I, D]

    def item_vectors(self, ids: Tensor) -> Tensor:
        """The item tower run on the distinct ``ids`` only (``[...]`` -> ``[..., D]``)."""
        unique, inverse = torch.unique(ids, return_inverse=True)  # [K], [...]
        return self.item_tower(unique)[inverse]  # [..., D]

    def user_queries(self, inputs: dict[str, Tensor]) -> Tensor:
        return self.user_vector(inputs["user"], inputs["input"])

    def named_vectors(self) -> dict[str, Tensor]:
        return {"item_embeddings": self.item_tower.id_emb.weight, "user_embeddings": self.graph.embedding.weight[: self.graph.n_users]}
