"""Building blocks of the two-tower model: feature embeddings (also SASRec's context features),
towers and fusion."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recsys.errors import ConfigError
from recsys.models.buckets import length_buckets
from recsys.models.dropout import Dropout


class CategoricalFeatures(nn.Module):
    """Embeds categorical side features (single- or multi-valued, ``-1`` = missing): one
    table per feature, mean over a row's valid values, features concatenated.

    Args:
        features: name -> ``[N]`` or ``[N, L]`` int64 values per entity.
        cardinality: name -> number of distinct values.
        dim: embedding size per feature.
    """

    def __init__(self, features: dict[str, Tensor], cardinality: dict[str, int], dim: int) -> None:
        super().__init__()
        self.names = sorted(features)
        self.tables = nn.ModuleDict({n: nn.Embedding(cardinality[n] + 1, dim, padding_idx=cardinality[n]) for n in self.names})
        for name in self.names:
            values = features[name]
            values = values.unsqueeze(1) if values.dim() == 1 else values
            self.register_buffer(f"values_{name}", values.masked_fill(values < 0, cardinality[name]), persistent=False)
        self.out_dim = dim * len(self.names)

    def forward(self, ids: Tensor) -> Tensor:
        """ids ``[...]`` -> ``[..., dim * n_features]`` (``[..., 0]`` without features); an
        entity whose values are all missing gets zeros."""
        parts = []
        for name in self.names:
            table = self.tables[name]
            values = getattr(self, f"values_{name}")[ids]  # [..., V]
            valid = (values != table.padding_idx).unsqueeze(-1).float()  # [..., V, 1]
            parts.append((table(values) * valid).sum(-2) / valid.sum(-2).clamp(min=1.0))  # [..., dim]
        return torch.cat(parts, -1) if parts else torch.zeros(*ids.shape, 0, device=ids.device)


def select_features(requested: Sequence[str], features: dict[str, Tensor], key: str, kind: str) -> list[str]:
    """The feature names a model option asks for: ``[]`` none, ``[all]`` every feature of
    the data, else the names themselves, each of which the data must have.

    Args:
        requested: the option's value.
        features: the data's features of this kind, by name.
        key: the option, for the message (``model.context_features``).
        kind: ``item`` or ``user``, for the message.
    """
    requested = [requested] if isinstance(requested, str) else [str(name) for name in requested]
    have = ", ".join(sorted(features)) or "none"
    if requested == ["all"]:
        if not features:
            raise ConfigError(f"{key} asks for all {kind} features, but the data has no {kind} features; set it to [] (IDs only)")
        return sorted(features)
    unknown = [name for name in requested if name not in features]
    if unknown or len(set(requested)) != len(requested):
        what = f"unknown {kind} features {', '.join(unknown)}" if unknown else "a repeated name"
        raise ConfigError(f"{key} has {what}; the data's {kind} features are: {have} (or [all], or [] for IDs only)")
    return requested


def mlp(in_dim: int, dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU(), Dropout(dropout), nn.Linear(dim, dim))


class ItemTower(nn.Module):
    """Item ID embedding plus content features, through an MLP projection ``head``."""

    def __init__(self, n_items: int, features: dict[str, Tensor], cardinality: dict[str, int], dim: int, dropout: float) -> None:
        super().__init__()
        self.id_emb = nn.Embedding(n_items, dim)
        nn.init.normal_(self.id_emb.weight, std=0.1)
        self.features = CategoricalFeatures(features, cardinality, dim // 2)
        self.head = mlp(dim + self.features.out_dim, dim, dropout)

    def forward(self, ids: Tensor | None = None) -> Tensor:
        """``[N, D]`` vectors of ``ids`` (every item when None)."""
        if ids is None:
            ids = torch.arange(self.id_emb.num_embeddings, device=self.id_emb.weight.device)
        return self.head(torch.cat([self.id_emb(ids), self.features(ids)], 1))


class SequenceEncoder(nn.Module):
    """Transformer encoder over the recent items, pooled to one vector: attention pooling
    over all valid positions (a learned query) or the last position.

    Rows are encoded in ``buckets`` groups of similar history length, each cut to its
    longest history: padding is masked and every item keeps its position counted from the
    end, so the result is the same as encoding the whole ``[B, L]`` batch, at a fraction of
    the cost when most histories are shorter than ``L``.
    """

    def __init__(self, n_items: int, dim: int, max_len: int, layers: int, heads: int, dropout: float, pooling: str,
                 buckets: int = 1) -> None:
        super().__init__()
        self.pad, self.pooling, self.buckets = n_items, pooling, buckets
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        self.pos_emb = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.pool_query = nn.Parameter(torch.randn(dim) * 0.02)
        self.norm = nn.LayerNorm(dim)

    def forward(self, seq: Tensor) -> Tensor:
        """seq ``[B, L]`` (left-padded) -> ``[B, D]``."""
        if self.buckets <= 1:
            return self._encode(seq, seq.shape[1])
        groups = length_buckets(seq, self.pad, self.buckets)
        parts = [self._encode(seq[rows, -width:], seq.shape[1]) for rows, width in groups]  # [B_k, D] each
        order = torch.cat([rows for rows, _ in groups])  # [B]
        return torch.cat(parts)[order.argsort()]  # [B, D] back in the batch order

    def _encode(self, seq: Tensor, full: int) -> Tensor:
        """seq ``[B, W]``, the last ``W`` of ``full`` positions -> ``[B, D]``."""
        valid = seq != self.pad  # [B, W]
        empty = ~valid.any(1)
        valid = valid | empty.unsqueeze(1) & (torch.arange(seq.shape[1], device=seq.device) == seq.shape[1] - 1)
        positions = torch.arange(full - seq.shape[1], full, device=seq.device)  # [W]
        x = self.item_emb(seq) + self.pos_emb(positions)  # [B, W, D]
        h = self.norm(self.encoder(x, src_key_padding_mask=~valid))  # [B, W, D]
        if self.pooling == "last":
            return h[:, -1]
        weights = (h @ self.pool_query).masked_fill(~valid, float("-inf")).softmax(1)  # [B, W]
        return (weights.unsqueeze(-1) * h).sum(1)  # [B, D]


class GatedFusion(nn.Module):
    """``g = sigmoid(W [v_graph; v_seq; v_meta])``, ``h = g * v_seq + (1 - g) * v_graph +
    P v_meta``, then an MLP: the gate decides per dimension how much the recent sequence
    or the long-term graph taste speaks for the user (MMoE-style gating)."""

    def __init__(self, dim: int, meta_dim: int, dropout: float) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * dim + meta_dim, dim)
        self.meta_proj = nn.Linear(meta_dim, dim) if meta_dim else None
        self.out = mlp(dim, dim, dropout)

    def forward(self, v_graph: Tensor, v_seq: Tensor, v_meta: Tensor) -> Tensor:
        gate = torch.sigmoid(self.gate(torch.cat([v_graph, v_seq, v_meta], 1)))  # [B, D]
        mixed = gate * v_seq + (1 - gate) * v_graph
        if self.meta_proj is not None:
            mixed = mixed + self.meta_proj(v_meta)
        return self.out(mixed)


class ConcatFusion(nn.Module):
    """The baseline: concatenate the three vectors, then an MLP."""

    def __init__(self, dim: int, meta_dim: int, dropout: float) -> None:
        super().__init__()
        self.out = mlp(2 * dim + meta_dim, dim, dropout)

    def forward(self, v_graph: Tensor, v_seq: Tensor, v_meta: Tensor) -> Tensor:
        return self.out(torch.cat([v_graph, v_seq, v_meta], 1))
