"""The contrastive aux term (``aux=[contrastive]``): its formula against a direct
re-computation, its positives on SASRec and the two-tower model, the CL4SRec sequence
augmentations, and its checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from recsys.auxiliary.augment import augment, crop, mask, reorder
from recsys.auxiliary.contrastive import Contrastive, supcon
from recsys.data.datasets.synthetic import Synthetic
from recsys.data.interactions import RawData
from recsys.data.splits import LeaveOneOut
from recsys.errors import ConfigError
from recsys.losses.ce import CE
from recsys.models.base import RecModel
from recsys.models.lightgcn import LightGCN
from recsys.models.mf import MF
from recsys.models.sasrec import SASRec
from recsys.models.two_tower import TwoTower
from recsys.module import RecModule
from recsys.samplers.full import FullSampler


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message, message
    return message


def ref_supcon(z: torch.Tensor, positive: torch.Tensor, temperature: float) -> tuple[float, int]:
    """The formula with loops over rows, in float64: (value, number of anchors)."""
    rows = z.double().tolist()
    n = len(rows)

    def s(i, j):
        return sum(a * b for a, b in zip(rows[i], rows[j])) / temperature

    losses = []
    for i in range(n):
        pos = [p for p in range(n) if p != i and bool(positive[i, p])]
        if not pos:
            continue
        log_z = math.log(sum(math.exp(s(i, a)) for a in range(n) if a != i))
        losses.append(-sum(s(i, p) - log_z for p in pos) / len(pos))
    return (sum(losses) / len(losses) if losses else 0.0), len(losses)


# ---- the formula ------------------------------------------------------------------------------
def test_hand_checked_three_rows():
    """z = e1, e1, e2; rows 0 and 1 share a target, row 2 has none to share. With
    temperature 1, row 0's positive has s = 1 against a negative with s = 0, so
    l_0 = l_1 = -log(e / (e + 1)) = log(1 + 1/e); row 2 is excluded. Temperature 1/2
    doubles the similarities: log(1 + e^-2)."""
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([5, 5, 7])
    positive = target.unsqueeze(1) == target.unsqueeze(0)
    value, stats = supcon(z, positive, 1.0)
    assert float(value) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    assert float(stats["anchor_rows"]) == 2 and float(stats["excluded_rows"]) == 1
    assert float(stats["positive_cosine"]) == pytest.approx(1.0)
    assert float(supcon(z, positive, 0.5)[0]) == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)


def test_hand_checked_four_rows_with_two_positives():
    """z = e1, e1, e2, -e1 with targets a, a, a, b (temperature 1). Rows 0 and 1: positives
    at s = 1 and s = 0, the denominator e + 1 + 1/e: l = log(e + 1 + 1/e) - 1/2. Row 2:
    both positives at s = 0, all three others at 0: l = log 3. Row 3 is excluded."""
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    target = torch.tensor([0, 0, 0, 1])
    value, stats = supcon(z, target.unsqueeze(1) == target.unsqueeze(0), 1.0)
    expected = (2 * (math.log(math.e + 1 + 1 / math.e) - 0.5) + math.log(3)) / 3
    assert float(value) == pytest.approx(expected, rel=1e-6)
    assert float(stats["anchor_rows"]) == 3 and float(stats["excluded_rows"]) == 1
    assert float(stats["positive_cosine"]) == pytest.approx((1 + 0 + 1 + 0 + 0 + 0) / 6)


@pytest.mark.parametrize("temperature", [0.05, 0.07, 0.5, 2.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_supcon_matches_a_loop_over_rows(temperature, seed):
    gen = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(9, 5, generator=gen, dtype=torch.float64), dim=1)
    target = torch.randint(4, (9,), generator=gen)
    positive = target.unsqueeze(1) == target.unsqueeze(0)
    value, stats = supcon(z, positive, temperature)
    expected, anchors = ref_supcon(z, positive, temperature)
    assert float(value) == pytest.approx(expected, rel=1e-9)
    assert float(stats["anchor_rows"]) == anchors and float(stats["excluded_rows"]) == 9 - anchors


def test_no_row_with_a_positive_gives_zero_and_a_finite_gradient():
    for n in (1, 4):
        vectors = torch.randn(n, 3, requires_grad=True)
        value, stats = supcon(F.normalize(vectors, dim=1), torch.eye(n, dtype=torch.bool), 0.07)
        assert float(value) == 0.0 and float(stats["excluded_rows"]) == n and float(stats["anchor_rows"]) == 0
        value.backward()
        assert torch.isfinite(vectors.grad).all() and float(vectors.grad.abs().sum()) == 0.0


# ---- models -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def split():
    inter = Synthetic(n_users=50, n_items=60, n_clusters=3, series_len=4, seed=1).generate()
    return LeaveOneOut()(RawData(inter))


def sasrec_batch():
    """Four users; rows 0 and 2 predict item 9 next, row 3's history is a single item."""
    pad = 12
    return {
        "user": torch.arange(4),
        "input": torch.tensor([[pad, 1, 2, 3], [4, 5, 6, 7], [pad, pad, 8, 1], [pad, pad, pad, 2]]),
        "target": torch.tensor([[pad, 2, 3, 9], [5, 6, 7, 10], [pad, pad, 1, 9], [pad, pad, pad, 11]]),
    }


