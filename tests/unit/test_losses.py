"""Losses against plain-Python references (float64 ``math`` loops over rows and negatives)."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from recsys.errors import ConfigError
from recsys.losses.base import RecLoss, Scores
from recsys.losses.bce import BCE
from recsys.losses.bpr import BPR
from recsys.losses.ce import CE
from recsys.losses.ssm import SSM


def catalogue(n_items: int) -> SimpleNamespace:
    """The part of a data split a loss's ``setup`` reads: the catalogue size."""
    return SimpleNamespace(n_items=n_items)


# ---- references -----------------------------------------------------------------------
def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def ref_bpr(pos, neg, mask) -> float:
    rows = []
    for b in range(len(pos)):
        terms = [-log_sigmoid(pos[b] - neg[b][j]) for j in range(len(neg[b])) if mask[b][j]]
        rows.append(sum(terms) / len(terms) if terms else 0.0)
    return sum(rows) / len(rows)


def ref_bce(pos, neg, mask) -> float:
    rows = []
    for b in range(len(pos)):
        value = -log_sigmoid(pos[b])
        value += sum(-log_sigmoid(-neg[b][j]) for j in range(len(neg[b])) if mask[b][j])  # -ln(1 - sigmoid)
        rows.append(value)
    return sum(rows) / len(rows)


def ref_softmax_first(pos, neg, mask, pos_lq=None, neg_lq=None, lam=0.0) -> float:
    """Mean over rows of -l_pos + ln(exp(l_pos) + sum_valid exp(l_j)), l = s - lam * ln q."""
    rows = []
    for b in range(len(pos)):
        lp = pos[b] - (lam * pos_lq[b] if pos_lq is not None else 0.0)
        logits = [lp] + [neg[b][j] - (lam * neg_lq[b][j] if neg_lq is not None else 0.0) for j in range(len(neg[b])) if mask[b][j]]
        top = max(logits)
        rows.append(-lp + top + math.log(sum(math.exp(v - top) for v in logits)))
    return sum(rows) / len(rows)


def as_lists(*tensors):
    return [t.tolist() for t in tensors]


def random_case(b=6, n=9, seed=0, p_mask=0.3):
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randn(b, generator=gen) * 2
    neg = torch.randn(b, n, generator=gen) * 2
    mask = torch.rand(b, n, generator=gen) > p_mask
    mask[:, 0] = True  # every row keeps at least one negative
    pos_lq = torch.log(torch.rand(b, generator=gen) * 0.5 + 1e-3)
    neg_lq = torch.log(torch.rand(b, n, generator=gen) * 0.5 + 1e-3)
    return pos, neg, mask, pos_lq, neg_lq


def scalar(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


# ---- BPR --------------------------------------------------------------------------------
def test_bpr_matches_reference_with_and_without_mask():
    pos, neg, mask, _, _ = random_case(seed=1)
    assert_close(BPR()(Scores(pos=pos, neg=neg, neg_mask=mask)), scalar(ref_bpr(*as_lists(pos, neg, mask))))
    all_true = torch.ones_like(mask)
    assert_close(BPR()(Scores(pos=pos, neg=neg)), scalar(ref_bpr(*as_lists(pos, neg, all_true))))


def test_bpr_equal_scores_is_ln2():
    s = Scores(pos=torch.full((4,), 0.7), neg=torch.full((4, 5), 0.7))
    assert abs(float(BPR()(s)) - math.log(2.0)) < 1e-7


def test_bpr_handcomputed_single_pair():
    # pos 2, neg 0: -ln sigmoid(2) = ln(1 + e^-2)
    s = Scores(pos=torch.tensor([2.0]), neg=torch.tensor([[0.0]]))
    assert float(BPR()(s)) == pytest.approx(math.log(1 + math.exp(-2.0)), abs=1e-6)


# ---- BCE --------------------------------------------------------------------------------
def test_bce_matches_reference_with_and_without_mask():
    pos, neg, mask, _, _ = random_case(seed=2)
    assert_close(BCE()(Scores(pos=pos, neg=neg, neg_mask=mask)), scalar(ref_bce(*as_lists(pos, neg, mask))))
    all_true = torch.ones_like(mask)
    assert_close(BCE()(Scores(pos=pos, neg=neg)), scalar(ref_bce(*as_lists(pos, neg, all_true))))


def test_bce_handcomputed_zero_scores():
    # sigmoid(0) = 1/2: each of the 1 + 3 terms is ln 2
    s = Scores(pos=torch.zeros(2), neg=torch.zeros(2, 3))
    assert float(BCE()(s)) == pytest.approx(4 * math.log(2.0), abs=1e-6)


# ---- CE ---------------------------------------------------------------------------------
def full_catalogue(b=5, n_items=11, seed=3):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, n_items, generator=gen) * 3
    target = torch.randint(n_items, (b,), generator=gen)
    return logits, target


