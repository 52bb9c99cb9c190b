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

from recsys.distributed import all_gather_objects, world_size


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


class QuerySample:
    """The user vectors of the collapse diagnostics: the queries of an evaluation's first
    ``batches`` batches. Under DDP each process keeps its own first ones; the batches list
    users by increasing id, so a single process's first batches are those with the lowest
    first user among all processes' (a batch the sampler repeated counts once)."""

    def __init__(self, batches: int = 4) -> None:
        self.batches = batches
        self.reset()

    def reset(self) -> None:
        self.queries: list[Tensor] = []  # [B, D] each
        self.users: list[Tensor] = []  # [B] each

    def add(self, query: Tensor, users: Tensor) -> None:
        """Keep ``query`` ``[B, D]`` of the batch of ``users`` ``[B]`` if fewer than ``batches`` are kept."""
        if len(self.queries) < self.batches:
            self.queries.append(query.detach())
            self.users.append(users.detach())

    def vectors(self, device: torch.device) -> Tensor | None:
        """``[N, D]`` the kept queries (under DDP, the first batches of all processes), or None."""
        if world_size() == 1:
            return torch.cat(self.queries) if self.queries else None
        local = [(int(u[0]), q.cpu()) for u, q in zip(self.users, self.queries)]
        batches = dict(pair for part in all_gather_objects(local) for pair in part)  # first user -> [B, D]
        first = sorted(batches)[: self.batches]
        return torch.cat([batches[u] for u in first]).to(device) if first else None