def term_on(model: RecModel, temperature: float = 0.5, **kw) -> Contrastive:
    torch.manual_seed(0)
    term = Contrastive(temperature=temperature, proj_dim=6, **kw)
    term.check(model)
    return term


def test_same_target_on_sasrec_is_the_formula_on_its_last_hidden_states():
    torch.manual_seed(0)
    model = SASRec(12, 8, num_heads=2, max_len=4).eval()
    term, batch = term_on(model), sasrec_batch()
    value = term(model, batch=batch)
    vector = model.hidden(batch["input"])[:, -1]  # [B, D] the query of each row's last target
    z = F.normalize(term.head(vector), dim=1)
    expected, anchors = ref_supcon(z, torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]]).bool(), 0.5)
    assert anchors == 2 and float(value) == pytest.approx(expected, rel=1e-5)
    assert {k: float(v) for k, v in term.last_stats.items() if k != "positive_cosine"} == {
        "anchor_rows": 2.0, "excluded_rows": 2.0}
    rep = model.represent(batch)
    assert rep.target.tolist() == [9, 10, 9, 11] and model.sequence_key == "input" and model.pad_id == 12


def two_tower(split) -> TwoTower:
    inter = split.train
    model = TwoTower(split.n_users, split.n_items, inter.user_features, inter.item_features, inter.feature_cardinality,
                     embedding_dim=16, max_len=4)
    model.setup(split)
    return model


def test_same_target_on_two_tower_is_the_formula_on_the_user_tower(split):
    torch.manual_seed(0)
    model = two_tower(split).eval()
    batch = model.make_view(split).batch(torch.arange(40))
    batch["item"][:5] = 3  # five rows share their target
    term = term_on(model)
    value = term(model, batch=batch)
    z = F.normalize(term.head(model.user_vector(batch["user"], batch["input"])), dim=1)
    positive = batch["item"].unsqueeze(1) == batch["item"].unsqueeze(0)
    expected, anchors = ref_supcon(z, positive, 0.5)
    assert anchors >= 5 and float(value) == pytest.approx(expected, rel=1e-5)
    assert float(term.last_stats["excluded_rows"]) == 40 - anchors
    assert model.sequence_key == "input" and model.pad_id == split.n_items and model.dim == 16


@pytest.mark.parametrize("positives", ["dropout", "augment"])
def test_two_views_are_each_others_only_positive(positives):
    """2B anchors; each row's positive is the same row of the other view."""
    torch.manual_seed(0)
    model = SASRec(12, 8, num_heads=2, max_len=4, dropout=0.3).train()
    term, batch = term_on(model, positives=positives), sasrec_batch()
    state = torch.get_rng_state()
    first, second = term.views(model, batch)
    torch.set_rng_state(state)
    value = term(model, batch=batch)
    z = F.normalize(term.head(torch.cat([first, second])), dim=1)
    positive = torch.zeros(8, 8, dtype=torch.bool)
    positive[torch.arange(8), (torch.arange(8) + 4) % 8] = True
    expected, anchors = ref_supcon(z, positive, 0.5)
    assert float(value) == pytest.approx(expected, rel=1e-5)
    assert float(term.last_stats["anchor_rows"]) == 8 and float(term.last_stats["excluded_rows"]) == 0
    assert not torch.allclose(first, second)  # different dropout masks / different augmentations


