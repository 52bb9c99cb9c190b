"""Wide & Deep (Cheng et al., DLRS 2016): a linear model over sparse features and their
crosses, plus an MLP over embeddings, summed into one logit."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.data.interactions import SplitData
from recsys.data.views import BatchView, PairView, check_train_rows
from recsys.errors import ConfigError, check_number
from recsys.models.base import Encoded, RecModel
from recsys.models.chunked import check_eval_chunk, score_in_chunks
from recsys.models.towers import CategoricalFeatures

HISTORY = "history:"


def multi_hot(values: Tensor, cardinality: int) -> Tensor:
    """Normalized multi-hot of categorical values: ``[N]`` or ``[N, L]`` (``-1`` missing) ->
    ``[N, C]``, each row's valid values weighing ``1 / (number of valid values)`` (zeros when none)."""
    values = values.unsqueeze(1) if values.dim() == 1 else values  # [N, L]
    valid = (values >= 0).float()  # [N, L]
    hot = torch.zeros(values.shape[0], cardinality + 1).scatter_add_(1, values.clamp(min=0), valid)  # [N, C + 1]
    return hot[:, :cardinality] / valid.sum(1, keepdim=True).clamp(min=1.0)  # [N, C]


def parse_crosses(crosses: object, user_features: Sequence[str], item_features: Sequence[str]) -> list[tuple[str, str]]:
    """``model.crosses`` as ``(user_side, item_feature)`` pairs; ``all``: every user feature x
    every item feature, then ``history:g x g`` for every item feature ``g``."""
    sides = [*user_features, *(HISTORY + g for g in item_features)]
    if crosses == "all" or (not isinstance(crosses, str) and hasattr(crosses, "__iter__") and list(crosses) == ["all"]):
        return [(f, g) for f in user_features for g in item_features] + [(HISTORY + g, g) for g in item_features]
    pairs = list(crosses) if hasattr(crosses, "__iter__") and not isinstance(crosses, str) else None
    if pairs is None or any(isinstance(p, str) or not hasattr(p, "__len__") or len(p) != 2 or not all(isinstance(n, str) for n in p)
                            for p in pairs):
        raise ConfigError(
            f"model.crosses must be all, [] or a list of [user_side, item_feature] pairs, e.g. "
            f"[[age, genres], [history:genres, genres]]; got {crosses!r}"
        )
    pairs = [(str(a), str(b)) for a, b in pairs]
    unknown = [a for a, _ in pairs if a not in sides] + [b for _, b in pairs if b not in item_features]
    if unknown or len(set(pairs)) != len(pairs):
        what = f"unknown names {', '.join(unknown)}" if unknown else "a repeated pair"
        raise ConfigError(
            f"model.crosses has {what}; user sides: {', '.join(sides) or 'none'} (user features, or history:<item feature>); "
            f"item features: {', '.join(item_features) or 'none'} (or all, or [] for none)"
        )
    return pairs


def select_deep_features(requested: object, user_features: Sequence[str], item_features: Sequence[str]) -> list[str]:
    """``model.deep_features``: ``[all]`` every user and item feature (none when the data has
    none), ``[]`` IDs only, else names the data must have."""
    names = [requested] if isinstance(requested, str) else list(requested) if hasattr(requested, "__iter__") else None
    if names is None or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"model.deep_features must be [all], [] or a list of feature names, got {requested!r}")
    if names == ["all"]:
        return [*user_features, *item_features]
    unknown = [n for n in names if n not in user_features and n not in item_features]
    if unknown or len(set(names)) != len(names):
        what = f"unknown features {', '.join(unknown)}" if unknown else "a repeated name"
        raise ConfigError(
            f"model.deep_features has {what}; the data's user features are: {', '.join(user_features) or 'none'}, "
            f"item features: {', '.join(item_features) or 'none'} (or [all], or [] for IDs only)"
        )
    return [str(n) for n in names]


