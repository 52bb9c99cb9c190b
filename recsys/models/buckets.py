"""Encoding left-padded sequences in groups of similar length.

A batch of left-padded histories ``[B, L]`` is mostly padding when most users have fewer
than ``L`` items (ml1m: a median of 96 of 200 positions). Sorting the rows by length and
encoding each group cut to its longest row gives the same outputs at the real positions
(padding keys are masked and positions are counted from the right) for a fraction of the
cost.
"""

from __future__ import annotations

import torch
from torch import Tensor


def length_buckets(seq: Tensor, pad: int, buckets: int) -> list[tuple[Tensor, int]]:
    """The rows of ``seq`` in ``buckets`` groups of similar length, shortest first, each
    with its width (the length of its longest row, at least 1).

    Args:
        seq: ``[B, L]`` left-padded ids.
        pad: the padding id.
        buckets: number of groups (1: the whole batch at width ``L``).

    Returns:
        ``[(rows [B_k], width), ...]``; ``seq[rows, -width:]`` drops only padding. The rows
        of all groups together are a permutation of ``0..B-1``.
    """
    if buckets <= 1:
        return [(torch.arange(seq.shape[0], device=seq.device), seq.shape[1])]
    lengths = (seq != pad).sum(1).clamp(min=1)  # [B]; an empty row keeps its last position
    order = lengths.argsort()  # [B]
    return [(rows, int(lengths[rows].max())) for rows in order.chunk(buckets)]
