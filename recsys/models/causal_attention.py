"""SASRec's transformer block (Kang & McAuley, ICDM 2018; the reference implementation's
layout): causal multi-head self-attention over a left-padded history, optionally with
padding keys masked, then a point-wise feed-forward layer, each with its residual."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.models.dropout import Dropout


class CausalSelfAttention(nn.Module):
    """Multi-head attention of ``query`` positions (the last ``Lq`` of the ``Lk`` context
    positions) over ``context``, causally masked; given ``key_keep``, keys at padding
    positions are masked too, except a query's own position, so that a padding query
    whose earlier keys are all padding still has one key (no NaN; the block zeroes its
    output). ``out_proj=False`` returns the heads' outputs concatenated, without the
    output projection ``W_O`` (the SASRec and gSASRec reference code have none)."""

    def __init__(self, dim: int, heads: int, dropout: float, out_proj: bool = True) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.out_proj = nn.Linear(dim, dim) if out_proj else nn.Identity()

    def forward(self, query: Tensor, context: Tensor, key_keep: Tensor | None = None) -> Tensor:
        """query ``[B, Lq, D]``, context ``[B, Lk, D]``, key_keep ``[B, Lk]`` bool -> ``[B, Lq, D]``."""
        b, lq, d = query.shape
        lk = context.shape[1]
        q = self.q_proj(query).view(b, lq, self.heads, d // self.heads).transpose(1, 2)  # [B, H, Lq, d/H]
        k, v = self.kv_proj(context).view(b, lk, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        mask, causal = attention_mask(lq, lk, key_keep, query.device)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, dropout_p=self.dropout if self.training else 0.0
        )  # [B, H, Lq, d/H]
        return self.out_proj(out.transpose(1, 2).reshape(b, lq, d))  # [B, Lq, D]


def attention_mask(lq: int, lk: int, key_keep: Tensor | None, device: torch.device) -> tuple[Tensor | None, bool]:
    """``(attn_mask, is_causal)`` for :func:`F.scaled_dot_product_attention`, True where a
    query may attend: query ``j`` is position ``lk - lq + j`` and sees keys up to it; with
    ``key_keep`` ``[B, Lk]`` only kept keys and its own position (mask ``[B, 1, Lq, Lk]``)."""
    if key_keep is None and lq == lk:
        return None, True
    causal = torch.ones(lq, lk, dtype=torch.bool, device=device).tril(lk - lq)  # [Lq, Lk]
    if key_keep is None:  # the last lq positions attend to every earlier one
        return causal, False
    own = causal & ~causal.tril(lk - lq - 1)  # [Lq, Lk] each query's own position
    return causal & (key_keep[:, None, None, :] | own), False  # [B, 1, Lq, Lk]


class SASRecBlock(nn.Module):
    """Layer-normed query, attention (weights dropped) plus that query, layer norm, then a
    point-wise feed-forward (activations and output dropped) with its residual.
    ``attention_dropout`` also drops the attention branch's output before its residual;
    ``out_proj`` keeps the attention's output projection; ``norm_eps`` is the layer norms'
    epsilon (1e-8 as the SASRec code; gSASRec's PyTorch port keeps PyTorch's 1e-5)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dropout: float,
        mask_padding_keys: bool = False,
        attention_dropout: bool = True,
        out_proj: bool = True,
        norm_eps: float = 1e-8,
    ) -> None:
        super().__init__()
        self.mask_padding_keys = mask_padding_keys
        self.attn_norm = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = CausalSelfAttention(dim, heads, dropout, out_proj)
        self.ffn_norm = nn.LayerNorm(dim, eps=norm_eps)
        self.ffn = nn.Sequential(
            nn.Linear(dim, dim), Dropout(dropout), nn.ReLU(), nn.Linear(dim, dim), Dropout(dropout)
        )
        self.drop = Dropout(dropout) if attention_dropout else nn.Identity()

    def forward(self, x: Tensor, keep: Tensor, last_only: bool = False) -> Tensor:
        """x ``[B, L, D]``, keep ``[B, L, 1]`` (0 at padding) -> ``[B, L or 1, D]``."""
        q = self.attn_norm(x[:, -1:] if last_only else x)  # [B, Lq, D]
        key_keep = keep.squeeze(-1) > 0 if self.mask_padding_keys else None  # [B, L]
        h = q + self.drop(self.attn(q, x, key_keep))
        h = self.ffn_norm(h)
        h = h + self.ffn(h)
        return h * (keep[:, -1:] if last_only else keep)
