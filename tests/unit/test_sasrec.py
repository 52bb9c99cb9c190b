"""SASRec: the evaluation query matches training's last position; tied and separate output tables."""

from __future__ import annotations

import pytest
import torch

from recsys.models.sasrec import SASRec

N_ITEMS, MAX_LEN = 30, 8


def sequences(batch: int = 5) -> torch.Tensor:
    torch.manual_seed(0)
    seq = torch.randint(0, N_ITEMS, (batch, MAX_LEN))  # [B, L]
    seq[0, :3] = N_ITEMS  # left padding of a short history
    return seq


@pytest.mark.parametrize("tied", [True, False])
def test_last_only_query_equals_the_full_pass_last_position(tied):
    model = SASRec(N_ITEMS, embedding_dim=16, num_blocks=2, num_heads=2, max_len=MAX_LEN, dropout=0.0, tied_output=tied).eval()
    seq = sequences()
    full = model.hidden(seq)[:, -1]  # [B, D]
    last = model.user_queries({"input": seq})  # [B, D]
    torch.testing.assert_close(last, full, rtol=1e-5, atol=1e-5)


def test_tied_output_scores_with_the_input_table():
    model = SASRec(N_ITEMS, embedding_dim=16, max_len=MAX_LEN, tied_output=True)
    assert model.out_emb is None
    assert model.item_embeddings().data_ptr() == model.item_emb.weight.data_ptr()
    assert model.item_embeddings().shape == (N_ITEMS, 16)


def test_separate_output_table_gets_the_scoring_gradient():
    model = SASRec(N_ITEMS, embedding_dim=16, max_len=MAX_LEN, dropout=0.0, tied_output=False)
    items = model.item_embeddings()  # [I, D]
    assert items.shape == (N_ITEMS, 16) and items.data_ptr() != model.item_emb.weight.data_ptr()
    seq = sequences()
    query = model.hidden(seq)[:, -1]  # [B, D]
    (query @ items.T).logsumexp(1).sum().backward()
    assert model.out_emb.weight.grad.abs().sum() > 0
    # the input table learns only through the sequence: rows never in the input get no gradient
    unseen = sorted(set(range(N_ITEMS)) - set(seq.flatten().tolist()))
    assert unseen, "the test needs items absent from the input"
    assert model.item_emb.weight.grad[unseen].abs().sum() == 0


@pytest.mark.parametrize("heads", [1, 2])
def test_outputs_up_to_t_ignore_the_items_after_t(heads):
    """Causality: the output at position t (the query for item t + 1) sees only items
    0..t, so replacing every item after t leaves outputs 0..t unchanged, for each t."""
    model = SASRec(N_ITEMS, embedding_dim=16, num_blocks=2, num_heads=heads, max_len=MAX_LEN, dropout=0.0).eval()
    seq = sequences()  # [B, L], row 0 left-padded
    before = model.hidden(seq)  # [B, L, D]
    generator = torch.Generator().manual_seed(1)
    for t in range(MAX_LEN - 1):
        changed = seq.clone()
        future = torch.randint(0, N_ITEMS, (seq.shape[0], MAX_LEN - 1 - t), generator=generator)  # [B, L-1-t]
        changed[:, t + 1 :] = torch.where(future == seq[:, t + 1 :], (future + 1) % N_ITEMS, future)  # all differ
        after = model.hidden(changed)  # [B, L, D]
        torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(after[:, t + 1 :], before[:, t + 1 :])  # the changes are seen later on
