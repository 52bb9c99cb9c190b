"""The popularity baseline: one score per item, its training count, the same for every user."""

from __future__ import annotations

import torch

from recsys.data.interactions import Interactions, SplitData, UserItems
from recsys.models.pop import Pop, popularity_scores


def test_scores_order_items_by_count_then_by_id():
    counts = torch.tensor([3, 5, 3, 0, 5])
    # strict order 1, 4, 0, 2, 3 (equal counts: lower id first); the first gets I = 5
    assert popularity_scores(counts, break_ties=True).tolist() == [3.0, 5.0, 2.0, 1.0, 4.0]
    assert popularity_scores(counts, break_ties=False).tolist() == [3.0, 5.0, 3.0, 0.0, 5.0]


def tiny_split() -> SplitData:
    """3 users, 5 items; training counts per item [1, 3, 0, 2, 1]; validation and test
    items are not counted."""
    user = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    item = torch.tensor([1, 3, 0, 1, 3, 1, 4])
    train = Interactions(user=user, item=item, time=torch.arange(7), n_users=3, n_items=5)
    held_out = UserItems.from_pairs(torch.tensor([0, 1, 2]), torch.tensor([2, 2, 2]), 3)
    return SplitData(train=train, valid=held_out, test=held_out)


def test_every_user_gets_the_training_popularity():
    model = Pop(n_items=5)
    model.setup(tiny_split())
    query = model.user_queries({"user": torch.tensor([2, 0])})  # [2, 1]
    scores = model.score(query, model.item_embeddings())  # [2, 5]
    expected = [3.0, 5.0, 1.0, 4.0, 2.0]  # order 1, 3, 0, 4, 2
    assert scores.tolist() == [expected, expected]
    per_row = model.score(query, model.item_embeddings()[torch.tensor([[1, 2], [4, 0]])])  # [2, 2]
    assert per_row.tolist() == [[5.0, 1.0], [2.0, 3.0]]


def test_nothing_to_train_and_the_scores_are_saved():
    model = Pop(n_items=5)
    model.setup(tiny_split())
    assert Pop.trainable is False and not list(model.parameters())
    restored = Pop(n_items=5)
    restored.load_state_dict(model.state_dict())
    assert torch.equal(restored.item_embeddings(), model.item_embeddings())


def test_scores_stay_exact_under_bf16_autocast():
    """bf16 holds 8 significant bits: a matmul would merge the counts 257 and 258."""
    counts = torch.tensor([257, 258, 1000, 1001])
    model = Pop(n_items=4, break_ties=False)
    model.popularity.copy_(popularity_scores(counts, break_ties=False))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = model.score(model.user_queries({"user": torch.tensor([0])}), model.item_embeddings())
    assert scores.dtype == torch.float32 and scores.tolist() == [[257.0, 258.0, 1000.0, 1001.0]]
