"""Collapse diagnostics of embedding sets (logged at every validation).

* ``effective_rank`` (Roy & Vetterli 2007): ``exp(entropy(p))`` with ``p`` the singular
  values of the centred vectors normalized to sum to 1; between 1 (all vectors on a line)
  and ``D`` (spread over every direction).
* ``mean_cosine``: mean cosine similarity between distinct vectors; near 1 when a tower
  maps everything to the same direction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def effective_rank(vectors: Tensor) -> float:
    """vectors ``[N, D]`` -> effective rank in ``[1, min(N, D)]``."""
    centred = vectors.float() - vectors.float().mean(0, keepdim=True)
    singular = torch.linalg.svdvals(centred)  # [min(N, D)]
    if float(singular.sum()) == 0.0:
        return 1.0
    p = singular / singular.sum()
    entropy = -(p * torch.log(p.clamp(min=1e-12))).sum()
    return float(torch.exp(entropy))


def mean_cosine(vectors: Tensor) -> float:
    """vectors ``[N, D]`` -> mean cosine over the ``N (N - 1)`` ordered distinct pairs."""
    n = vectors.shape[0]
    if n < 2:
        return 1.0
    unit = F.normalize(vectors.float(), dim=1)
    total = unit.sum(0)  # sum_i u_i
    return float(((total @ total) - n) / (n * (n - 1)))  # (|sum u|^2 - sum |u_i|^2) / pairs


def diagnostics(vectors: Tensor, prefix: str, max_vectors: int = 4096, seed: int = 0) -> dict[str, float]:
    """Both diagnostics of (a fixed random subset of at most ``max_vectors``) vectors."""
    if vectors.shape[0] > max_vectors:
        pick = torch.randperm(vectors.shape[0], generator=torch.Generator().manual_seed(seed))[:max_vectors]
        vectors = vectors[pick.to(vectors.device)]
    return {f"{prefix}_effective_rank": effective_rank(vectors), f"{prefix}_mean_cosine": mean_cosine(vectors)}
