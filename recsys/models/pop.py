"""Most-popular baseline: every user gets the items ranked by training popularity.

The reference every results table needs (e.g. Ji et al., "A Re-visit of the Popularity
Baseline in Recommender Systems", SIGIR 2020): a trained model that does not beat it has
learned nothing personal.
"""

from __future__ import annotations

import torch
from torch import Tensor

from recsys.data.interactions import SplitData
from recsys.data.views import BatchView, PairView
from recsys.models.base import Encoded, RecModel


def popularity_scores(counts: Tensor, break_ties: bool) -> Tensor:
    """Item scores that order items by ``counts``, most popular first.

    Args:
        counts: ``[I]`` training events per item.
        break_ties: True: a strict order, equally popular items by increasing id (the
            scores are ``I - position``, exact integers in float32 for any catalogue
            below 2^24 items); False: the counts themselves (equally popular items tie,
            and the evaluator ranks ties pessimistically, a lower bound).

    Returns:
        ``[I]`` float scores.
    """
    if not break_ties:
        return counts.float()  # [I]
    order = torch.sort(counts, descending=True, stable=True).indices  # [I] ties keep id order
    scores = torch.empty(counts.numel())
    scores[order] = torch.arange(counts.numel(), 0, -1, dtype=torch.float)  # [I] I for the first
    return scores


class Pop(RecModel):
    """Ranks items by their number of training events, the same list for every user.

    Nothing is trained (``trainable = False``): the run evaluates it directly. The counts
    come from the training split only (for validation and for test), and the evaluator
    removes each user's own training items from the ranking, as for every model. The
    model fits the dot-product contract with 1-dimensional vectors: every user's query is
    ``1`` and an item's vector is its popularity score.

    Args:
        n_items: number of items (from the data).
        break_ties: order equally popular items by increasing id (True), or let them tie
            (False; the evaluator's pessimistic ties then give a lower bound).
    """

    trainable = False

    def __init__(self, n_items: int, break_ties: bool = True) -> None:
        super().__init__()
        self.break_ties = break_ties
        self.register_buffer("popularity", torch.zeros(n_items))  # [I] filled by setup

    def setup(self, split: SplitData) -> None:
        counts = split.train.item_counts()  # [I]
        self.popularity.copy_(popularity_scores(counts, self.break_ties))

    def make_view(self, split: SplitData) -> BatchView:
        return PairView(split)  # evaluation only needs user ids

    def encode(self, batch: dict[str, Tensor]) -> Encoded:
        return Encoded(query=self.user_queries(batch), target=batch["item"], user=batch["user"])  # [B, 1]

    def item_embeddings(self) -> Tensor:
        return self.popularity.unsqueeze(1)  # [I, 1]

    def user_queries(self, inputs: dict[str, Tensor]) -> Tensor:
        user = inputs["user"]  # [B]
        return torch.ones(user.numel(), 1, device=self.popularity.device)  # [B, 1]

    def score(self, query: Tensor, items: Tensor) -> Tensor:
        """An elementwise product rather than a matmul, so that mixed precision never
        rounds the scores (bf16 cannot tell 257 from 258).

        Shape:
            query ``[B, 1]``; items ``[N, 1]`` or ``[B, N, 1]`` -> ``[B, N]`` (a new tensor).
        """
        if items.dim() == 2:
            return query * items.squeeze(1).unsqueeze(0)  # [B, N]
        return query * items.squeeze(2)  # [B, N]