def test_ce_full_catalogue_equals_cross_entropy():
    logits, target = full_catalogue()
    s = Scores(pos=logits.gather(1, target.unsqueeze(1)).squeeze(1), neg=logits, pos_column=target)
    want = F.cross_entropy(logits, target)
    assert_close(CE()(s), want)
    # and the loop reference (the positive's column is not a negative)
    mask = [[j != int(target[b]) for j in range(logits.shape[1])] for b in range(logits.shape[0])]
    pos = logits.gather(1, target.unsqueeze(1)).squeeze(1)
    assert_close(CE()(s), scalar(ref_softmax_first(pos.tolist(), logits.tolist(), mask)))


def test_ce_generic_path_equals_fused_path():
    logits, target = full_catalogue(seed=4)
    pos = logits.gather(1, target.unsqueeze(1)).squeeze(1)
    fused = CE()(Scores(pos=pos, neg=logits, pos_column=target))
    generic = CE()(Scores(pos=pos, neg=logits, pos_column=target, neg_mask=torch.ones_like(logits, dtype=torch.bool)))
    assert_close(generic, fused)
    explicit = logits.scatter(1, target.unsqueeze(1), 0.0)
    mask = torch.ones_like(logits, dtype=torch.bool).scatter(1, target.unsqueeze(1), False)
    assert_close(CE()(Scores(pos=pos, neg=explicit, neg_mask=mask)), fused)


def test_ce_sampled_matches_reference():
    pos, neg, mask, _, _ = random_case(seed=5)
    assert_close(CE()(Scores(pos=pos, neg=neg, neg_mask=mask)), scalar(ref_softmax_first(*as_lists(pos, neg, mask))))


# ---- SSM --------------------------------------------------------------------------------
def test_ssm_with_every_item_negative_and_uniform_q_equals_full_ce():
    logits, target = full_catalogue(seed=6)
    b, n = logits.shape
    pos = logits.gather(1, target.unsqueeze(1)).squeeze(1)
    mask = torch.ones(b, n, dtype=torch.bool).scatter(1, target.unsqueeze(1), False)
    lq = -math.log(n)
    s = Scores(pos=pos, neg=logits, neg_mask=mask, pos_log_q=torch.full((b,), lq), neg_log_q=torch.full((b, n), lq))
    want = F.cross_entropy(logits, target)
    assert_close(SSM(logq_lambda=1.0)(s), want)
    assert_close(SSM(logq_lambda=0.3)(s), want)


def test_ssm_without_correction_on_full_catalogue_equals_ce():
    """sampler=full gives ``pos_column`` (no neg_mask): SSM must mask the positive's own
    column like every loss does through ``Scores.valid()``."""
    logits, target = full_catalogue(seed=7)
    pos = logits.gather(1, target.unsqueeze(1)).squeeze(1)
    s = Scores(pos=pos, neg=logits, pos_column=target)
    assert_close(SSM(logq_lambda=0.0)(s), F.cross_entropy(logits, target))


def test_ssm_lambda_zero_ignores_log_q():
    pos, neg, mask, pos_lq, neg_lq = random_case(seed=8)
    with_q = SSM(0.0)(Scores(pos=pos, neg=neg, neg_mask=mask, pos_log_q=pos_lq, neg_log_q=neg_lq))
    without_q = SSM(0.0)(Scores(pos=pos, neg=neg, neg_mask=mask))
    assert torch.equal(with_q, without_q)
    assert_close(without_q, scalar(ref_softmax_first(*as_lists(pos, neg, mask))))


@pytest.mark.parametrize("lam", [0.5, 1.0])
def test_ssm_matches_logq_corrected_reference(lam):
    pos, neg, mask, pos_lq, neg_lq = random_case(seed=9)
    got = SSM(lam)(Scores(pos=pos, neg=neg, neg_mask=mask, pos_log_q=pos_lq, neg_log_q=neg_lq))
    assert_close(got, scalar(ref_softmax_first(*as_lists(pos, neg, mask, pos_lq, neg_lq), lam=lam)))
    # without pos_log_q the positive is left uncorrected
    got = SSM(lam)(Scores(pos=pos, neg=neg, neg_mask=mask, neg_log_q=neg_lq))
    assert_close(got, scalar(ref_softmax_first(*as_lists(pos, neg, mask), neg_lq=neg_lq.tolist(), lam=lam)))


