"""NeuMF (He et al., WWW 2017, "Neural Collaborative Filtering"): GMF and MLP branches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.data.interactions import SplitData
from recsys.data.views import BatchView, PairView, check_train_rows
from recsys.errors import ConfigError, check_number
from recsys.models.base import Encoded, RecModel
from recsys.models.chunked import check_eval_chunk, score_in_chunks

BRANCHES = ("neumf", "gmf", "mlp")


class NeuMF(RecModel):
    """Neural matrix factorization: a GMF and an MLP branch with separate embeddings.

    He, Liao, Zhang, Nie, Hu & Chua, "Neural Collaborative Filtering", WWW 2017. For user
    ``u`` and item ``i``::

        phi_GMF = p_u^G * q_i^G                                    (elementwise, [gmf_dim])
        z_1     = [p_u^M ; q_i^M]                                  ([mlp_layers[0]])
        z_l     = dropout(ReLU(W_l z_(l-1) + b_l)), l = 2..L       ([mlp_layers[l-1]])
        phi_MLP = z_L
        s(u, i) = alpha (h_G . phi_GMF + b_G) + (1 - alpha) (h_M . phi_MLP + b_M)

    i.e. the paper's fused layer ``h^T [phi_GMF ; phi_MLP]`` with
    ``h = [alpha h_G ; (1 - alpha) h_M]``, kept as two heads so that each branch's head
    comes from its pretrained run (the paper's pretraining with ``alpha = 0.5``).
    ``s`` is the logit: the paper's ``y_hat = sigmoid(s)`` is applied by the loss
    (``loss=bce``). ``branches=gmf`` scores ``h_G . phi_GMF + b_G`` alone (GMF) and
    ``branches=mlp`` ``h_M . phi_MLP + b_M`` alone (MLP), with the same parameter names
    as in NeuMF, so that ``init_from`` copies ``model.gmf`` and ``model.mlp`` into it.

    Queries and item vectors are the concatenated embeddings ``[p^G ; p^M]``; :meth:`score`
    runs the network on every (query, item) pair. Full ranking runs in tiles of at most
    ``eval_chunk`` pairs (:func:`~recsys.models.chunked.score_in_chunks`); the first MLP
    layer is split as ``W_2 z_1 = W_u p_u^M + W_i q_i^M`` so that it is computed once per
    user and once per item, not once per pair, and the GMF part is a matrix product.

    Args:
        n_users: number of users (from the data).
        n_items: number of items (from the data).
        gmf_dim: GMF embedding size (the paper's predictive factors).
        mlp_layers: MLP widths; ``mlp_layers[0]`` is the concatenated input
            ``[p^M ; q^M]`` (each embedding has ``mlp_layers[0] // 2``), then one
            ReLU layer per further entry (the paper's tower, e.g. ``[64, 32, 16]``).
        dropout: dropout after each MLP layer's ReLU (training only).
        branches: ``neumf`` (both), ``gmf`` or ``mlp`` (one branch, for pretraining).
        alpha: weight of the GMF head in NeuMF (the MLP head gets ``1 - alpha``).
        init_std: standard deviation of the embeddings' normal initialization.
        eval_chunk: the most (user, item) pairs scored at once.
        train_rows: ``events`` or ``users`` (see :class:`~recsys.data.views.PairView`).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        gmf_dim: int = 16,
        mlp_layers: list[int] = (64, 32, 16),
        dropout: float = 0.0,
        branches: str = "neumf",
        alpha: float = 0.5,
        init_std: float = 0.01,
        eval_chunk: int = 65536,
        train_rows: str = "events",
    ) -> None:
        super().__init__()
        layers = self._check(gmf_dim, mlp_layers, dropout, branches, alpha)
        self.branches, self.alpha = branches, float(alpha)
        self.eval_chunk = check_eval_chunk(eval_chunk)
        self.train_rows = check_train_rows(train_rows)
        self.gmf_dim = gmf_dim if branches != "mlp" else 0
        self.mlp_dim = layers[0] // 2 if branches != "gmf" else 0
        if self.gmf_dim:
            self.gmf = nn.ModuleDict(
                {"user": nn.Embedding(n_users, gmf_dim), "item": nn.Embedding(n_items, gmf_dim), "head": nn.Linear(gmf_dim, 1)}
            )
        if self.mlp_dim:
            tower = nn.ModuleList(nn.Linear(a, b) for a, b in zip(layers[:-1], layers[1:]))
            self.mlp = nn.ModuleDict(
                {
                    "user": nn.Embedding(n_users, self.mlp_dim),
                    "item": nn.Embedding(n_items, self.mlp_dim),
                    "tower": tower,
                    "head": nn.Linear(layers[-1], 1),
                }
            )
        self.dropout = nn.Dropout(dropout)
        for emb in self._embeddings("user") + self._embeddings("item"):
            nn.init.normal_(emb.weight, std=init_std)

    @staticmethod
    def _check(gmf_dim, mlp_layers, dropout, branches, alpha) -> list[int]:
        if branches not in BRANCHES:
            raise ConfigError(f"model.branches must be one of {', '.join(BRANCHES)}, got {branches!r}")
        if isinstance(gmf_dim, bool) or not isinstance(gmf_dim, int) or gmf_dim < 1:
            raise ConfigError(f"model.gmf_dim must be an integer >= 1, got {gmf_dim!r}")
        layers = list(mlp_layers) if hasattr(mlp_layers, "__iter__") else None  # a list or ListConfig
        if (
            not layers
            or len(layers) < 2
            or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in layers)
            or layers[0] % 2
        ):
            raise ConfigError(
                f"model.mlp_layers must be >= 2 positive integers, the first even (input [p;q]), e.g. [64,32,16]; "
                f"got {mlp_layers!r}"
            )
        check_number("model.dropout", dropout, 0, 1, high_open=True)
        check_number("model.alpha", alpha, 0, 1)
        return [int(w) for w in layers]

    def _embeddings(self, side: str) -> list[nn.Embedding]:
        return [branch[side] for branch in (getattr(self, "gmf", None), getattr(self, "mlp", None)) if branch is not None]

    # ---- the RecModel contract -------------------------------------------------------
    def make_view(self, split: SplitData) -> BatchView:
        return PairView(split, rows=self.train_rows)

    def _vectors(self, side: str, ids: Tensor | None = None) -> Tensor:
        parts = [emb.weight if ids is None else emb(ids) for emb in self._embeddings(side)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)  # [..., Dg + Dm]

    def encode(self, batch: dict[str, Tensor]) -> Encoded:
        return Encoded(query=self._vectors("user", batch["user"]), target=batch["item"], user=batch["user"])  # [B, D]

    def item_embeddings(self) -> Tensor:
        return self._vectors("item")  # [I, Dg + Dm]

    def item_vectors(self, ids: Tensor) -> Tensor:
        return self._vectors("item", ids)  # [..., Dg + Dm]

    def user_queries(self, inputs: dict[str, Tensor]) -> Tensor:
        return self._vectors("user", inputs["user"])  # [B, Dg + Dm]

    def named_vectors(self) -> dict[str, Tensor]:
        return {"item_embeddings": self.item_embeddings(), "user_embeddings": self._vectors("user")}

    # ---- scores ----------------------------------------------------------------------
    def score(self, query: Tensor, items: Tensor) -> Tensor:
        """Network scores of queries against items (formulas in the class docstring).

        Shape:
            query ``[B, D]``; items ``[N, D]`` (shared: tiles of at most ``eval_chunk``
            pairs) or ``[B, N, D]`` (per row) -> ``[B, N]``.
        """
        g_u, g_i, m_u, m_i = self._halves(query, items)
        if items.dim() == 3:
            return self._pairs(g_u, g_i, m_u, m_i, shared=False)  # [B, N]

        def block(rows: slice, cols: slice) -> Tensor:
            sub = lambda x, s: None if x is None else x[s]  # noqa: E731
            return self._pairs(sub(g_u, rows), sub(g_i, cols), sub(m_u, rows), sub(m_i, cols), shared=True)

        return score_in_chunks(block, query.shape[0], items.shape[0], self.eval_chunk)  # [B, N]

    def _halves(self, query: Tensor, items: Tensor):
        """Per-user and per-item parts: ``h_G * p^G``, ``q^G``, ``W_u p^M + b_2``, ``W_i q^M``."""
        g_u = g_i = m_u = m_i = None
        if self.gmf_dim:
            g_u = query[:, : self.gmf_dim] * self.gmf["head"].weight[0]  # [B, Dg]
            g_i = items[..., : self.gmf_dim]  # [N, Dg] or [B, N, Dg]
        if self.mlp_dim:
            first = self.mlp["tower"][0]
            w_u, w_i = first.weight[:, : self.mlp_dim], first.weight[:, self.mlp_dim :]  # [H1, Dm] each
            m_u = F.linear(query[:, self.gmf_dim :], w_u, first.bias)  # [B, H1]
            m_i = F.linear(items[..., self.gmf_dim :], w_i)  # [N, H1] or [B, N, H1]
        return g_u, g_i, m_u, m_i

    def _pairs(self, g_u, g_i, m_u, m_i, shared: bool) -> Tensor:
        """Scores of ``b`` users against ``n`` items (shared ``[n, .]`` or per row ``[b, n, .]``)."""
        score = 0.0
        if g_u is not None:
            gmf = g_u @ g_i.T if shared else (g_u.unsqueeze(1) * g_i).sum(-1)  # [b, n]
            gmf = gmf + self.gmf["head"].bias
            score = gmf if m_u is None else self.alpha * gmf
        if m_u is not None:
            z = self.dropout(torch.relu(m_u.unsqueeze(1) + (m_i.unsqueeze(0) if shared else m_i)))  # [b, n, H1]
            for layer in self.mlp["tower"][1:]:
                z = self.dropout(torch.relu(layer(z)))  # [b, n, H_l]
            mlp = self.mlp["head"](z).squeeze(-1)  # [b, n]
            score = mlp if g_u is None else score + (1 - self.alpha) * mlp
        return score  # [b, n]
