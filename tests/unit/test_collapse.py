"""Collapse diagnostics against direct computations and extreme cases."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from recsys.metrics.collapse import diagnostics, effective_rank, mean_cosine


def test_mean_cosine_matches_pairwise_reference():
    vectors = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    unit = torch.nn.functional.normalize(vectors, dim=1).tolist()
    pairs = [sum(a * b for a, b in zip(unit[i], unit[j])) for i, j in itertools.permutations(range(7), 2)]
    assert mean_cosine(vectors) == pytest.approx(sum(pairs) / len(pairs), rel=1e-5)


def test_collapsed_vectors_have_rank_one_and_cosine_one():
    line = torch.arange(1.0, 11.0).unsqueeze(1) * torch.tensor([[1.0, 2.0, -1.0]])
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-4)
    assert mean_cosine(line) == pytest.approx(1.0, abs=1e-6)


def test_spread_vectors_have_high_rank():
    spread = torch.randn(2000, 8, generator=torch.Generator().manual_seed(1))
    assert effective_rank(spread) > 7.5
    assert abs(mean_cosine(spread)) < 0.05
    keys = diagnostics(spread, "collapse/item", max_vectors=100)
    assert set(keys) == {"collapse/item_effective_rank", "collapse/item_mean_cosine"}
    assert math.isfinite(keys["collapse/item_effective_rank"])
