"""Popularity-bias and beyond-accuracy metrics of top-K lists.

Every item's popularity comes from the training split only, computed once
(:meth:`ItemPopularity.from_interactions`). For a user's top-K list ``L`` (the items the
evaluator shows: excluded items are never in it, so ``|L| < K`` only for a user with fewer
than ``K`` allowed items; a user with none gets 0):

* ``arp@K`` (average recommendation popularity; Abdollahpouri, Burke and Mobasher 2019,
  "Managing popularity bias in recommender systems with personalized re-ranking") =
  sum_{i in L} phi(i) / |L|, where phi(i) is the number of training interactions of ``i``;
* ``aplt@K`` (average percentage of long-tail items; same paper) = |L ∩ tail| / |L|.
  The short head is the smallest set of the most popular items (by training interactions,
  equal counts ordered by increasing item id) whose interactions reach ``short_head_share``
  (default 0.2) of all training interactions: item ``j`` in that order is in the head iff
  the items before it hold less than that share. Every other item, items never seen in
  training included, is in the long tail;
* ``novelty@K`` (mean self-information; Zhou et al. 2010, "Solving the apparent
  diversity-accuracy dilemma of recommender systems"; Castells and Vargas 2011, "Rank and
  relevance in novelty and diversity metrics for recommender systems") =
  sum_{i in L} -log2 p(i) / |L|, with p(i) = (u_i + 1) / (U + 1): ``u_i`` the number of
  distinct training users who interacted with ``i`` and ``U`` the number of users with a
  training interaction. The +1 is one imaginary user who saw every item, so an item no one
  saw has the finite novelty log2(U + 1) and an item every user saw has 0.

The evaluator reports each as the mean over users (per-user values go to
``test_per_user.csv``). At catalogue level, like coverage, over all users' top-K lists:

* ``gini@K`` (Gini index of item exposure, e.g. Mansoury et al. 2020, "FairMatch") = with
  the exposure counts ``c_1 <= ... <= c_n`` of all ``n`` catalogue items (times an item is
  in some top-K list, zeros included), G = sum_j (2j - n - 1) c_j / (n sum_j c_j): 0 when
  every item is shown equally often, (n - 1) / n when one item takes all exposure; NaN
  when nothing was shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from recsys.data.interactions import Interactions
from recsys.errors import check_number


@dataclass
class ItemPopularity:
    """Per-item training statistics that the popularity metrics look up.

    Attributes:
        count: ``[I]`` float training interactions of each item (phi in ARP).
        long_tail: ``[I]`` bool, True outside the short head.
        self_information: ``[I]`` -log2 p(i), p(i) = (u_i + 1) / (U + 1).
    """

    count: Tensor
    long_tail: Tensor
    self_information: Tensor

    @staticmethod
    def from_counts(count: Tensor, users: Tensor, n_users: int, short_head_share: float = 0.2) -> "ItemPopularity":
        """The statistics from per-item counts.

        Args:
            count: ``[I]`` training interactions per item.
            users: ``[I]`` distinct training users per item.
            n_users: users with at least one training interaction.
            short_head_share: share of training interactions the short head holds.
        """
        check_share(short_head_share)
        count = count.double()
        p = (users.double() + 1.0) / (n_users + 1.0)  # [I]
        return ItemPopularity(
            count=count.float(),
            long_tail=~short_head(count, short_head_share),
            self_information=(-torch.log2(p)).float(),
        )

    @staticmethod
    def from_interactions(train: Interactions, short_head_share: float = 0.2) -> "ItemPopularity":
        """The statistics of a training split (repeated (user, item) events count once in
        ``u_i``, every time in ``count``)."""
        pairs = torch.unique(train.user * train.n_items + train.item)  # [P] distinct (user, item)
        users = torch.bincount(pairs % train.n_items, minlength=train.n_items)  # [I]
        n_users = int((train.user_counts() > 0).sum())
        return ItemPopularity.from_counts(train.item_counts(), users, n_users, short_head_share)


def short_head(count: Tensor, share: float) -> Tensor:
    """``[I]`` True for the short head: the most popular items (equal counts by increasing
    id) as long as the items before each hold less than ``share`` of all interactions."""
    count = count.double()
    order = torch.sort(-count, stable=True).indices  # [I] most popular first, ties by id
    before = torch.cumsum(count[order], 0) - count[order]  # [I] interactions of the items ahead
    head = torch.zeros(count.numel(), dtype=torch.bool)
    head[order] = before < share * float(count.sum())  # share 0: no head, every item in the tail
    return head


def check_share(share: float) -> None:
    """Refuse a short-head share outside [0, 1], naming the config key and the value."""
    check_number("eval.short_head_share", share, 0, 1, note=" (0.2 in Abdollahpouri et al.)")


def list_metrics(top: Tensor, shown: Tensor, popularity: ItemPopularity, ks: list[int]) -> dict[str, Tensor]:
    """Per-user ARP, APLT and novelty of top-K lists.

    Args:
        top: ``[B, Kmax]`` item ids, best first.
        shown: ``[B, Kmax]`` False where the list has no item (fewer allowed items than K).
        popularity: the training statistics (on the device of ``top``).
        ks: cut-offs, each at most ``Kmax``.

    Returns:
        name -> ``[B]`` values, names ``arp@K``, ``aplt@K`` and ``novelty@K``.
    """
    weight = shown.float()  # [B, Kmax]
    count = popularity.count[top] * weight  # [B, Kmax]
    tail = popularity.long_tail[top].float() * weight  # [B, Kmax]
    info = popularity.self_information[top] * weight  # [B, Kmax]
    out: dict[str, Tensor] = {}
    for k in ks:
        size = weight[:, :k].sum(1).clamp(min=1.0)  # [B]
        out[f"arp@{k}"] = count[:, :k].sum(1) / size
        out[f"aplt@{k}"] = tail[:, :k].sum(1) / size
        out[f"novelty@{k}"] = info[:, :k].sum(1) / size
    return out


def gini(exposure: Tensor) -> float:
    """Gini index of ``[I]`` exposure counts (zeros included); NaN when all are zero."""
    c = exposure.double().sort().values  # [I] ascending
    n, total = c.numel(), float(c.sum())
    if total == 0:
        return float("nan")
    j = torch.arange(1, n + 1, dtype=torch.float64)  # [I]
    return float(((2 * j - n - 1) * c).sum() / (n * total))