def test_dropout_views_are_identical_in_eval_mode_so_the_term_is_the_perfect_alignment_value():
    """Without dropout both views of a row coincide (positive cosine 1): l_i =
    -log(e^(1/T) / (e^(1/T) + sum over the 2B - 2 other rows of e^(s_ia)))."""
    torch.manual_seed(0)
    model = SASRec(12, 8, num_heads=2, max_len=4, dropout=0.3).eval()
    term, batch = term_on(model, positives="dropout"), sasrec_batch()
    first, second = term.views(model, batch)
    assert torch.equal(first, second)
    value = term(model, batch=batch)
    z = F.normalize(term.head(first), dim=1).double()  # [4, P]
    s = z @ z.T / 0.5
    aligned = [
        -math.log(math.exp(1 / 0.5) / (math.exp(1 / 0.5) + 2 * sum(math.exp(s[i, a]) for a in range(4) if a != i)))
        for i in range(4)
    ]
    assert float(value) == pytest.approx(sum(aligned) / 4, rel=1e-5)
    assert float(term.last_stats["positive_cosine"]) == pytest.approx(1.0, abs=1e-6)


def test_the_term_trains_the_model_and_the_head():
    model = SASRec(12, 8, num_heads=2, max_len=4)
    term = term_on(model, positives="augment")
    term(model, batch=sasrec_batch()).backward()
    assert model.item_emb.weight.grad.abs().sum() > 0 and term.head[0].weight.grad.abs().sum() > 0


# ---- augmentations ----------------------------------------------------------------------------
PAD, MASK, L = 50, 51, 12


