"""SASRec: Self-Attentive Sequential Recommendation (Kang & McAuley, ICDM 2018).

Item and learned position embeddings feed causal self-attention blocks; the output at
position ``t`` is the query for the item at ``t + 1``, so every position of every sequence
is a training row. Item embeddings are shared between input and output (as in the paper)
unless ``tied_output=False`` gives the output its own table (gSASRec's default,
``reuse_item_embeddings=False``, Petrov & Macdonald 2023). The block layout
follows the reference implementation: the query is layer-normed, the residual is added to
the normed query, then a layer-normed point-wise feed-forward with its own residual, and a
final layer norm.

Options beyond the paper, all off by default (the defaults are the paper's model):

* gSASRec's reference settings (Petrov & Macdonald, RecSys 2023): ``input_scale=False``
  drops the ``sqrt(D)`` scaling of the input item embeddings.
* ``mask_padding_keys=False`` lets attention attend padding keys (whose zero input is
  projected to the key and value biases), as some PyTorch ports do; the default masks
  them, as the reference SASRec and gSASRec code do. Masked keys make the left padding
  irrelevant, so a batch is encoded in ``seq_buckets`` groups of similar history length,
  each cut to its longest row (:mod:`recsys.models.buckets`): the same outputs at the
  real positions for about half the attention-block work on ml1m.
* The block and initialization of gSASRec's PyTorch port (github.com/asash/gSASRec-pytorch,
  which keeps the SASRec TensorFlow code's block): ``attention_dropout=False`` (no dropout
  on the attention branch's output; its weights are still dropped), ``attention_out_proj=False``
  (no output projection ``W_O``), ``norm_eps=1e-5`` and ``init=pytorch`` (PyTorch's
  defaults: ``N(0, 1)`` embeddings and Kaiming-uniform linear layers, instead of
  Xavier-normal matrices).
* Context features (early fusion of side information, the "invasive" integration that
  Xie et al., DIF-SR, SIGIR 2022, compare): each item feature named in
  ``context_features`` is embedded (a multi-valued one, e.g. genres, as the mean of its
  values' embeddings) and added to the item ID embedding (``context_fusion=add``) or
  concatenated with it and projected back to ``D`` (``concat``, as RecBole's SASRecF,
  Zhao et al., CIKM 2021); with ``context_output`` the scored item vectors are fused the
  same way, so that an item with few events is scored through its features too. User
  features named in ``user_context`` are embedded, summed and added to every position's
  input, like the position embedding: attention and feed-forward layers then condition
  on them, and the query (the last position's output) carries them in training and
  evaluation alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recsys.data.interactions import SplitData
from recsys.data.views import BatchView, SequenceView
from recsys.errors import ConfigError, check_positive
from recsys.models.base import Encoded, RecModel, Represented, check_transformer_sizes
from recsys.models.buckets import length_buckets
from recsys.models.causal_attention import SASRecBlock
from recsys.models.dropout import Dropout
from recsys.models.towers import CategoricalFeatures, select_features


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
        input_scale: multiply input item embeddings by ``sqrt(D)`` (True, the paper's
            code); False as gSASRec's reference.
        mask_padding_keys: mask attention keys at padding positions (True, the reference
            code; False: they are attended, with the zero input projected to the key and
            value biases).
        attention_dropout: drop the attention branch's output before its residual (True);
            False as the SASRec and gSASRec reference code, which drop only the weights.
        attention_out_proj: project the heads' concatenated outputs with ``W_O`` (True);
            False as the reference code.
        norm_eps: the layer norms' epsilon (1e-8, the SASRec code's; 1e-5 PyTorch's).
        init: ``xavier_normal`` (every matrix, embeddings included; the padding row zero)
            or ``pytorch`` (the modules' defaults, as gSASRec's port: ``N(0, 1)``
            embeddings, Kaiming-uniform linear layers; the padding row zero).
        seq_buckets: with masked padding keys, encode a batch in this many groups of
            similar history length, each cut to its longest row (1: the whole batch at
            ``max_len``); the outputs are the same. Ignored with ``mask_padding_keys=False``,
            where cutting the padding would change them.
        context_features: item features added to the item embeddings: names, ``[all]``
            (every item feature of the data) or ``[]`` (IDs only: no feature parameters,
            features ignored).
        context_fusion: ``add`` (sum of the ID and feature embeddings) or ``concat``
            (``[ID; features] -> Linear -> D``).
        context_output: score with the fused item vectors too (True; False: the fusion is
            on the input side only); ignored without context features. After 5 epochs
            (CE, max length 50) it lifted test NDCG@10 from 0.030 (input side only) to
            0.040 on Amazon Beauty (IDs only: 0.026) and from 0.082 to 0.092 on ML-1M
            (IDs only: 0.080), most for targets with few training events.
        user_context: user features whose embeddings are summed into every position's
            input: names, ``[all]`` or ``[]``.
        item_features, user_features, feature_cardinality: from the data.
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
        input_scale: bool = True,
        mask_padding_keys: bool = True,
        attention_dropout: bool = True,
        attention_out_proj: bool = True,
        norm_eps: float = 1e-8,
        init: str = "xavier_normal",
        seq_buckets: int = 8,
        context_features: Sequence[str] = (),
        context_fusion: str = "add",
        context_output: bool = True,
        user_context: Sequence[str] = (),
        item_features: dict[str, Tensor] | None = None,
        user_features: dict[str, Tensor] | None = None,
        feature_cardinality: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        if context_fusion not in ("add", "concat"):
            raise ConfigError(f"model.context_fusion must be one of add, concat, got {context_fusion!r}")
        if init not in ("xavier_normal", "pytorch"):
            raise ConfigError(f"model.init must be one of xavier_normal, pytorch, got {init!r}")
        check_positive("model.norm_eps", norm_eps)
        check_transformer_sizes(embedding_dim, num_heads, max_len, num_blocks)
        if isinstance(seq_buckets, bool) or not isinstance(seq_buckets, int) or seq_buckets < 1:
            raise ConfigError(f"model.seq_buckets must be an integer >= 1, got {seq_buckets!r}")
        self.seq_buckets = seq_buckets if mask_padding_keys else 1
        self.n_items, self.max_len, self.dim, self.input_scale = n_items, max_len, embedding_dim, input_scale
        self.item_emb = nn.Embedding(n_items + 1, embedding_dim, padding_idx=n_items)
        self.pos_emb = nn.Embedding(max_len, embedding_dim)
        self.emb_drop = Dropout(dropout)
        self.blocks = nn.ModuleList(
            SASRecBlock(embedding_dim, num_heads, dropout, mask_padding_keys, attention_dropout,
                        attention_out_proj, norm_eps)
            for _ in range(num_blocks)
        )
        self.out_norm = nn.LayerNorm(embedding_dim, eps=norm_eps)
        self.out_emb = None if tied_output else nn.Embedding(n_items, embedding_dim)  # scoring table
        self._add_context(context_features, context_fusion, context_output, user_context,
                          item_features or {}, user_features or {}, feature_cardinality or {})
        if init == "xavier_normal":  # "pytorch" keeps the modules' own initialization
            for p in self.parameters():
                if p.dim() > 1:
                    nn.init.xavier_normal_(p)
        with torch.no_grad():
            for module in self.modules():  # the padding item and missing feature values embed to zero
                if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                    module.weight[module.padding_idx].zero_()

    def _add_context(self, item_names, fusion, output, user_names, item_features, user_features, cardinality) -> None:
        """The feature embeddings of the chosen item and user features (none for IDs only)."""
        self.item_context = self.context_proj = self.user_context = None
        self.context_output = False
        item_names = select_features(item_names, item_features, "model.context_features", "item")
        user_names = select_features(user_names, user_features, "model.user_context", "user")
        d = self.dim
        if item_names:
            values = {n: item_features[n].reshape(self.n_items, -1) for n in item_names}  # [I, V]
            values = {n: torch.cat([v, v.new_full((1, v.shape[1]), -1)]) for n, v in values.items()}  # [I+1, V]: padding has none
            self.item_context = CategoricalFeatures(values, cardinality, d)  # [..., F * D]
            self.context_proj = nn.Linear((1 + len(item_names)) * d, d) if fusion == "concat" else None
            self.context_output = bool(output)
        if user_names:
            self.user_context = CategoricalFeatures({n: user_features[n] for n in user_names}, cardinality, d)

    def make_view(self, split: SplitData) -> BatchView:
        return SequenceView(split, self.max_len, pad=self.n_items)

    def fuse(self, id_vectors: Tensor, ids: Tensor) -> Tensor:
        """The item vectors ``id_vectors`` ``[..., D]`` of the items ``ids`` ``[...]`` fused
        with the items' context features (unchanged for IDs only) -> ``[..., D]``."""
        if self.item_context is None:
            return id_vectors
        if ids.numel() > self.n_items:  # embed every item's features once, then gather
            features = self.item_context(torch.arange(self.n_items + 1, device=ids.device))[ids]  # [..., F * D]
        else:
            features = self.item_context(ids)  # [..., F * D], zeros for the padding id
        if self.context_proj is None:
            return id_vectors + features.unflatten(-1, (-1, self.dim)).sum(-2)  # [..., D]
        return self.context_proj(torch.cat([id_vectors, features], -1))  # [..., D]

    def user_vector(self, user: Tensor | None) -> Tensor:
        """user ``[B]`` ids -> ``[B, D]`` the sum of their context feature embeddings."""
        if user is None:
            raise ValueError("SASRec with user context features needs the users' ids (the batch's 'user')")
        return self.user_context(user).unflatten(-1, (-1, self.dim)).sum(-2)  # [B, D]

    def hidden(self, seq: Tensor, last_only: bool = False, user: Tensor | None = None) -> Tensor:
        """seq ``[B, L]`` item ids (and user ``[B]`` ids, needed with user context) ->
        ``[B, L, D]`` (or ``[B, 1, D]`` with ``last_only``). Positions are counted from
        the right: a sequence shorter than ``max_len`` is the last ``L`` positions of a
        left-padded one."""
        keep = (seq != self.n_items).unsqueeze(-1).float()  # [B, L, 1]
        positions = torch.arange(self.max_len - seq.shape[1], self.max_len, device=seq.device)  # [L]
        items = self.fuse(self.item_emb(seq), seq)  # [B, L, D]
        x = (items * math.sqrt(self.dim) if self.input_scale else items) + self.pos_emb(positions)  # [B, L, D]
        if self.user_context is not None:
            x = x + self.user_vector(user).unsqueeze(1)  # [B, L, D], the same at every position
        x = self.emb_drop(x) * keep
        for i, block in enumerate(self.blocks):
            x = block(x, keep, last_only=last_only and i == len(self.blocks) - 1)
        return self.out_norm(x)

    def encode(self, batch: dict[str, Tensor]) -> Encoded:
        """One row per target position, grouped by the batch's length buckets."""
        seq, target, users = batch["input"], batch["target"], batch["user"]  # [B, L], [B, L], [B]
        queries, targets, row_users = [], [], []
        for rows, width in length_buckets(seq, self.n_items, self.seq_buckets):
            h = self.hidden(seq[rows, -width:], user=users[rows])  # [B_k, W, D]
            t = target[rows, -width:]  # [B_k, W]; targets sit only where the input is an item
            valid = t != self.n_items  # [B_k, W]
            queries.append(h[valid])  # [R_k, D]
            targets.append(t[valid])  # [R_k]
            row_users.append(users[rows].unsqueeze(1).expand_as(t)[valid])  # [R_k]
        return Encoded(query=torch.cat(queries), target=torch.cat(targets), user=torch.cat(row_users))

    def id_table(self) -> Tensor:
        """``[I, D]`` the scoring table of item IDs (the input table when tied)."""
        return self.item_emb.weight[: self.n_items] if self.out_emb is None else self.out_emb.weight

    def item_embeddings(self) -> Tensor:
        table = self.id_table()  # [I, D]
        if not self.context_output:
            return table
        return self.fuse(table, torch.arange(self.n_items, device=table.device))  # [I, D]

    def item_vectors(self, ids: Tensor) -> Tensor:
        """With ``context_output``, only the items ``ids`` are fused (``[...]`` -> ``[..., D]``)."""
        if not self.context_output:
            return super().item_vectors(ids)
        return self.fuse(self.id_table()[ids], ids)  # [..., D]

    def named_vectors(self) -> dict[str, Tensor]:
        """Item and position embeddings, and each head's query projection of the first
        block (``attention_heads``, ``[H, D * D / H]``)."""
        q = self.blocks[0].attn.q_proj.weight  # [D, D], rows grouped by head
        heads = q.view(self.blocks[0].attn.heads, -1)  # [H, D/H * D]
        return {"item_embeddings": self.item_embeddings(), "positions": self.pos_emb.weight, "attention_heads": heads}

    def user_queries(self, inputs: dict[str, Tensor]) -> Tensor:
        """The output at the last position, encoded in length buckets."""
        seq, user = inputs["input"], inputs.get("user")  # [B, L], [B]
        groups = length_buckets(seq, self.n_items, self.seq_buckets)
        if len(groups) == 1:
            return self.hidden(seq, last_only=True, user=user)[:, -1]  # [B, D]
        last = torch.cat([
            self.hidden(seq[rows, -width:], last_only=True, user=None if user is None else user[rows])[:, -1]
            for rows, width in groups
        ])  # [B, D] in bucket order
        order = torch.cat([rows for rows, _ in groups])  # [B]
        return last[order.argsort()]  # [B, D] batch order

    sequence_key = "input"  # represent() reads the training input sequence (augmentations rewrite it)

    def represent(self, batch: dict[str, Tensor]) -> Represented:
        """Each row's hidden state at the last position of its training input (the query
        of its last target, as :meth:`user_queries` encodes a user) and that target."""
        return Represented(vector=self.user_queries(batch), target=batch["target"][:, -1])  # [B, D], [B]
