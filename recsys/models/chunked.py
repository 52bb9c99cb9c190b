"""Scores of every (query, item) pair in bounded memory, for models whose score is not a dot
product (NeuMF; later Wide & Deep): the network must run on each pair, so scoring ``B``
users against ``I`` items would otherwise hold ``B x I x H`` hidden activations at once.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from recsys.errors import ConfigError

# block(rows, cols) -> [len(rows), len(cols)] scores of those queries against those items
Block = Callable[[slice, slice], Tensor]


def check_eval_chunk(max_pairs: object) -> int:
    """``max_pairs`` if it is a positive integer, else a one-line error."""
    if isinstance(max_pairs, bool) or not isinstance(max_pairs, int) or max_pairs < 1:
        raise ConfigError(f"model.eval_chunk must be an integer >= 1 (pairs scored at once), got {max_pairs!r}")
    return max_pairs


def chunk_shape(n_rows: int, n_cols: int, max_pairs: int) -> tuple[int, int]:
    """Tile ``(rows, cols)`` of at most ``max_pairs`` cells: whole rows of all columns when
    a row fits (``rows = max_pairs // n_cols``), else one row and ``max_pairs`` columns."""
    if n_cols <= max_pairs:
        return max(1, min(n_rows, max_pairs // max(n_cols, 1))), n_cols
    return 1, max_pairs


def score_in_chunks(block: Block, n_rows: int, n_cols: int, max_pairs: int) -> Tensor:
    """The ``[n_rows, n_cols]`` score matrix, computed tile by tile with ``block``.

    Each call of ``block`` scores at most ``max_pairs`` pairs, vectorized inside the tile,
    so peak memory is that of one tile's activations (plus the output). The loop is over
    tiles, not users: with ``max_pairs >= n_cols`` a tile holds ``max_pairs // n_cols``
    whole users. The result does not depend on ``max_pairs`` (up to float rounding of the
    matmuls inside ``block``).

    Args:
        block: ``block(rows, cols)`` -> ``[len(rows), len(cols)]`` scores.
        n_rows: number of queries ``B``.
        n_cols: number of items ``I``.
        max_pairs: the most pairs one tile may hold (``model.eval_chunk``).

    Returns:
        ``[B, I]`` scores.
    """
    rows, cols = chunk_shape(n_rows, n_cols, check_eval_chunk(max_pairs))
    if rows >= n_rows and cols >= n_cols:
        return block(slice(0, n_rows), slice(0, n_cols))  # [B, I] in one tile
    stripes = []
    for r in range(0, n_rows, rows):
        tiles = [block(slice(r, r + rows), slice(c, c + cols)) for c in range(0, n_cols, cols)]  # [b, c] each
        stripes.append(tiles[0] if len(tiles) == 1 else torch.cat(tiles, dim=1))  # [b, I]
    return torch.cat(stripes, dim=0)  # [B, I]