def test_ssm_logq_lowers_popular_negative():
    # two negatives with the same score: the popular one (log q = ln 0.5) gets a smaller
    # softmax share than the rare one (log q = ln 0.01), by the factor (0.01 / 0.5) ** lambda
    lam = 1.0
    pos = torch.tensor([0.0], requires_grad=True)
    neg = torch.tensor([[1.0, 1.0]], requires_grad=True)
    neg_lq = torch.log(torch.tensor([[0.5, 0.01]]))
    SSM(lam)(Scores(pos=pos, neg=neg, neg_log_q=neg_lq)).backward()
    g_pop, g_rare = neg.grad[0].tolist()
    assert 0 < g_pop < g_rare
    assert g_pop / g_rare == pytest.approx((0.01 / 0.5) ** lam, rel=1e-5)
    # the gradient of a softmax-CE logit is its probability: check against the hand value
    logits = [0.0, 1.0 - math.log(0.5), 1.0 - math.log(0.01)]
    z = sum(math.exp(v) for v in logits)
    assert g_pop == pytest.approx(math.exp(logits[1]) / z, rel=1e-5)


def test_ssm_needs_log_q_when_lambda_nonzero():
    pos, neg, mask, _, _ = random_case(seed=10)
    with pytest.raises(ConfigError) as info:
        SSM(1.0)(Scores(pos=pos, neg=neg, neg_mask=mask))
    assert "\n" not in str(info.value)
    SSM(0.0)(Scores(pos=pos, neg=neg, neg_mask=mask))  # lambda 0 needs none


# ---- every loss ---------------------------------------------------------------------------
def all_losses() -> list[tuple[str, RecLoss]]:
    from recsys.losses.csar import CSAR
    from recsys.losses.dmbpr import DynamicMarginBPR
    from recsys.losses.eainfonce import EntropyAdaptiveInfoNCE
    from recsys.losses.gbce import GBCE
    from recsys.losses.infonce import InfoNCE
    from recsys.losses.nss import NSS
    from recsys.losses.poly import Poly1

    losses = [("bpr", BPR()), ("bce", BCE()), ("ce", CE()), ("ssm0", SSM(0.0)), ("ssm1", SSM(1.0)), ("ssm07", SSM(0.7)),
              ("dmbpr", DynamicMarginBPR(1.0)), ("gbce", GBCE(0.75)), ("infonce", InfoNCE(0.1)), ("nss", NSS()),
              ("csar", CSAR()), ("poly", Poly1(1.0)), ("eainfonce", EntropyAdaptiveInfoNCE().eval())]
    for _, loss in losses:
        loss.setup(catalogue(1000))
    return losses


def loss_value_and_grads(loss, pos, neg, mask, pos_lq, neg_lq, pos_column=None):
    pos = pos.clone().requires_grad_(True)
    neg = neg.clone().requires_grad_(True)
    value = loss(Scores(pos=pos, neg=neg, neg_mask=mask, pos_log_q=pos_lq, neg_log_q=neg_lq, pos_column=pos_column))
    value.backward()
    return value.detach(), pos.grad, neg.grad


@pytest.mark.parametrize("name,loss", all_losses())
def test_masked_negatives_have_no_effect(name, loss):
    pos, neg, mask, pos_lq, neg_lq = random_case(seed=11)
    gen = torch.Generator().manual_seed(12)
    wild = neg.clone()
    wild[~mask] = (torch.rand(int((~mask).sum()), generator=gen) - 0.5) * 2e6  # up to 1e6 in magnitude
    wild_lq = neg_lq.clone()
    wild_lq[~mask] = -torch.rand(int((~mask).sum()), generator=gen) * 1e6
    v1, gp1, gn1 = loss_value_and_grads(loss, pos, neg, mask, pos_lq, neg_lq)
    v2, gp2, gn2 = loss_value_and_grads(loss, pos, wild, mask, pos_lq, wild_lq)
    assert_close(v2, v1)
    assert_close(gp2, gp1)
    assert_close(gn2[mask], gn1[mask])
    assert torch.equal(gn1[~mask], torch.zeros_like(gn1[~mask]))
    assert torch.equal(gn2[~mask], torch.zeros_like(gn2[~mask]))
    assert bool((gn1[mask] != 0).all())  # the unmasked ones do get a gradient


