"""Sequence augmentations of CL4SRec (Xie et al., "Contrastive Learning for Sequential
Recommendation", ICDE 2022): item crop, item mask and item reorder, on a whole batch at
once (tensor operations, no per-row Python).

Sequences are ``[B, L]`` item ids, right-aligned and left-padded with ``pad`` (the layout
of the models' views); every function returns the same layout. With ``n`` real items in a
row, the sizes are the paper's: crop keeps ``max(1, floor(eta * n))`` items, mask replaces
``floor(gamma * n)`` of them, reorder shuffles a window of ``floor(beta * n)``; a row with a
single item is therefore left unchanged, as in the reference code (DuoRec's
``augment``). Random draws come from torch's global generator on the sequence's device
(whose state a run checkpoints, so a resumed run draws the same).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _count(n: Tensor, ratio: float) -> Tensor:
    """``floor(ratio * n)`` per row (in float64, as Python's ``math.floor(n * ratio)``)."""
    return (n.double() * ratio).floor().long()  # [B]


def _start(n: Tensor, size: Tensor) -> Tensor:
    """A uniform start in ``0 .. n - size`` per row (the first item of a window of ``size``)."""
    room = n - size + 1  # [B]
    return (torch.rand(n.shape, device=n.device, dtype=torch.float64) * room).long().minimum(room - 1)  # [B]


def crop(seq: Tensor, pad: int, ratio: float) -> Tensor:
    """Keep a random contiguous window of ``max(1, floor(ratio * n))`` real items, right-aligned.

    Shape:
        seq ``[B, L]`` -> ``[B, L]``.
    """
    b, length = seq.shape
    n = (seq != pad).sum(1)  # [B]
    keep = _count(n, ratio).clamp(min=1).minimum(n)  # [B] 0 only for an empty row
    start = _start(n, keep)  # [B] window start among the real items
    j = torch.arange(length, device=seq.device)  # [L]
    source = j + (start + keep - n).unsqueeze(1)  # [B, L] output j <- input j + start + keep - n
    inside = j >= (length - keep).unsqueeze(1)  # [B, L] the last `keep` positions
    return torch.where(inside, seq.gather(1, source.clamp(0, length - 1)), torch.full_like(seq, pad))


def mask(seq: Tensor, pad: int, ratio: float, mask_id: int | None = None) -> Tensor:
    """Replace ``floor(ratio * n)`` random real items by ``mask_id`` (``None``: by ``pad``, so
    a model without a ``[MASK]`` token sees those items dropped).

    Shape:
        seq ``[B, L]`` -> ``[B, L]``.
    """
    real = seq != pad  # [B, L]
    count = _count(real.sum(1), ratio)  # [B]
    keys = torch.rand(seq.shape, device=seq.device).masked_fill(~real, 2.0)  # [B, L] padding ranks last
    rank = keys.argsort(1).argsort(1)  # [B, L] each position's rank within its row
    chosen = rank < count.unsqueeze(1)  # [B, L] `count` random real positions
    return seq.masked_fill(chosen, pad if mask_id is None else mask_id)


def reorder(seq: Tensor, pad: int, ratio: float) -> Tensor:
    """Shuffle a random contiguous window of ``floor(ratio * n)`` real items in place: the
    positions in the window get random sort keys inside ``[start - 1/2, end - 1/2)``, the
    others keep their index, so one sort permutes only the window.

    Shape:
        seq ``[B, L]`` -> ``[B, L]``.
    """
    b, length = seq.shape
    n = (seq != pad).sum(1)  # [B]
    size = _count(n, ratio)  # [B]
    start = (length - n + _start(n, size)).unsqueeze(1)  # [B, 1] first position of the window
    j = torch.arange(length, device=seq.device, dtype=torch.float64)  # [L]
    inside = (j >= start) & (j < start + size.unsqueeze(1))  # [B, L]
    random_keys = start - 0.5 + torch.rand(b, length, device=seq.device, dtype=torch.float64) * size.unsqueeze(1)
    keys = torch.where(inside, random_keys, j)  # [B, L]
    return seq.gather(1, keys.argsort(1))


def augment(seq: Tensor, pad: int, crop_ratio: float, mask_ratio: float, reorder_ratio: float,
            mask_id: int | None = None) -> Tensor:
    """One CL4SRec view: each row goes through one of crop, mask and reorder, drawn
    uniformly per row.

    Shape:
        seq ``[B, L]`` -> ``[B, L]``.
    """
    op = torch.randint(3, (seq.shape[0], 1), device=seq.device)  # [B, 1]
    cropped, masked, reordered = crop(seq, pad, crop_ratio), mask(seq, pad, mask_ratio, mask_id), reorder(seq, pad, reorder_ratio)
    return torch.where(op == 0, cropped, torch.where(op == 1, masked, reordered))  # [B, L]