class WideDeep(RecModel):
    """Wide & Deep: a cross-product linear model and an MLP, trained jointly on one logit.

    Cheng, Koc, Harmsen, Shaked, Chandra, Aradhye, Anderson, Corrado, Chai, Ispir et al.,
    "Wide & Deep Learning for Recommender Systems", DLRS 2016. For user ``u`` and item
    ``i``, with ``m_g(i)`` the item's normalized multi-hot over the ``C_g`` values of item
    feature ``g`` (a multi-valued feature such as genres weighs each value ``1/|values|``)
    and ``x_f(u)`` the user's over user feature ``f``::

        wide(u, i) = w_i + sum_g v_g . m_g(i)                       (item bias, value weights)
                   + sum_{(f, g) in crosses}         x_f(u)^T W_fg m_g(i)   (W_fg [C_f, C_g])
                   + sum_{(history:g', g) in crosses} h_g'(u)^T W   m_g(i)   (W [C_g', C_g])
        h_g(u)     = mean of m_g(j) over u's training events (u, j)  (computed in :meth:`setup`)
        z_0        = [p_u ; e_f(u) for deep user features ; q_i ; e_g(i) for deep item features]
        z_l        = dropout(ReLU(A_l z_(l-1) + c_l)),  l = 1..L   (widths mlp_layers)
        deep(u, i) = a . z_L + b
        s(u, i)    = wide(u, i) + deep(u, i)

    ``s`` is the logit of the paper's ``P(Y=1|x) = sigmoid(w_wide^T [x, phi(x)] + w_deep^T
    a^(lf) + b)``; the loss applies the sigmoid or softmax. Each ``W_fg[u_f] . m_g(i)`` is
    the paper's cross-product transformation ``phi`` (AND of a user value and an item
    value) with its weight; ``history:g x g`` is the paper's own cross type
    (``user_installed_app x impression_app``): the user's training-history distribution
    over ``g``'s values crossed with the candidate's, so data without user features
    (Amazon: ``history:attributes x attributes``) still has crosses. A single-valued user
    feature makes ``x_f(u)`` one-hot, so its term is row ``u_f`` of ``W_fg``; a missing
    value (``-1``) contributes zero. User-only terms of the paper's wide part (a user's
    own features) do not change a user's ranking and are left out. Without item features
    the wide part is the item bias ``w_i`` alone. ``e_f``: the mean of a feature's value
    embeddings (:class:`~recsys.models.towers.CategoricalFeatures`).

    The wide part is the dot product ``a_u . b_i`` of a user-side vector
    ``a_u = [1 ; sum_{crosses of g} x(u)^T W for each crossed item feature g]`` and an
    item-side vector ``b_i = [w_i + sum_g v_g . m_g(i) ; m_g(i) for each crossed g]``, one
    matrix product for full ranking. The first deep layer is split as
    ``A_1 z_0 = A_u [p_u ; e(u)] + A_i [q_i ; e(i)]``, computed once per user and once per
    item; pairs then run through the rest of the tower in tiles of at most ``eval_chunk``
    pairs (:func:`~recsys.models.chunked.score_in_chunks`). Queries are ``[a_u ; p_u ; e(u)]``
    and item vectors ``[b_i ; q_i ; e(i)]``, so every loss and sampler composes. The paper
    trains the wide part with FTRL + L1 and the deep part with AdaGrad; here one optimizer
    (``optimizer=``) trains both. The history and multi-hot tables are dense (``[U, C_g]``,
    ``[I, C_g]``): about 110 MB and 60 MB for Amazon Beauty's 1,221 attributes.

    Args:
        n_users, n_items: id space sizes (from the data).
        user_features: name -> ``[n_users]`` values (from the data).
        item_features: name -> ``[n_items, L]`` values padded with ``-1`` (from the data).
        feature_cardinality: name -> number of values (from the data).
        embedding_dim: size of every deep embedding (ids and feature values).
        mlp_layers: hidden widths of the deep tower (one ReLU layer each), e.g. ``[64, 32, 16]``.
        dropout: dropout after each tower layer's ReLU (training only).
        crosses: ``all``, ``[]`` or ``[[user_side, item_feature], ...]`` (user side: a user
            feature or ``history:<item feature>``).
        deep_features: ``[all]``, ``[]`` (ids only) or user/item feature names to embed.
        wide_item_bias: learn the item bias ``w_i``.
        init_std: std of the deep embeddings' normal initialization (wide weights start at 0).
        eval_chunk: the most (user, item) pairs run through the tower at once.
        train_rows: ``events`` or ``users`` (see :class:`~recsys.data.views.PairView`).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        user_features: dict[str, Tensor] | None = None,
        item_features: dict[str, Tensor] | None = None,
        feature_cardinality: dict[str, int] | None = None,
        embedding_dim: int = 32,
        mlp_layers: Sequence[int] = (64, 32, 16),
        dropout: float = 0.1,
        crosses: object = "all",
        deep_features: object = ("all",),
        wide_item_bias: bool = True,
        init_std: float = 0.01,
        eval_chunk: int = 65536,
        train_rows: str = "events",
    ) -> None:
        super().__init__()
        user_features, item_features, card = user_features or {}, item_features or {}, feature_cardinality or {}
        layers = self._check(embedding_dim, mlp_layers, dropout, wide_item_bias, init_std)
        self.n_users, self.n_items = n_users, n_items
        self.eval_chunk, self.train_rows = check_eval_chunk(eval_chunk), check_train_rows(train_rows)
        user_names, item_names = sorted(user_features), sorted(item_features)
        self.crosses = parse_crosses(crosses, user_names, item_names)
        deep = select_deep_features(deep_features, user_names, item_names)
        # wide: dense multi-hot tables, the item bias, value weights and one matrix per cross
        self.crossed = sorted({g for _, g in self.crosses})  # item features in b_i
        for g in item_names:
            self.register_buffer(f"item_hot_{g}", multi_hot(item_features[g], card[g]), persistent=False)  # [I, C_g]
        for side in sorted({s for s, _ in self.crosses}):
            name = side.removeprefix(HISTORY)
            table = multi_hot(user_features[side], card[side]) if side in user_features else torch.zeros(n_users, card[name])
            self.register_buffer(self._user_key(side), table, persistent=False)  # [U, C]; history filled in setup
        self.item_bias = nn.Parameter(torch.zeros(n_items)) if wide_item_bias else None
        self.values = nn.ParameterDict({g: nn.Parameter(torch.zeros(card[g])) for g in item_names})
        self.cross = nn.ParameterDict({
            self._cross_key(s, g): nn.Parameter(torch.zeros(card[s.removeprefix(HISTORY)], card[g])) for s, g in self.crosses
        })
        self.wide_dim = 1 + sum(card[g] for g in self.crossed)
        # deep: id and feature embeddings, the tower (first layer split into user and item parts)
        pick = lambda feats: {n: feats[n] for n in deep if n in feats}  # noqa: E731
        self.user_emb, self.item_emb = nn.Embedding(n_users, embedding_dim), nn.Embedding(n_items, embedding_dim)
        self.user_feats = CategoricalFeatures(pick(user_features), card, embedding_dim)
        self.item_feats = CategoricalFeatures(pick(item_features), card, embedding_dim)
        self.user_dim = embedding_dim + self.user_feats.out_dim
        item_dim = embedding_dim + self.item_feats.out_dim
        widths = [self.user_dim + item_dim, *layers]
        self.tower = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.head = nn.Linear(layers[-1], 1)
        self.dropout = nn.Dropout(dropout)
        for emb in (self.user_emb, self.item_emb, *self.user_feats.tables.values(), *self.item_feats.tables.values()):
            nn.init.normal_(emb.weight, std=init_std)
            if emb.padding_idx is not None:
                nn.init.zeros_(emb.weight[emb.padding_idx])

    @staticmethod
    def _check(embedding_dim, mlp_layers, dropout, wide_item_bias, init_std) -> list[int]:
        if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ConfigError(f"model.embedding_dim must be an integer >= 1, got {embedding_dim!r}")
        layers = list(mlp_layers) if hasattr(mlp_layers, "__iter__") and not isinstance(mlp_layers, str) else None
        if not layers or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in layers):
            raise ConfigError(f"model.mlp_layers must be >= 1 positive integers (hidden widths), e.g. [64,32,16]; got {mlp_layers!r}")
        check_number("model.dropout", dropout, 0, 1, high_open=True)
        if not isinstance(wide_item_bias, bool):
            raise ConfigError(f"model.wide_item_bias must be true or false, got {wide_item_bias!r}")
        check_number("model.init_std", init_std, 0, low_open=True)
        return [int(w) for w in layers]

    @staticmethod
    def _user_key(side: str) -> str:
        return f"history_{side.removeprefix(HISTORY)}" if side.startswith(HISTORY) else f"user_hot_{side}"

    @staticmethod
    def _cross_key(side: str, g: str) -> str:
        return f"{WideDeep._user_key(side)}_x_{g}"

    def setup(self, split: SplitData) -> None:
        """The history distributions ``h_g(u)``: mean of ``m_g`` over u's training events."""
        train = split.train
        counts = torch.sparse_coo_tensor(
            torch.stack([train.user, train.item]), torch.ones(len(train)), (self.n_users, self.n_items), check_invariants=True
        ).coalesce()  # [U, I] events per (user, item)
        events = torch.bincount(train.user, minlength=self.n_users).clamp(min=1).unsqueeze(1).float()  # [U, 1]
        for side, _ in self.crosses:
            if side.startswith(HISTORY):
                hot = getattr(self, f"item_hot_{side.removeprefix(HISTORY)}").cpu()  # [I, C]
                getattr(self, self._user_key(side)).copy_(torch.sparse.mm(counts, hot) / events)  # [U, C]

    # ---- the RecModel contract -------------------------------------------------------
    def make_view(self, split: SplitData) -> BatchView:
        return PairView(split, rows=self.train_rows)

    def _user_vectors(self, users: Tensor) -> Tensor:
        """``[B, Dw + Du]``: ``[a_u ; p_u ; e(u)]``."""
        parts = [torch.ones(*users.shape, 1, device=users.device)]  # [B, 1] meets b_i's scalar
        for g in self.crossed:
            parts.append(sum(getattr(self, self._user_key(s))[users] @ self.cross[self._cross_key(s, g)]
                             for s, h in self.crosses if h == g))  # [B, C_g]
        return torch.cat([*parts, self.user_emb(users), self.user_feats(users)], dim=-1)  # [B, Dw + Du]

    def _item_vectors(self, items: Tensor | None) -> Tensor:
        """``[..., Dw + Di]``: ``[b_i ; q_i ; e(i)]`` (every item when ``items`` is None)."""
        if items is None:
            items = torch.arange(self.n_items, device=self.item_emb.weight.device)  # [I]
        scalar = self.item_bias[items] if self.item_bias is not None else torch.zeros(items.shape, device=items.device)
        for g, v in self.values.items():
            scalar = scalar + getattr(self, f"item_hot_{g}")[items] @ v  # [...]
        hots = [getattr(self, f"item_hot_{g}")[items] for g in self.crossed]  # [..., C_g] each
        return torch.cat([scalar.unsqueeze(-1), *hots, self.item_emb(items), self.item_feats(items)], dim=-1)

    def encode(self, batch: dict[str, Tensor]) -> Encoded:
        return Encoded(query=self._user_vectors(batch["user"]), target=batch["item"], user=batch["user"])  # [B, D]

    def item_embeddings(self) -> Tensor:
        return self._item_vectors(None)  # [I, Dw + Di]

    def item_vectors(self, ids: Tensor) -> Tensor:
        return self._item_vectors(ids)  # [..., Dw + Di]

    def user_queries(self, inputs: dict[str, Tensor]) -> Tensor:
        return self._user_vectors(inputs["user"])  # [B, Dw + Du]

    def named_vectors(self) -> dict[str, Tensor]:
        users = torch.arange(self.n_users, device=self.user_emb.weight.device)
        return {"item_embeddings": self.item_embeddings(), "user_embeddings": self._user_vectors(users)}

    # ---- scores ----------------------------------------------------------------------
    def score(self, query: Tensor, items: Tensor) -> Tensor:
        """``wide + deep`` logits of queries against items (formulas in the class docstring).

        Shape:
            query ``[B, Dw + Du]``; items ``[N, Dw + Di]`` (shared: the wide part one matrix
            product, the tower in tiles of at most ``eval_chunk`` pairs) or
            ``[B, N, Dw + Di]`` (per row) -> ``[B, N]``.
        """
        w = self.wide_dim
        first = self.tower[0]
        m_u = F.linear(query[:, w:], first.weight[:, : self.user_dim], first.bias)  # [B, H1]
        m_i = F.linear(items[..., w:], first.weight[:, self.user_dim :])  # [N, H1] or [B, N, H1]
        if items.dim() == 3:
            wide = torch.bmm(items[..., :w], query[:, :w].unsqueeze(2)).squeeze(2)  # [B, N]
            return wide + self._deep(m_u.unsqueeze(1) + m_i)  # [B, N]
        wide = query[:, :w] @ items[:, :w].T  # [B, N]
        deep = score_in_chunks(lambda r, c: self._deep(m_u[r].unsqueeze(1) + m_i[c].unsqueeze(0)),
                               query.shape[0], items.shape[0], self.eval_chunk)  # [B, N]
        return wide + deep

    def _deep(self, pre: Tensor) -> Tensor:
        """The tower above the first layer's pre-activation ``[b, n, H1]`` -> ``[b, n]``."""
        z = self.dropout(torch.relu(pre))  # [b, n, H1]
        for layer in self.tower[1:]:
            z = self.dropout(torch.relu(layer(z)))  # [b, n, H_l]
        return self.head(z).squeeze(-1)  # [b, n]
