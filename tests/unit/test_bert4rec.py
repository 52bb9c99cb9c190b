"""BERT4Rec: the Cloze view's masking (rates, never padding, the inference [MASK]), the
bidirectional encoder, padding invariance and the folded output bias."""

from __future__ import annotations

import pytest
import torch

from recsys.data.interactions import Interactions, SplitData, UserItems
from recsys.data.views import MaskedItemView
from recsys.errors import ConfigError
from recsys.models.bert4rec import BERT4Rec

N_ITEMS, MAX_LEN = 30, 8
PAD, MASK = N_ITEMS, N_ITEMS + 1
# user -> training items in time order; user 3 has no training items (never a row)
TRAIN = {0: [1, 2, 3], 1: [4, 5, 6, 7, 8, 9, 10, 11, 12, 13], 2: [20], 4: [7, 7, 8, 9]}
VALID = {0: [5], 1: [14], 2: [21], 4: [10]}
TEST = {0: [6], 1: [15], 2: [22], 4: [11]}
N_USERS = 5


def user_items(table: dict[int, list[int]]) -> UserItems:
    users = torch.tensor([u for u, items in table.items() for _ in items])
    items = torch.tensor([i for its in table.values() for i in its])
    return UserItems.from_pairs(users, items, N_USERS)


def make_split(train: dict[int, list[int]] = TRAIN) -> SplitData:
    users = torch.tensor([u for u, s in train.items() for _ in s])
    items = torch.tensor([i for s in train.values() for i in s])
    time = torch.tensor([t for s in train.values() for t in range(len(s))])
    events = Interactions(users, items, time, n_users=N_USERS, n_items=N_ITEMS)
    return SplitData(train=events, valid=user_items(VALID), test=user_items(TEST))


def view(mask_prob: float = 0.2, seed: int = 0, train: dict[int, list[int]] = TRAIN) -> MaskedItemView:
    return MaskedItemView(make_split(train), MAX_LEN, pad=PAD, mask=MASK, mask_prob=mask_prob, seed=seed)


def test_rows_are_the_last_items_right_aligned_and_users_without_items_have_none():
    v = view()
    assert v.users.tolist() == [0, 1, 2, 4]
    assert v.sequences[0].tolist() == [PAD] * 5 + [1, 2, 3]
    assert v.sequences[1].tolist() == [6, 7, 8, 9, 10, 11, 12, 13]  # the last max_len of 10
    assert v.sequences[2].tolist() == [PAD] * 7 + [20]


def test_masking_replaces_items_by_mask_and_makes_them_the_targets():
    v = view(mask_prob=0.5)
    batch = v.batch(torch.arange(len(v)))
    masked = batch["input"] == MASK  # [B, L]
    seq = batch["sequence"]
    assert torch.equal(batch["input"][~masked], seq[~masked])  # unmasked positions keep their item
    assert torch.equal(batch["target"][masked], seq[masked])  # a masked position predicts its item
    assert (batch["target"][~masked] == PAD).all()  # nothing else is a target
    assert not (masked & (seq == PAD)).any()  # padding is never masked
    assert masked.any(1).all()  # every row trains on at least one position


def test_mask_rate_matches_mask_prob_over_real_items():
    long_histories = {u: list(range(u, u + 8)) for u in range(N_USERS)}
    v = MaskedItemView(make_split(long_histories), MAX_LEN, pad=PAD, mask=MASK, mask_prob=0.2, seed=3)
    draws = torch.stack([v.batch(torch.arange(len(v)))["input"] == MASK for _ in range(2000)])  # [T, B, L]
    rate = draws.float().mean().item()
    # 80,000 Bernoulli(0.2) draws (sd 0.0014), plus the forced last mask of rows with none (0.8^8 = 1.7%)
    expected = 0.2 + 0.8**8 / 8
    assert abs(rate - expected) < 0.006, rate


def test_a_row_without_a_drawn_mask_masks_its_last_item():
    v = view(mask_prob=1e-9)
    batch = v.batch(torch.arange(len(v)))
    masked = batch["input"] == MASK
    assert masked[:, -1].all() and masked.sum() == len(v)


def test_same_seed_same_masks_and_state_dict_resumes_the_draws():
    a, b = view(seed=7), view(seed=7)
    index = torch.arange(len(a))
    assert torch.equal(a.batch(index)["input"], b.batch(index)["input"])
    state = a.state_dict()
    first = a.batch(index)["input"]
    a.load_state_dict(state)
    assert torch.equal(a.batch(index)["input"], first)
    assert not torch.equal(view(seed=8).batch(index)["input"], view(seed=7).batch(index)["input"])


def test_inference_input_is_the_history_then_mask():
    v = view()
    users = torch.tensor([0, 1, 3])
    val = v.user_inputs(users, "val")["input"]
    assert val[0].tolist() == [PAD] * 4 + [1, 2, 3, MASK]
    assert val[1].tolist() == [7, 8, 9, 10, 11, 12, 13, MASK]  # the last max_len - 1 items
    assert val[2].tolist() == [PAD] * 7 + [MASK]  # no training history: [MASK] alone
    test = v.user_inputs(users, "test")["input"]
    assert test[0].tolist() == [PAD] * 3 + [1, 2, 3, 5, MASK]  # the validation item joins the history
    assert test[1].tolist() == [8, 9, 10, 11, 12, 13, 14, MASK]


