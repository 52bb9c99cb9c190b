"""Item embeddings, computed once per (item texts, encoder) and kept on disk."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from recsys.errors import DataError
from recsys.retrieval.encoders.base import TextEncoder, check_texts

log = logging.getLogger(__name__)
LAYOUT = "u1"  # in the file name: rows of distinct texts shared (encode_unique); older files are not read


def texts_sha256(texts: list[str]) -> str:
    """sha256 of an unambiguous serialization of ``texts`` (JSON: order, boundaries and
    every character count, so ``["a b"]`` and ``["a", "b"]`` differ)."""
    return hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode("utf-8")).hexdigest()


def cache_path(texts: list[str], encoder: TextEncoder, cache_dir: Path | str) -> Path:
    """``<cache_dir>/<fingerprint>-<sha256(texts)[:16]>.pt``."""
    safe = re.sub(r"[^\w.,+=-]", "_", encoder.fingerprint())
    return Path(cache_dir) / f"{safe}-{LAYOUT}-{texts_sha256(texts)[:16]}.pt"


def encode_unique(texts: list[str], encoder: TextEncoder, progress: bool = True) -> Tensor:
    """``[N, D]`` embeddings with every distinct text encoded once, so that items with the
    same text get bit-identical rows. A batched model's output depends slightly on what
    else is in the batch (padding length); without this, two items with the same text
    would differ in the last bits, and ties, which the ranking breaks pessimistically,
    would be broken at random instead (measured: MiniLM's oracle reward on beauty exceeded
    the tie ceiling, 0.2963 > 0.2940). It also skips the repeated work (beauty: 3,087
    distinct texts for 12,101 items)."""
    index: dict[str, int] = {}
    rows = torch.tensor([index.setdefault(t, len(index)) for t in texts], dtype=torch.long)  # [N]
    return encoder.encode(list(index), progress=progress)[rows]  # [N, D]


def item_embeddings(texts: list[str], encoder: TextEncoder, cache_dir: Path | str | None) -> Tensor:
    """The embeddings of every item's text, from the cache when it has them.

    A miss encodes the texts (with a progress bar) and writes the file atomically (a
    temporary file renamed into place), so a run killed mid-write leaves no file that looks
    complete. A file that cannot be read, or holds other texts, another encoder or the wrong
    shape, is recomputed with one warning; a cache that cannot be written costs a warning.

    Args:
        texts: ``[n_items]`` item texts, by item id.
        encoder: the text encoder; its :meth:`~TextEncoder.fingerprint` is part of the key.
        cache_dir: folder of the cache files (created when missing); None encodes without caching.

    Returns:
        ``[n_items, D]`` float32, the rows of ``encoder.encode`` of each distinct text
        (:func:`encode_unique`: equal texts get identical rows).

    Raises:
        DataError: ``texts`` is not a non-empty list of strings.
    """
    texts = check_texts(texts, what="item texts")
    if not texts:
        raise DataError("item texts are empty: there are no items to embed")
    if cache_dir is None:
        return encode_unique(texts, encoder)
    path = cache_path(texts, encoder, cache_dir)
    sha = texts_sha256(texts)
    if path.exists():
        cached = _read(path, sha, encoder, len(texts))
        if cached is not None:
            log.info("item embeddings: cache hit %s (%d x %d)", path, *cached.shape)
            return cached
    log.info("item embeddings: cache miss, encoding %d texts with %s", len(texts), encoder.fingerprint())
    embeddings = encode_unique(texts, encoder)  # [n_items, D]
    try:
        _write_atomic(path, {"fingerprint": encoder.fingerprint(), "texts_sha256": sha, "embeddings": embeddings})
        log.info("item embeddings: cached in %s", path)
    except OSError as exc:
        log.warning("item embeddings: could not write the cache file %s (%s); going on without it", path, exc)
    return embeddings


def _read(path: Path, sha: str, encoder: TextEncoder, n: int) -> Tensor | None:
    """The cached ``[n, D]`` tensor, or None (with one warning) when the file is not a
    complete, matching cache entry."""
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
        embeddings = entry["embeddings"]
        problem = (
            "it holds other texts" if entry.get("texts_sha256") != sha
            else "it was made by another encoder" if entry.get("fingerprint") != encoder.fingerprint()
            else f"it holds {type(embeddings).__name__}, not a tensor" if not isinstance(embeddings, Tensor)
            else f"its shape is {list(embeddings.shape)}, not [{n}, {encoder.dim}]"
            if tuple(embeddings.shape) != (n, encoder.dim)
            else "it holds NaN or infinite values" if not torch.isfinite(embeddings).all()
            else None
        )
    except Exception as exc:  # noqa: BLE001 - any unreadable file (truncated, not a zip, not a dict) is a miss
        problem = f"it cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    if problem:
        log.warning("item embeddings: ignoring the cache file %s, %s; recomputing it", path, problem)
        return None
    return embeddings.to(torch.float32)


def _write_atomic(path: Path, entry: dict) -> None:
    """``torch.save`` into a temporary file of the same folder, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(entry, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
