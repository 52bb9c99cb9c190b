"""SASRec: the evaluation query matches training's last position; tied and separate output
tables; gSASRec's options (no input scaling, masked padding keys)."""

from __future__ import annotations

import pytest
import torch

from recsys.errors import ConfigError
from recsys.models.causal_attention import SASRecBlock, attention_mask
from recsys.models.sasrec import SASRec

N_ITEMS, MAX_LEN = 30, 8


def sequences(batch: int = 5) -> torch.Tensor:
    torch.manual_seed(0)
    seq = torch.randint(0, N_ITEMS, (batch, MAX_LEN))  # [B, L]
    seq[0, :3] = N_ITEMS  # left padding of a short history
    return seq


@pytest.mark.parametrize("mask_keys", [False, True])
@pytest.mark.parametrize("tied", [True, False])
def test_last_only_query_equals_the_full_pass_last_position(tied, mask_keys):
    model = SASRec(
        N_ITEMS, embedding_dim=16, num_blocks=2, num_heads=2, max_len=MAX_LEN, dropout=0.0, tied_output=tied,
        mask_padding_keys=mask_keys,
    ).eval()
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


@pytest.mark.parametrize("mask_keys", [False, True])
@pytest.mark.parametrize("heads", [1, 2])
def test_outputs_up_to_t_ignore_the_items_after_t(heads, mask_keys):
    """Causality: the output at position t (the query for item t + 1) sees only items
    0..t, so replacing every item after t leaves outputs 0..t unchanged, for each t."""
    model = SASRec(
        N_ITEMS, embedding_dim=16, num_blocks=2, num_heads=heads, max_len=MAX_LEN, dropout=0.0, mask_padding_keys=mask_keys
    ).eval()
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


def test_input_scale_multiplies_the_input_item_embeddings_by_sqrt_d():
    """The default (the paper's code) scales by sqrt(D); ``input_scale=False`` (gSASRec) is
    the same model with item embeddings sqrt(D) times smaller."""
    torch.manual_seed(0)
    scaled = SASRec(N_ITEMS, embedding_dim=16, max_len=MAX_LEN, dropout=0.0).eval()
    plain = SASRec(N_ITEMS, embedding_dim=16, max_len=MAX_LEN, dropout=0.0, input_scale=False).eval()
    plain.load_state_dict(scaled.state_dict())
    with torch.no_grad():
        plain.item_emb.weight.mul_(4.0)  # sqrt(16)
    seq = sequences()
    torch.testing.assert_close(plain.hidden(seq), scaled.hidden(seq), rtol=0, atol=0)


def test_masked_padding_keys_do_not_reach_the_valid_positions():
    """With ``mask_padding_keys`` what sits at padding positions does not change a valid
    position's output; without it, padding keys are attended."""
    torch.manual_seed(0)
    x = torch.randn(3, MAX_LEN, 16)  # [B, L, D]
    keep = torch.ones(3, MAX_LEN, 1)
    keep[0, :3] = 0
    keep[1, :] = 0  # a row of padding only
    noise = torch.randn_like(x) * (1 - keep)  # [B, L, D], at padding only
    for mask_keys in (True, False):
        block = SASRecBlock(16, 2, 0.0, mask_padding_keys=mask_keys).eval()
        a, b = block(x * keep, keep), block(x * keep + noise, keep)  # [B, L, D]
        assert torch.isfinite(a).all() and torch.isfinite(b).all()
        valid = keep.squeeze(-1).bool()
        assert torch.allclose(a[valid], b[valid], atol=1e-6) == mask_keys
        assert a[~valid].abs().sum() == 0  # padding outputs are zeroed either way


def test_masks_combine_causality_and_key_padding_without_empty_rows():
    keep = torch.tensor([[False, False, True, True], [True, True, True, True]])  # [B, Lk]
    mask, causal = attention_mask(4, 4, keep, torch.device("cpu"))
    assert not causal and mask.shape == (2, 1, 4, 4)
    tril = torch.ones(4, 4, dtype=torch.bool).tril()
    assert torch.equal(mask[1, 0], tril)  # no padding: causal only
    assert torch.equal(mask[0, 0], tril & (keep[0] | torch.eye(4, dtype=torch.bool)))
    assert mask.any(-1).all()  # every query has a key: the leading padding queries see themselves
    last, _ = attention_mask(1, 4, keep, torch.device("cpu"))  # the last_only query
    assert torch.equal(last[:, 0, 0], keep)
    assert attention_mask(4, 4, None, torch.device("cpu")) == (None, True)  # the default path
    unmasked, _ = attention_mask(1, 4, None, torch.device("cpu"))
    assert unmasked.all()