@pytest.mark.parametrize("prob", [0, -0.1, 1.5, "0.2", True])
def test_bad_mask_prob_fails_with_one_line(prob):
    with pytest.raises(ConfigError, match=r"model.mask_prob must be a number in \(0, 1\]") as err:
        view(mask_prob=prob)
    assert "\n" not in str(err.value)


def model(**kwargs) -> BERT4Rec:
    torch.manual_seed(0)
    args = dict(embedding_dim=16, num_blocks=2, num_heads=2, ff_dim=32, max_len=MAX_LEN, dropout=0.0)
    return BERT4Rec(N_ITEMS, **{**args, **kwargs}).eval()


def sequences() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    seq = torch.randint(0, N_ITEMS, (4, MAX_LEN), generator=generator)  # [B, L]
    seq[0, :3] = PAD
    seq[:, -1] = MASK
    return seq


def test_the_encoder_is_bidirectional():
    """Unlike SASRec, the output at an early position changes when a later item changes."""
    m, seq = model(), sequences()
    changed = seq.clone()
    changed[:, -2] = (seq[:, -2] + 1) % N_ITEMS
    with torch.no_grad():
        before, after = m.hidden(seq), m.hidden(changed)  # [B, L, D]
    assert not torch.allclose(before[:, 3], after[:, 3])


def test_padding_is_ignored():
    """Left padding does not change the outputs at real positions (padding keys are
    masked and positions are counted from the right)."""
    m, seq = model(), sequences()
    with torch.no_grad():
        full = m.hidden(seq)[0, 3:]  # [L-3, D] the real positions of row 0
        cut = m.hidden(seq[:1, 3:])[0]  # the same items without padding
    torch.testing.assert_close(full, cut, rtol=1e-5, atol=1e-5)


def test_scores_are_head_dot_items_plus_bias():
    m, seq = model(), sequences()
    with torch.no_grad():
        m.out_bias.copy_(torch.linspace(-1, 1, N_ITEMS))
        scores = m.score(m.user_queries({"input": seq}), m.item_embeddings())  # [B, I]
        h = m.head(m.hidden(seq)[:, -1])  # [B, D]
        direct = h @ m.item_emb.weight[:N_ITEMS].T + m.out_bias  # [B, I]
    torch.testing.assert_close(scores, direct, rtol=1e-5, atol=1e-5)
    assert model(output_bias=False).item_embeddings().shape == (N_ITEMS, 16)


def test_encode_rows_are_the_masked_positions():
    v = view(mask_prob=0.5)
    m = model(seq_buckets=1)
    batch = v.batch(torch.arange(len(v)))
    enc = m.encode(batch)
    masked = batch["target"] != PAD
    assert enc.target.tolist() == batch["sequence"][masked].tolist()
    assert enc.user.tolist() == batch["user"].unsqueeze(1).expand_as(masked)[masked].tolist()
    assert enc.query.shape == (int(masked.sum()), 17)  # D + the bias column


def test_padding_and_mask_rows_of_the_item_table_are_never_scored():
    m = model()
    assert m.item_embeddings().shape[0] == N_ITEMS
    assert m.item_emb.weight[PAD].abs().sum() == 0


def test_length_buckets_give_the_same_queries_as_the_whole_batch():
    distinct = {**TRAIN, 4: [7, 3, 8, 9]}  # (user, target) identifies a row
    v = view(mask_prob=0.5, train=distinct)
    batch = v.batch(torch.arange(len(v)))
    whole, bucketed = model(seq_buckets=1), model(seq_buckets=3)
    with torch.no_grad():
        a, b = whole.encode(batch), bucketed.encode(batch)
        key_a = a.user * N_ITEMS + a.target
        key_b = b.user * N_ITEMS + b.target
        assert sorted(key_a.tolist()) == sorted(key_b.tolist())  # the same rows, in bucket order
        ia, ib = key_a.argsort(stable=True), key_b.argsort(stable=True)
        assert torch.equal(key_a[ia], key_b[ib])
        torch.testing.assert_close(a.query[ia], b.query[ib], rtol=1e-5, atol=1e-5)
        inputs = v.user_inputs(torch.tensor([0, 1, 2, 4]), "test")
        torch.testing.assert_close(whole.user_queries(inputs), bucketed.user_queries(inputs), rtol=1e-5, atol=1e-5)


def test_represent_asks_for_the_last_item_as_inference_asks_for_the_next():
    """The representation of a training row is the query inference would make from the
    row's items before its last one: the hidden state at a [MASK] in the last position."""
    m = model()
    seq = sequences()
    seq[:, -1] = torch.arange(4)  # a real last item in every row
    rep = m.represent({"sequence": seq})
    assert rep.target.tolist() == [0, 1, 2, 3]
    as_inference = seq.clone()
    as_inference[:, -1] = MASK
    with torch.no_grad():
        torch.testing.assert_close(rep.vector, m.hidden(as_inference)[:, -1], rtol=1e-5, atol=1e-5)
    assert m.represents() and m.sequence_key == "sequence" and m.mask_id == MASK and m.pad_id == PAD