@pytest.mark.parametrize("name,loss", all_losses())
def test_positive_column_is_masked_for_every_loss(name, loss):
    """With ``pos_column`` the positive's own column of ``neg`` is not a negative: value and
    gradient (with respect to the scores, ``pos`` gathered from ``neg`` as RecModule does)
    equal those of the same loss with that entry masked through ``neg_mask``, and those of
    the loss on the catalogue with that column removed (no masking at all)."""
    logits, target = full_catalogue(seed=13)
    b, n = logits.shape
    loss = copy.deepcopy(loss)
    loss.setup(catalogue(n))  # neg is the whole catalogue (gbce's sampling rate, nss's correction)
    lq = torch.log(torch.rand(b, n, generator=torch.Generator().manual_seed(5)) * 0.5 + 1e-3)  # [B, N]
    keep = torch.ones(b, n, dtype=torch.bool).scatter(1, target.unsqueeze(1), False)  # [B, N]

    def value_and_grad(kind: str):
        leaf = logits.clone().requires_grad_(True)  # [B, N] the catalogue's scores
        pos, pos_lq = leaf.gather(1, target.unsqueeze(1)).squeeze(1), lq.gather(1, target.unsqueeze(1)).squeeze(1)
        if kind == "column":
            s = Scores(pos=pos, neg=leaf, pos_log_q=pos_lq, neg_log_q=lq, pos_column=target)
        elif kind == "mask":
            s = Scores(pos=pos, neg=leaf, neg_mask=keep, pos_log_q=pos_lq, neg_log_q=lq)
        else:  # the positive's column removed: [B, N - 1]
            s = Scores(pos=pos, neg=leaf[keep].view(b, n - 1), pos_log_q=pos_lq, neg_log_q=lq[keep].view(b, n - 1))
        value = loss(s)
        value.backward()
        return value.detach(), leaf.grad

    v_removed, g_removed = value_and_grad("removed")
    for kind in ("column", "mask"):
        value, grad = value_and_grad(kind)
        assert_close(value, v_removed, msg=kind)
        assert_close(grad, g_removed, msg=kind)


@pytest.mark.parametrize("name,loss", all_losses())
@pytest.mark.parametrize("with_column", [False, True])
def test_large_scores_are_stable_in_fp32(name, loss, with_column):
    gen = torch.Generator().manual_seed(14)
    b, n = 8, 16
    neg = (torch.rand(b, n, generator=gen) - 0.5) * 2e4  # up to 1e4 in magnitude
    target = torch.randint(n, (b,), generator=gen)
    neg[0, 1], neg[1, 2] = -1e4, 1e4
    pos_lq, neg_lq = torch.full((b,), -5.0), torch.log(torch.rand(b, n, generator=gen) + 1e-4)
    neg.requires_grad_(True)
    if with_column:  # full catalogue: the positive is a column of neg, as RecModule.scores builds it
        pos, column = neg.gather(1, target.unsqueeze(1)).squeeze(1), target
    else:
        pos, column = ((torch.rand(b, generator=gen) - 0.5) * 2e4).requires_grad_(True), None
        with torch.no_grad():
            pos[0], pos[1] = 1e4, -1e4
    value = loss(Scores(pos=pos, neg=neg, pos_log_q=pos_lq, neg_log_q=neg_lq, pos_column=column))
    value.backward()
    assert value.dtype == torch.float32
    assert bool(torch.isfinite(value))
    assert bool(torch.isfinite(neg.grad).all())
    if not with_column:
        assert bool(torch.isfinite(pos.grad).all())


@pytest.mark.parametrize("name,loss", all_losses())
def test_bf16_autocast(name, loss):
    pos, neg, mask, pos_lq, neg_lq = random_case(seed=15)
    pos16 = pos.bfloat16().requires_grad_(True)
    neg16 = neg.bfloat16().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(Scores(pos=pos16, neg=neg16, neg_mask=mask, pos_log_q=pos_lq.bfloat16(), neg_log_q=neg_lq.bfloat16()))
    assert value.dim() == 0
    assert value.dtype in (torch.float32, torch.bfloat16)
    assert bool(torch.isfinite(value))
    value.backward()
    assert bool(torch.isfinite(pos16.grad.float()).all()) and bool(torch.isfinite(neg16.grad.float()).all())
    # close to the fp32 loss of the same (rounded) inputs
    ref = loss(Scores(pos=pos16.detach().float(), neg=neg16.detach().float(), neg_mask=mask,
                      pos_log_q=pos_lq.bfloat16().float(), neg_log_q=neg_lq.bfloat16().float()))
    assert float(value.detach()) == pytest.approx(float(ref.detach()), rel=2e-2, abs=2e-2)


def test_schedule_values():
    assert SSM(logq_lambda=0.25).schedule_values() == {"logq_lambda": 0.25}
    ssm = SSM()
    ssm.logq_lambda = 0.5  # what a warm-up callback does
    assert ssm.schedule_values() == {"logq_lambda": 0.5}
    assert BPR().schedule_values() == {}
    assert BCE().schedule_values() == {}
    assert CE().schedule_values() == {}


def test_scores_valid_combines_mask_and_positive_column():
    neg = torch.zeros(2, 4)
    mask = torch.tensor([[True, False, True, True], [True, True, True, True]])
    s = Scores(pos=torch.zeros(2), neg=neg, neg_mask=mask, pos_column=torch.tensor([2, 0]))
    assert s.valid().tolist() == [[True, False, False, True], [False, True, True, True]]
    assert Scores(pos=torch.zeros(2), neg=neg).valid().all()
