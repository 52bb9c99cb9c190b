"""The remaining losses against direct re-computations of their formulas."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch.testing import assert_close

from recsys.errors import ConfigError
from recsys.losses.base import Scores
from recsys.losses.csar import CSAR
from recsys.losses.dmbpr import DynamicMarginBPR
from recsys.losses.eainfonce import EntropyAdaptiveInfoNCE
from recsys.losses.gbce import GBCE
from recsys.losses.infonce import InfoNCE
from recsys.losses.nss import NSS
from recsys.losses.poly import Poly1


def catalogue(n_items: int) -> SimpleNamespace:
    """The part of a data split a loss's ``setup`` reads: the catalogue size."""
    return SimpleNamespace(n_items=n_items)


def case(b=5, n=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randn(b, generator=gen, dtype=torch.float64)
    neg = torch.randn(b, n, generator=gen, dtype=torch.float64)
    mask = torch.rand(b, n, generator=gen) > 0.25
    mask[:, 0] = True
    return pos, neg, mask


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def softmax_ce(logits: list[float]) -> float:
    top = max(logits)
    return -logits[0] + top + math.log(sum(math.exp(v - top) for v in logits))


def rows(pos, neg, mask):
    for b in range(len(pos)):
        yield float(pos[b]), [float(neg[b, j]) for j in range(neg.shape[1]) if mask[b, j]]


def test_dmbpr_matches_formula_and_margin_zero_is_bpr():
    pos, neg, mask = case()
    ref = []
    for p, ns in rows(pos, neg, mask):
        terms = [math.log1p(math.exp(-((p - x) - 0.5 * sig(p - x)))) for x in ns]
        ref.append(sum(terms) / len(terms))
    value = DynamicMarginBPR(alpha=0.5)(Scores(pos=pos, neg=neg, neg_mask=mask))
    assert float(value) == pytest.approx(sum(ref) / len(ref), rel=1e-6)
    equal = Scores(pos=torch.zeros(3), neg=torch.zeros(3, 2))
    assert float(DynamicMarginBPR(alpha=0.0)(equal)) == pytest.approx(math.log(2))


def test_dmbpr_detached_margin_has_bpr_like_gradient():
    pos = torch.tensor([1.0], requires_grad=True)
    neg = torch.tensor([[0.0]])
    DynamicMarginBPR(alpha=1.0, detach_margin=True)(Scores(pos=pos, neg=neg)).backward()
    m = sig(1.0)
    assert float(pos.grad) == pytest.approx(-sig(-(1.0 - m)), rel=1e-6)  # d/dp softplus(-(d - m)), m constant


def test_gbce_matches_formula_and_t0_is_bce():
    pos, neg, mask = case()
    loss = GBCE(t=0.75)
    loss.setup(catalogue(101))
    alpha = neg.shape[1] / 100
    beta = alpha * (0.75 * (1 - 1 / alpha) + 1 / alpha)
    ref = [-beta * math.log(sig(p)) - sum(math.log(1 - sig(x)) for x in ns) for p, ns in rows(pos, neg, mask)]
    assert float(loss(Scores(pos=pos, neg=neg, neg_mask=mask))) == pytest.approx(sum(ref) / len(ref), rel=1e-6)
    plain = GBCE(t=0.0)
    plain.setup(catalogue(101))
    assert plain.beta(7) == pytest.approx(1.0)
    # the transformed-logit form of the gSASRec code gives the same positive term
    s = 0.3
    transformed = math.log(1.0 / (sig(s) ** -beta - 1.0))
    assert -math.log(sig(transformed)) == pytest.approx(-beta * math.log(sig(s)), rel=1e-9)


def test_gbce_t_is_scheduled_and_checked_on_every_set():
    """``t`` is what ``callbacks=[default,gbce_t_warmup]`` moves: setting it changes beta
    (t = 0 is BCE's beta = 1), and a value outside [0, 1] is refused on every set, not only
    in the constructor, so a schedule's bad end value fails at fit start."""
    pos, neg, mask = case()
    loss = GBCE(t=0.75)
    loss.setup(catalogue(101))
    assert loss.scheduled == ("t",) and loss.schedule_values() == {"t": 0.75}
    before = float(loss(Scores(pos=pos, neg=neg, neg_mask=mask)))
    loss.t = 0.0
    plain = GBCE(t=0.0)
    plain.setup(catalogue(101))
    assert loss.beta(7) == pytest.approx(1.0) and loss.schedule_values() == {"t": 0.0}
    assert float(loss(Scores(pos=pos, neg=neg, neg_mask=mask))) == float(plain(Scores(pos=pos, neg=neg, neg_mask=mask)))
    assert float(loss(Scores(pos=pos, neg=neg, neg_mask=mask))) != before
    for bad in (1.5, -0.1, True, "0.5", None):
        with pytest.raises(ConfigError) as info:
            loss.t = bad
        assert str(info.value) == f"loss.t must be a number in [0, 1], got {bad!r}"
    with pytest.raises(ConfigError, match=r"got 2"):
        GBCE(t=2)
    assert loss.t == 0.0  # a refused value leaves the old one


def test_infonce_matches_formula():
    pos, neg, mask = case()
    ref = [softmax_ce([p / 0.2] + [x / 0.2 for x in ns]) for p, ns in rows(pos, neg, mask)]
    assert float(InfoNCE(0.2)(Scores(pos=pos, neg=neg, neg_mask=mask))) == pytest.approx(sum(ref) / len(ref), rel=1e-6)
    with pytest.raises(ConfigError):
        InfoNCE(0.0)


def test_nss_matches_formula_and_in_batch_correction():
    pos, neg, mask = case()
    loss = NSS(eps=0.0)
    loss.setup(catalogue(500))
    values = [float(v) for v in pos] + [float(neg[b, j]) for b in range(len(pos)) for j in range(neg.shape[1]) if mask[b, j]]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    ref = []
    for p, ns in rows(pos, neg, mask):
        shift = math.log(499 / len(ns))
        ref.append(softmax_ce([(p - mean) / std] + [(x - mean) / std + shift for x in ns]))
    assert float(loss(Scores(pos=pos, neg=neg, neg_mask=mask))) == pytest.approx(sum(ref) / len(ref), rel=1e-6)
    # in-batch: B rows, the diagonal is each row's own positive -> B - 1 negatives each
    b = 8
    in_batch_valid = ~torch.eye(b, dtype=torch.bool)
    assert_close(loss.correction(in_batch_valid.sum(1)), torch.full((b,), math.log(499 / 7)))


def nss_written_out(pos, neg, valid, n_items: int, eps: float):
    """NSS as its docstring states it, every step differentiated: z-score with the batch's
    mean and std over the positives and valid negatives, the correction, softmax CE."""
    count = pos.numel() + valid.sum()
    mean = (pos.sum() + (neg * valid).sum()) / count
    std = ((((pos - mean) ** 2).sum() + (((neg - mean) ** 2) * valid).sum()) / count + eps).sqrt()
    shift = math.log(n_items - 1) - valid.sum(1).clamp(min=1).double().log()  # [B]
    logits = torch.cat([((pos - mean) / std)[:, None], ((neg - mean) / std + shift[:, None]).masked_fill(~valid, -math.inf)], 1)
    return (torch.logsumexp(logits, 1) - logits[:, 0]).mean()


@pytest.mark.parametrize("offset", [0.0, 40.0])
def test_nss_value_and_gradients_equal_the_formula_written_out(offset):
    """The loss leaves the mean out of the logits (softmax is shift-invariant) and holds it
    constant in the variance; value and gradients must still be the formula's, including a
    row without valid negatives (finite, zero gradient for its negatives) and scores far
    from zero (offset 40, std 3)."""
    gen = torch.Generator().manual_seed(3)
    pos = torch.randn(6, generator=gen, dtype=torch.float64) * 3 + offset
    neg = torch.randn(6, 9, generator=gen, dtype=torch.float64) * 3 + offset
    valid = torch.rand(6, 9, generator=gen) > 0.3
    valid[2] = False  # no negative left in row 2
    loss = NSS(eps=1e-6)
    loss.setup(catalogue(100))
    want_pos, want_neg = pos.clone().requires_grad_(), neg.clone().requires_grad_()
    want = nss_written_out(want_pos, want_neg, valid, 100, 1e-6)
    want.backward()
    got_pos, got_neg = pos.clone().requires_grad_(), neg.clone().requires_grad_()
    got = loss(Scores(pos=got_pos, neg=got_neg, neg_mask=valid))
    got.backward()
    got, want = got.detach(), want.detach()
    assert got.item() == pytest.approx(want.item(), rel=1e-6)  # the loss computes in float32
    assert_close(got_pos.grad, want_pos.grad, rtol=1e-5, atol=1e-7)
    assert_close(got_neg.grad, want_neg.grad, rtol=1e-5, atol=1e-7)
    assert torch.isfinite(got_neg.grad).all() and bool((got_neg.grad[2] == 0).all())


def test_nss_is_invariant_to_score_scale_and_shift():
    pos, neg, mask = case()
    loss = NSS(eps=0.0)
    loss.setup(catalogue(500))
    a = loss(Scores(pos=pos, neg=neg, neg_mask=mask))
    b = loss(Scores(pos=pos * 37.0 + 5.0, neg=neg * 37.0 + 5.0, neg_mask=mask))
    assert float(a) == pytest.approx(float(b), rel=1e-9)


def test_csar_is_softmax_of_log_energies():
    pos, neg, mask = case()
    energy_pos, energy_neg = pos.abs() + 0.1, neg.abs() + 0.1
    ref = [softmax_ce([math.log(p)] + [math.log(x) for x in ns]) for p, ns in rows(energy_pos, energy_neg, mask)]
    value = CSAR(energy="identity", eps=0.0)(Scores(pos=energy_pos, neg=energy_neg, neg_mask=mask))
    assert float(value) == pytest.approx(sum(ref) / len(ref), rel=1e-6)
    soft = CSAR(energy="softplus", eps=0.0)(Scores(pos=pos, neg=neg, neg_mask=mask))
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    ref = [softmax_ce([math.log(sp(p))] + [math.log(sp(x)) for x in ns]) for p, ns in rows(pos, neg, mask)]
    assert float(soft) == pytest.approx(sum(ref) / len(ref), rel=1e-6)


def test_poly1_matches_formula_and_epsilon_zero_is_ce():
    pos, neg, mask = case()
    ref = []
    for p, ns in rows(pos, neg, mask):
        ce = softmax_ce([p] + ns)
        ref.append(ce + 2.0 * (1 - math.exp(-ce)))
    assert float(Poly1(2.0)(Scores(pos=pos, neg=neg, neg_mask=mask))) == pytest.approx(sum(ref) / len(ref), rel=1e-6)
    ce_only = [softmax_ce([p] + ns) for p, ns in rows(pos, neg, mask)]
    assert float(Poly1(0.0)(Scores(pos=pos, neg=neg, neg_mask=mask))) == pytest.approx(sum(ce_only) / len(ce_only), rel=1e-6)


def test_eainfonce_rule_rises_with_uncertainty_and_redundancy_and_stays_bounded():
    loss = EntropyAdaptiveInfoNCE(tau_min=0.05, tau_max=0.5, temperature=0.2, entropy_weight=0.5, momentum=1.0)
    b, n = 6, 50
    flat = Scores(pos=torch.zeros(b), neg=torch.zeros(b, n), query=torch.ones(b, 4))  # max entropy, identical users
    loss(flat)
    assert loss.temperature == pytest.approx(0.5)  # both signals at 1 -> tau_max
    loss = EntropyAdaptiveInfoNCE(temperature=0.2, momentum=1.0)
    sharp = Scores(pos=torch.full((4,), 50.0), neg=torch.zeros(4, n), query=torch.eye(4))  # certain, orthogonal users
    loss(sharp)
    assert loss.temperature == pytest.approx(0.05, abs=1e-3)  # both signals ~0 -> tau_min


def test_eainfonce_uses_infonce_at_its_current_temperature():
    pos, neg, mask = case()
    loss = EntropyAdaptiveInfoNCE(temperature=0.3).eval()  # no update in eval mode
    ref = InfoNCE(0.3)(Scores(pos=pos, neg=neg, neg_mask=mask))
    assert_close(loss(Scores(pos=pos, neg=neg, neg_mask=mask)), ref.float())
    loss.train()
    before = loss.temperature
    u, r = loss.signals(torch.cat([pos.unsqueeze(1), neg.masked_fill(~mask, float("-inf"))], 1), None)
    target = 0.05 + 0.45 * min(1.0, 0.5 * u)
    loss(Scores(pos=pos, neg=neg, neg_mask=mask))
    assert loss.temperature == pytest.approx(0.9 * before + 0.1 * target)
    assert loss.schedule_values() == {"temperature": loss.temperature}


@pytest.mark.parametrize("masked", [True, False])
def test_masked_softmax_ce_equals_the_softmax_over_the_concatenated_logits(masked):
    """The fused softmax cross-entropy of ssm and infonce: value and gradients of
    softmax_ce_first on [pos, neg] with invalid negatives at -inf, including a row whose
    negatives are all invalid and scores far apart (offset 60)."""
    from recsys.losses.base import masked_logits, masked_softmax_ce, softmax_ce_first

    pos, neg, mask = case(b=6, n=9, seed=4)
    neg = neg * 5 + 60.0
    mask[3] = False  # row 3: only its positive
    valid = mask if masked else None
    want_pos, want_neg = pos.clone().requires_grad_(), neg.clone().requires_grad_()
    want = softmax_ce_first(masked_logits(Scores(pos=want_pos, neg=want_neg, neg_mask=valid)))
    want.backward()
    got_pos, got_neg = pos.clone().requires_grad_(), neg.clone().requires_grad_()
    got = masked_softmax_ce(got_pos, got_neg, valid)
    got.backward()
    assert got.dtype == torch.float64  # float64 in, float64 out (float32 at least)
    assert_close(got.detach(), want.detach().to(got.dtype), rtol=1e-6, atol=1e-7)
    assert_close(got_pos.grad, want_pos.grad, rtol=1e-5, atol=1e-7)
    assert_close(got_neg.grad, want_neg.grad, rtol=1e-5, atol=1e-7)
    if masked:
        assert bool((got_neg.grad[~mask] == 0).all())
