"""The CPU dropout: the distribution of ``nn.Dropout``, the identity outside training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recsys.models.dropout import Dropout


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_keeps_each_value_with_probability_1_minus_p_scaled_by_its_inverse(p):
    torch.manual_seed(0)
    x = torch.full((400_000,), 3.0)
    y = Dropout(p).train()(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.005  # 400k draws: sd ~0.0008
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 3.0 / (1 - p)))
    assert abs(y.mean().item() - 3.0) < 0.03  # unbiased


def test_gradient_flows_through_the_kept_values_only():
    torch.manual_seed(0)
    x = torch.randn(64, 32, requires_grad=True)
    y = Dropout(0.3).train()(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() / 0.7)


def test_identity_in_evaluation_and_at_p_0_and_zero_at_p_1():
    x = torch.randn(10, 5)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    assert isinstance(Dropout(0.2), nn.Dropout)  # what the contrastive term's dropout check looks for


def test_draws_follow_the_torch_seed():
    x = torch.randn(100, 10)
    torch.manual_seed(5)
    a = Dropout(0.2).train()(x)
    torch.manual_seed(5)
    assert torch.equal(Dropout(0.2).train()(x), a)