def test_fully_padded_sequences_give_finite_outputs_and_gradients():
    model = SASRec(N_ITEMS, embedding_dim=16, num_heads=2, max_len=MAX_LEN, dropout=0.3, mask_padding_keys=True)
    seq = sequences()
    seq[1] = N_ITEMS  # nothing at all
    h = model.hidden(seq)  # [B, L, D]
    assert torch.isfinite(h).all()
    h.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(model.eval().user_queries({"input": seq})).all()


def varied_lengths(batch: int = 12, max_len: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded inputs of lengths 1..max_len and their next-item targets."""
    generator = torch.Generator().manual_seed(3)
    window = torch.randint(0, N_ITEMS, (batch, max_len + 1), generator=generator)  # [B, L+1]
    lengths = torch.randint(1, max_len + 1, (batch,), generator=generator)  # [B] inputs of 1..L items
    lengths[0], lengths[1] = 1, max_len
    padding = torch.arange(max_len + 1) < (max_len - lengths).unsqueeze(1)  # [B, L+1]
    window[padding] = N_ITEMS
    inputs, targets = window[:, :-1], window[:, 1:].clone()
    targets[inputs == N_ITEMS] = N_ITEMS
    return inputs, targets


@pytest.mark.parametrize("buckets", [2, 3, 5, 12, 40])
def test_length_buckets_give_the_unbucketed_outputs(buckets):
    """With masked padding keys, cutting each length group's padding changes nothing: the
    training rows (as a set: row order follows the buckets) and the evaluation queries
    equal those of the whole batch at ``max_len``."""
    torch.manual_seed(0)
    kwargs = dict(embedding_dim=16, num_blocks=2, num_heads=2, max_len=20, dropout=0.0, user_context=[])
    whole = SASRec(N_ITEMS, seq_buckets=1, **kwargs).eval()
    cut = SASRec(N_ITEMS, seq_buckets=buckets, **kwargs).eval()
    cut.load_state_dict(whole.state_dict())
    inputs, targets = varied_lengths()
    users = torch.arange(inputs.shape[0])
    batch = {"input": inputs, "target": targets, "user": users}
    a, b = whole.encode(batch), cut.encode(batch)
    key_a = torch.stack([a.user, a.target], 1).tolist()
    order_a = sorted(range(len(key_a)), key=lambda i: (key_a[i], a.query[i, 0].item()))
    key_b = torch.stack([b.user, b.target], 1).tolist()
    order_b = sorted(range(len(key_b)), key=lambda i: (key_b[i], b.query[i, 0].item()))
    assert len(order_a) == len(order_b) == int((targets != N_ITEMS).sum())
    assert [key_a[i] for i in order_a] == [key_b[i] for i in order_b]
    torch.testing.assert_close(b.query[order_b], a.query[order_a], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cut.user_queries(batch), whole.user_queries(batch), rtol=1e-5, atol=1e-5)


def test_buckets_are_off_when_padding_keys_are_attended():
    """Cutting padding would change the outputs when padding keys are attended."""
    assert SASRec(N_ITEMS, max_len=MAX_LEN, mask_padding_keys=False, seq_buckets=8).seq_buckets == 1
    assert SASRec(N_ITEMS, max_len=MAX_LEN, seq_buckets=8).seq_buckets == 8


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_seq_buckets_must_be_a_positive_integer(bad):
    from recsys.errors import ConfigError

    with pytest.raises(ConfigError, match="model.seq_buckets must be an integer >= 1"):
        SASRec(N_ITEMS, max_len=MAX_LEN, seq_buckets=bad)


def test_a_short_sequence_is_the_end_of_a_left_padded_one():
    """Positions are counted from the right, so cutting leading padding off the input
    keeps every real position's output."""
    model = SASRec(N_ITEMS, embedding_dim=16, max_len=MAX_LEN, dropout=0.0).eval()
    seq = sequences()
    seq[:, :3] = N_ITEMS
    torch.testing.assert_close(model.hidden(seq[:, 3:]), model.hidden(seq)[:, 3:], rtol=1e-5, atol=1e-5)


def port_block_by_hand(block: SASRecBlock, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The SASRec/gSASRec reference block, one head, written out: ``q = LN1(x)``, attention
    of ``q`` over ``x`` (causal, padding keys masked), no ``W_O``, ``h = LN2(attn + q)``,
    ``out = (h + W2 relu(W1 h)) * keep``."""
    d = x.shape[-1]
    q = block.attn_norm(x)  # [B, L, D]
    w_q = block.attn.q_proj
    w_k, w_v = block.attn.kv_proj.weight.split(d), block.attn.kv_proj.bias.split(d)
    queries, keys, values = w_q(q), x @ w_k[0].T + w_v[0], x @ w_k[1].T + w_v[1]  # [B, L, D] each
    logits = queries @ keys.transpose(1, 2) / d**0.5  # [B, L, L]
    allowed = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).tril() & (keep.squeeze(-1)[:, None, :] > 0)
    allowed |= torch.eye(x.shape[1], dtype=torch.bool)  # a padding query keeps its own key
    attn = logits.masked_fill(~allowed, float("-inf")).softmax(-1) @ values  # [B, L, D]
    h = block.ffn_norm(attn + q)
    first, second = block.ffn[0], block.ffn[3]
    return (h + second(first(h).relu())) * keep


def test_the_port_block_is_the_reference_formula():
    """``attention_out_proj=False, attention_dropout=False`` is the reference code's block."""
    torch.manual_seed(0)
    block = SASRecBlock(16, 1, 0.0, mask_padding_keys=True, attention_dropout=False, out_proj=False, norm_eps=1e-5).eval()
    x = torch.randn(3, MAX_LEN, 16)  # [B, L, D]
    keep = torch.ones(3, MAX_LEN, 1)
    keep[0, :3] = 0  # left padding
    x = x * keep
    torch.testing.assert_close(block(x, keep), port_block_by_hand(block, x, keep), rtol=1e-5, atol=1e-5)
    with_projection = SASRecBlock(16, 1, 0.0, mask_padding_keys=True, attention_dropout=False).eval()
    with_projection.load_state_dict(block.state_dict(), strict=False)  # the same weights plus a W_O
    assert not torch.allclose(with_projection(x, keep), block(x, keep))


def test_port_options_reach_every_block():
    model = SASRec(N_ITEMS, embedding_dim=16, max_len=MAX_LEN, dropout=0.5, attention_dropout=False,
                   attention_out_proj=False, norm_eps=1e-5)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 5 and all(m.eps == 1e-5 for m in norms)  # two per block and the output norm
    assert not any("out_proj" in name for name, _ in model.named_parameters())
    dropouts = lambda m: sum(isinstance(x, torch.nn.Dropout) for x in m.modules())  # noqa: E731
    assert [dropouts(b) for b in model.blocks] == [2, 2]  # the feed-forward's two; attention weights in SDPA
    default = SASRec(N_ITEMS, embedding_dim=16, max_len=MAX_LEN, dropout=0.5)
    assert [dropouts(b) for b in default.blocks] == [3, 3]
    assert all(m.eps == 1e-8 for m in default.modules() if isinstance(m, torch.nn.LayerNorm))


def test_init_pytorch_keeps_the_module_defaults():
    """``init=pytorch``: N(0, 1) embeddings (gSASRec's port), the padding row still zero;
    the default Xavier-normal ones of a [201, 64] table have std sqrt(2 / 265) ~ 0.087."""
    torch.manual_seed(0)
    port = SASRec(200, embedding_dim=64, max_len=MAX_LEN, tied_output=False, init="pytorch")
    torch.manual_seed(0)
    xavier = SASRec(200, embedding_dim=64, max_len=MAX_LEN, tied_output=False)
    assert port.item_emb.weight[:200].std().item() == pytest.approx(1.0, abs=0.05)
    assert port.out_emb.weight.std().item() == pytest.approx(1.0, abs=0.05)
    assert xavier.item_emb.weight[:200].std().item() == pytest.approx((2 / 265) ** 0.5, rel=0.1)
    assert port.item_emb.weight[200].abs().sum() == 0 and xavier.item_emb.weight[200].abs().sum() == 0
    bound = 1 / 64**0.5  # Kaiming-uniform(a=sqrt(5)) on fan_in 64
    assert port.blocks[0].attn.q_proj.weight.abs().max() <= bound


@pytest.mark.parametrize(("option", "bad"), [("init", "normal"), ("norm_eps", 0.0), ("norm_eps", True), ("norm_eps", "1e-5")])
def test_bad_port_options_are_config_errors(option, bad):
    with pytest.raises(ConfigError, match=f"model.{option}"):
        SASRec(N_ITEMS, max_len=MAX_LEN, **{option: bad})