def random_sequences(rows: int = 400, seed: int = 0) -> torch.Tensor:
    """Left-padded rows of every length 0..L with distinct items (so positions can be traced)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.arange(rows) % (L + 1)  # [B]
    items = torch.rand(rows, PAD, generator=gen).argsort(1)[:, :L]  # [B, L] distinct ids < PAD
    return torch.where(torch.arange(L) >= L - lengths.unsqueeze(1), items, PAD)


def real(row: list[int]) -> list[int]:
    assert row == [PAD] * row.count(PAD) + [x for x in row if x != PAD], f"not left-padded: {row}"
    return [x for x in row if x != PAD]


@pytest.mark.parametrize("ratio", [0.2, 0.6, 1.0])
def test_crop_keeps_a_contiguous_window_right_aligned(ratio):
    torch.manual_seed(0)
    seq = random_sequences()
    out = crop(seq, PAD, ratio)
    starts = set()
    for before, after in zip(seq.tolist(), out.tolist()):
        items, kept = real(before), real(after)
        n = len(items)
        assert len(kept) == (max(1, math.floor(ratio * n)) if n else 0)
        start = items.index(kept[0]) if kept else 0
        assert items[start : start + len(kept)] == kept
        if n == L:
            starts.add(start)
    assert ratio == 1.0 or len(starts) > 1  # the window moves


@pytest.mark.parametrize("mask_id", [None, MASK])
@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.9])
def test_mask_replaces_the_rate_of_real_items_and_never_padding(ratio, mask_id):
    torch.manual_seed(0)
    seq = random_sequences()
    out = mask(seq, PAD, ratio, mask_id)
    token = PAD if mask_id is None else mask_id
    for before, after in zip(seq.tolist(), out.tolist()):
        n = L - before.count(PAD)
        changed = [j for j in range(L) if before[j] != after[j]]
        assert len(changed) == math.floor(ratio * n)
        assert all(before[j] != PAD and after[j] == token for j in changed)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 1.0])
def test_reorder_shuffles_a_window_of_the_rate_and_keeps_the_items(ratio):
    torch.manual_seed(0)
    seq = random_sequences()
    out = reorder(seq, PAD, ratio)
    shuffled = 0
    for before, after in zip(seq.tolist(), out.tolist()):
        items, moved = real(before), real(after)
        assert sorted(items) == sorted(moved) and len(items) == len(moved)
        changed = [j for j in range(len(items)) if items[j] != moved[j]]
        if changed:
            assert changed[-1] - changed[0] + 1 <= math.floor(ratio * len(items))  # inside one window
            shuffled += 1
    assert shuffled > 0 if ratio > 0 else shuffled == 0


def test_augment_draws_one_operation_per_row_uniformly_and_is_reproducible():
    seq = random_sequences(13000)
    seq = seq[(seq != PAD).sum(1) == L]  # full rows: crop, mask and reorder are told apart
    torch.manual_seed(0)
    out = augment(seq, PAD, 0.5, 0.5, 0.5, mask_id=MASK)
    torch.manual_seed(0)
    assert torch.equal(out, augment(seq, PAD, 0.5, 0.5, 0.5, mask_id=MASK))
    masked = (out == MASK).any(1)
    cropped = (out == PAD).sum(1) == L - 6
    reordered = ~masked & ~cropped
    assert bool((out[reordered].sort(1).values == seq[reordered].sort(1).values).all())
    for share in (masked, cropped, reordered):
        assert abs(share.float().mean().item() - 1 / 3) < 0.06


def test_augment_is_one_batched_operation_on_large_batches():
    seq = random_sequences(20000, seed=1)
    torch.manual_seed(0)
    out = augment(seq, PAD, 0.6, 0.3, 0.3)
    assert out.shape == seq.shape and ((out != PAD).sum(1) <= (seq != PAD).sum(1)).all()


# ---- checks and settings ----------------------------------------------------------------------
@pytest.mark.parametrize("model", [MF(5, 7, 4), LightGCN(5, 7, 4)], ids=["mf", "lightgcn"])
def test_a_model_without_a_representation_fails_at_check_with_one_line(model):
    with pytest.raises(ConfigError) as info:
        Contrastive().check(model)
    message = one_line(info)
    assert type(model).__name__ in message and "model=sasrec" in message and "aux.contrastive" in message


def test_augment_needs_a_sequence_dropout_needs_dropout_and_the_head_a_width():
    class NoSequence(RecModel):
        dim = 4

        def represent(self, batch):  # pragma: no cover - never called
            raise AssertionError

    with pytest.raises(ConfigError) as info:
        Contrastive(positives="augment").check(NoSequence())
    assert "positives=augment" in one_line(info) and "NoSequence" in one_line(info)
    Contrastive(positives="same_target").check(NoSequence())
    with pytest.raises(ConfigError) as info:
        Contrastive(positives="dropout").check(NoSequence())
    assert "no dropout" in one_line(info) and "model.dropout=0.1" in one_line(info)
    with pytest.raises(ConfigError, match="no dropout"):
        Contrastive(positives="dropout").check(SASRec(12, 8, num_heads=2, max_len=4, dropout=0.0))
    NoSequence.dim = None
    with pytest.raises(ConfigError, match="dim"):
        Contrastive().check(NoSequence())


@pytest.mark.parametrize(
    "kwargs, bad",
    [
        (dict(positives="labels"), "'labels'"),
        (dict(temperature=0.0), "0.0"),
        (dict(weight=-0.1), "-0.1"),
        (dict(proj_dim=0), "0"),
        (dict(crop_ratio=0.0), "0.0"),
        (dict(mask_ratio=1.5), "1.5"),
        (dict(reorder_ratio=-0.2), "-0.2"),
    ],
)
def test_bad_settings_are_one_line_config_errors(kwargs, bad):
    with pytest.raises(ConfigError) as info:
        Contrastive(**kwargs)
    assert bad in one_line(info) and f"aux.contrastive.{next(iter(kwargs))}" in one_line(info)


def make_module() -> RecModule:
    torch.manual_seed(0)
    model = SASRec(12, 8, num_heads=2, max_len=4)
    term = Contrastive(weight=0.25, temperature=0.5, proj_dim=6)
    term.check(model)
    return RecModule(model, CE(), FullSampler(), optimizer=torch.optim.Adam, n_items=12,
                     aux={"contrastive": term}, loss_name="ce")


def test_the_head_is_a_parameter_of_the_module_and_of_its_checkpoint():
    module = make_module()
    head = {n for n, _ in module.named_parameters() if n.startswith("aux.contrastive.head.")}
    assert head == {f"aux.contrastive.head.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    optimizer = module.configure_optimizers()
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == sum(p.numel() for p in module.parameters())
    with torch.no_grad():
        module.aux["contrastive"].head[0].weight.add_(1.0)
    again = make_module()
    again.load_state_dict(module.state_dict())
    assert torch.equal(again.aux["contrastive"].head[0].weight, module.aux["contrastive"].head[0].weight)


def test_training_step_logs_the_excluded_rows_and_the_scheduled_values(monkeypatch):
    module = make_module()
    logged = {}
    monkeypatch.setattr(module, "log", lambda name, value, **kw: logged.__setitem__(name, float(value)))
    total = module.training_step(sasrec_batch(), 0)
    assert logged["train/aux/contrastive/excluded_rows"] == 2 and logged["train/aux/contrastive/anchor_rows"] == 2
    assert "train/aux/contrastive/positive_cosine" in logged
    assert logged["sched/aux.contrastive.weight"] == 0.25 and logged["sched/aux.contrastive.temperature"] == 0.5
    assert float(total) == pytest.approx(logged["train/loss/ce"] + 0.25 * logged["train/loss/contrastive"], rel=1e-6)
