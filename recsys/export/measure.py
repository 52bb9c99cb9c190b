"""The export's check and measurements: pure functions of arrays, indexes and modules.

* :func:`score_check` - the exported queries reproduce the checkpoint's scores.
* :func:`topk_check` - the exact index returns torch's top-k, ties aside.
* :func:`recall_at_k` - the served index's top-k against the exact top-k.
* :func:`latency` - median milliseconds of a call at batch 1 and at a large batch.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np
import torch
from torch import Tensor


def score_check(exported: Tensor, reference: Tensor, atol: float) -> dict:
    """exported, reference ``[B, I]`` scores -> the largest absolute difference and whether
    it is within ``atol``."""
    diff = (exported - reference).abs()  # [B, I]
    worst = float(diff.max())
    return {"rows": int(exported.shape[0]), "items": int(exported.shape[1]), "max_abs_diff": worst,
            "max_abs_score": float(reference.abs().max()), "atol": atol, "passed": worst <= atol}


def topk_check(scores: Tensor, index_ids: np.ndarray, k: int) -> dict:
    """Whether the index's top-``k`` ids ``[B, k]`` are torch's top-``k`` of ``scores``
    ``[B, I]``, ties aside: every id the index returns must score at least the ``k``-th
    best score minus a tie tolerance (``1e-5 * max(1, |k-th score|)``: the index and torch
    sum the products in another order). Also reports the plain set overlap."""
    top = scores.topk(k, dim=1)  # [B, k]
    kth = top.values[:, -1:]  # [B, 1]
    tol = 1e-5 * kth.abs().clamp(min=1)  # [B, 1]
    ids = torch.from_numpy(index_ids).long()  # [B, k]
    valid = ids >= 0  # faiss returns -1 when it finds fewer than k
    got = scores.gather(1, ids.clamp(min=0))  # [B, k] torch's score of each returned id
    outside = (~valid) | (got < kth - tol)  # [B, k] returned, but clearly below the k-th
    overlap = _overlap(ids, top.indices)  # [B]
    return {"rows": int(scores.shape[0]), "k": k, "mean_overlap": float(overlap.mean()),
            "rows_identical": int((overlap == 1).sum()), "beyond_ties": int(outside.sum()),
            "passed": bool(not outside.any())}


def _overlap(a: Tensor, b: Tensor) -> Tensor:
    """a, b ``[B, k]`` ids -> ``[B]`` the share of ``b``'s ids that ``a`` holds."""
    return (a.unsqueeze(2) == b.unsqueeze(1)).any(1).float().mean(1)  # [B]


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """The mean share of each query's exact top-k that the approximate top-k holds
    (``[Q, k]`` each)."""
    approx, exact = torch.from_numpy(approx_ids), torch.from_numpy(exact_ids)
    shares = [_overlap(a, e) for a, e in zip(approx.split(2048), exact.split(2048))]  # bounded [2048, k, k] memory
    return float(torch.cat(shares).mean())


def latency(call: Callable[[slice], object], n: int, single_repeats: int, batch_size: int, batch_repeats: int) -> dict:
    """Median wall-clock milliseconds of ``call(rows)``: over ``single_repeats`` single
    rows (the first ones of ``n``, cycling) and over ``batch_repeats`` batches of
    ``batch_size`` rows (capped at ``n``). One untimed call first warms caches."""
    call(slice(0, 1))
    single = [_ms(call, slice(i % n, i % n + 1)) for i in range(single_repeats)]
    size = min(batch_size, n)
    batch = [_ms(call, slice(0, size)) for _ in range(batch_repeats)]
    batch_ms = statistics.median(batch)
    return {"batch_1_ms_per_query": statistics.median(single), "batch_size": size,
            "batch_ms_per_batch": batch_ms, "batch_ms_per_query": batch_ms / size,
            "single_repeats": single_repeats, "batch_repeats": batch_repeats}


def _ms(call: Callable[[slice], object], rows: slice) -> float:
    start = time.perf_counter()
    call(rows)
    return (time.perf_counter() - start) * 1000


def threads() -> dict:
    """The threads torch and faiss use (latency depends on them)."""
    import faiss

    return {"torch": torch.get_num_threads(), "faiss": faiss.omp_get_max_threads()}
