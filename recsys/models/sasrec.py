"""SASRec: Self-Attentive Sequential Recommendation (Kang & McAuley, ICDM 2018).

Item and learned position embeddings feed causal self-attention blocks; the output at
position ``t`` is the query for the item at ``t + 1``, so every position of every sequence
is a training row. Item embeddings are shared between input and output (as in the paper)
unless ``tied_output=False`` gives the output its own table (gSASRec's default,
``reuse_item_embeddings=False``, Petrov & Macdonald 2023). The block layout
follows the reference implementation: the query is layer-normed, the residual is added to
the normed query, then a layer-normed point-wise feed-forward with its own residual, and a
final layer norm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.data.interactions import SplitData
from recsys.data.views import BatchView, SequenceView
from recsys.errors import ConfigError
from recsys.models.base import Encoded, RecModel, Represented


class CausalSelfAttention(nn.Module):
    """Multi-head attention of ``query`` positions over ``context``, causally masked."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, query: Tensor, context: Tensor) -> Tensor:
        b, lq, d = query.shape
        lk = context.shape[1]
        q = self.q_proj(query).view(b, lq, self.heads, d // self.heads).transpose(1, 2)  # [B, H, Lq, d/H]
        k, v = self.kv_proj(context).view(b, lk, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if lq == lk:
            mask = None
            causal = True
        else:  # the last lq positions attend to every earlier one
            mask = torch.ones(lq, lk, dtype=torch.bool, device=query.device).tril(lk - lq)
            causal = False
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, dropout_p=self.dropout if self.training else 0.0
        )  # [B, H, Lq, d/H]
        return self.out_proj(out.transpose(1, 2).reshape(b, lq, d))  # [B, Lq, D]


class SASRecBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.ffn = nn.Sequential(
            nn.Linear(dim, dim), nn.Dropout(dropout), nn.ReLU(), nn.Linear(dim, dim), nn.Dropout(dropout)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, keep: Tensor, last_only: bool = False) -> Tensor:
        """x ``[B, L, D]``, keep ``[B, L, 1]`` (0 at padding) -> ``[B, L or 1, D]``."""
        q = self.attn_norm(x[:, -1:] if last_only else x)  # [B, Lq, D]
        h = q + self.drop(self.attn(q, x))
        h = self.ffn_norm(h)
        h = h + self.ffn(h)
        return h * (keep[:, -1:] if last_only else keep)


class SASRec(RecModel):
    """Self-attentive sequential recommender.

    Args:
        n_items: number of items; id ``n_items`` is the padding id.
        embedding_dim: hidden size ``D`` (64 in the paper's ML-1M setting).
        num_blocks: number of attention blocks (2).
        num_heads: attention heads (1).
        max_len: sequence length ``L`` (200 for ML-1M, 50 for the Amazon data).
        dropout: dropout rate (0.2 for ML-1M).
        tied_output: score with the input item embeddings (True, the paper) or with a
            separate output table (False).
    """

    def __init__(
        self,
        n_items: int,
        embedding_dim: int = 64,
        num_blocks: int = 2,
        num_heads: int = 1,
        max_len: int = 50,
        dropout: float = 0.2,
        tied_output: bool = True,
    ) -> None:
        super().__init__()
        if embedding_dim % num_heads != 0:
            raise ConfigError(
                f"model.embedding_dim ({embedding_dim}) must be divisible by model.num_heads ({num_heads})"
            )
        if max_len < 2 or num_blocks < 1:
            raise ConfigError(f"model.max_len must be >= 2 and num_blocks >= 1, got {max_len}, {num_blocks}")
        self.n_items, self.max_len, self.dim = n_items, max_len, embedding_dim
        self.item_emb = nn.Embedding(n_items + 1, embedding_dim, padding_idx=n_items)
        self.pos_emb = nn.Embedding(max_len, embedding_dim)
        self.emb_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(SASRecBlock(embedding_dim, num_heads, dropout) for _ in range(num_blocks))
        self.out_norm = nn.LayerNorm(embedding_dim, eps=1e-8)
        self.out_emb = None if tied_output else nn.Embedding(n_items, embedding_dim)  # scoring table
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)
        with torch.no_grad():
            self.item_emb.weight[n_items].zero_()

    def make_view(self, split: SplitData) -> BatchView:
        return SequenceView(split, self.max_len, pad=self.n_items)

    def hidden(self, seq: Tensor, last_only: bool = False) -> Tensor:
        """seq ``[B, L]`` item ids -> ``[B, L, D]`` (or ``[B, 1, D]`` with ``last_only``)."""
        keep = (seq != self.n_items).unsqueeze(-1).float()  # [B, L, 1]
        positions = torch.arange(seq.shape[1], device=seq.device)  # [L]
        x = self.item_emb(seq) * math.sqrt(self.dim) + self.pos_emb(positions)  # [B, L, D]
        x = self.emb_drop(x) * keep
        for i, block in enumerate(self.blocks):
            x = block(x, keep, last_only=last_only and i == len(self.blocks) - 1)
        return self.out_norm(x)

    def encode(self, batch: dict[str, Tensor]) -> Encoded:
        seq, target = batch["input"], batch["target"]  # [B, L], [B, L]
        h = self.hidden(seq)  # [B, L, D]
        valid = target != self.n_items  # [B, L]
        user = batch["user"].unsqueeze(1).expand_as(target)[valid]  # [R]
        return Encoded(query=h[valid], target=target[valid], user=user)  # [R, D], [R]

    def item_embeddings(self) -> Tensor:
        if self.out_emb is not None:
            return self.out_emb.weight  # [I, D]
        return self.item_emb.weight[: self.n_items]  # [I, D]

    def named_vectors(self) -> dict[str, Tensor]:
        """Item and position embeddings, and each head's query projection of the first
        block (``attention_heads``, ``[H, D * D / H]``)."""
        q = self.blocks[0].attn.q_proj.weight  # [D, D], rows grouped by head
        heads = q.view(self.blocks[0].attn.heads, -1)  # [H, D/H * D]
        return {"item_embeddings": self.item_embeddings(), "positions": self.pos_emb.weight, "attention_heads": heads}

    def user_queries(self, inputs: dict[str, Tensor]) -> Tensor:
        return self.hidden(inputs["input"], last_only=True)[:, -1]  # [B, D]

    sequence_key = "input"  # represent() reads the training input sequence (augmentations rewrite it)

    def represent(self, batch: dict[str, Tensor]) -> Represented:
        """Each row's hidden state at the last position of its training input (the query
        of its last target, as :meth:`user_queries` encodes a user) and that target."""
        return Represented(vector=self.user_queries(batch), target=batch["target"][:, -1])  # [B, D], [B]
