"""Dropout whose mask is drawn as uniform numbers on the CPU.

``nn.Dropout`` draws its mask with ``bernoulli_``, which on this project's 2-core CPU
runs about 2.5x slower than drawing uniform numbers and comparing them with ``p``
(34 ms against 13 ms for 5M values, torch 2.13); in a SASRec ml1m training step the
draws took 18% of the time. This module keeps each value with probability ``1 - p`` and
scales it by ``1 / (1 - p)``, the same distribution as ``nn.Dropout`` (Srivastava et al.,
JMLR 2014), from a different stream of random numbers. On other devices it calls
``nn.Dropout``'s fused kernel.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Dropout(nn.Dropout):
    """``nn.Dropout`` (so ``isinstance`` checks and ``p`` still work) with a faster CPU mask.

    Shape:
        any ``[...]`` -> the same.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        if self.p == 1:
            return x * 0.0
        keep = (torch.rand_like(x) >= self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))  # [...] 0 or 1 / (1 - p)
        return x * keep
