"""L2 penalty on the embeddings a training batch touches (the LightGCN / BPR regularizer)."""

from __future__ import annotations

from torch import Tensor

from recsys.auxiliary.base import AuxTerm
from recsys.models.base import Encoded, RecModel
from recsys.samplers.base import Negatives


class EmbeddingL2(AuxTerm):
    """``0.5 * mean_r (||u_r||^2 + ||p_r||^2 + mean_j ||n_rj||^2)`` over the batch's rows
    ``r``: user ``u_r``, positive ``p_r`` and negatives ``n_rj``, all taken from the
    model's *input* (layer-0) embeddings. With one negative per row and ``weight=1e-4``
    this is the regularizer of LightGCN (He et al., SIGIR 2020, Eq. 15 and its reference
    code) and BPR-MF (Rendle et al., UAI 2009); with shared or full-catalogue negatives
    every row counts the mean over its negatives, so the weight keeps its meaning as the
    number of negatives changes. Unlike ``optimizer.weight_decay`` it only shrinks the rows
    a step uses, as often as the step uses them.

    An auxiliary term (``aux=[embedding_l2]``): the module adds ``weight * value``.

    Args:
        weight: weight in the total objective (the LightGCN paper uses 1e-4).
    """

    sources = ("user_embeddings", "item_embeddings")

    def __init__(self, weight: float = 1e-4) -> None:
        super().__init__(weight, "embedding_l2")

    def check(self, model: RecModel) -> None:
        """Fails before training when the model has no per-id user and item tables."""
        for name in self.sources:
            model.exposed(name)

    def forward(
        self, model: RecModel, enc: Encoded, negatives: Negatives, batch: dict[str, Tensor] | None = None
    ) -> Tensor:
        users, items = model.exposed("user_embeddings"), model.exposed("item_embeddings")  # [U, D], [I, D]
        user_sq = users[enc.user].pow(2).sum(1)  # [R]
        pos_sq = items[enc.target].pow(2).sum(1)  # [R]
        neg = items if negatives.items is None else items[negatives.items]  # [N, D] (full or shared) or [R, N, D]
        neg_sq = neg.pow(2).sum(-1).mean(-1)  # [] or [R]
        return 0.5 * (user_sq + pos_sq + neg_sq).mean()
