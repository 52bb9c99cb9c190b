"""The faiss indexes of an export, one class per ``conf/export/index/*.yaml`` option.

Every index searches by inner product, the score of the exported vectors (a cosine model's
vectors are normalized at export, so its scores are inner products too). Each class builds
its index from the item vectors and says how it was built (``settings``, for
``manifest.json``); search-time settings (``nprobe``, ``efSearch``) are stored in the
index file by faiss and recorded in the manifest, for a server that sets them itself.
"""

from __future__ import annotations

import math

import numpy as np

from recsys.errors import ConfigError


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"index.{name} must be an integer >= 1, got {value!r}")
    return value


class FlatIndex:
    """Exact search: every item is scored (``faiss.IndexFlatIP``)."""

    name = "flat"

    def build(self, items: np.ndarray):
        """items ``[I, D]`` float32 -> the index, its rows the item ids ``0..I-1``."""
        import faiss

        index = faiss.IndexFlatIP(items.shape[1])
        index.add(items)
        return index

    def settings(self, n_items: int) -> dict:
        return {"type": self.name, "faiss": "IndexFlatIP", "metric": "inner_product"}


class IVFIndex:
    """Inverted lists (``faiss.IndexIVFFlat``, inner product): k-means puts the items into
    ``nlist`` lists; a query scores the items of its ``nprobe`` best lists.

    Args:
        nlist: number of lists; None: ``4 * sqrt(I)``, at most ``I / 39`` (faiss wants 39
            training points per list), at least 1.
        nprobe: lists searched per query (capped at ``nlist``).
    """

    name = "ivf"

    def __init__(self, nlist: int | None = None, nprobe: int = 16) -> None:
        self.nlist = None if nlist is None else _positive("nlist", nlist)
        self.nprobe = _positive("nprobe", nprobe)

    def lists(self, n_items: int) -> int:
        if self.nlist is None:
            return max(1, min(round(4 * math.sqrt(n_items)), n_items // 39))
        if self.nlist > n_items:
            raise ConfigError(f"index.nlist={self.nlist} is more lists than there are items ({n_items}); lower index.nlist")
        return self.nlist

    def build(self, items: np.ndarray):
        import faiss

        n_items, dim = items.shape
        nlist = self.lists(n_items)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(items)
        index.add(items)
        index.nprobe = min(self.nprobe, nlist)
        return index

    def settings(self, n_items: int) -> dict:
        nlist = self.lists(n_items)
        return {"type": self.name, "faiss": "IndexIVFFlat", "metric": "inner_product", "nlist": nlist,
                "nprobe": min(self.nprobe, nlist)}


class HNSWIndex:
    """A hierarchical navigable small-world graph (``faiss.IndexHNSWFlat``, inner product;
    Malkov & Yashunin, TPAMI 2018). The arguments keep faiss's names.

    Args:
        M: graph neighbours per item.
        efConstruction: candidate list size while building.
        efSearch: candidate list size per query.
    """

    name = "hnsw"

    def __init__(self, M: int = 32, efConstruction: int = 200, efSearch: int = 128) -> None:  # noqa: N803
        if isinstance(M, bool) or not isinstance(M, int) or M < 2:
            raise ConfigError(f"index.M must be an integer >= 2, got {M!r}")
        self.M = M
        self.efConstruction = _positive("efConstruction", efConstruction)
        self.efSearch = _positive("efSearch", efSearch)

    def build(self, items: np.ndarray):
        import faiss

        index = faiss.IndexHNSWFlat(items.shape[1], self.M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.efConstruction
        index.add(items)
        index.hnsw.efSearch = self.efSearch
        return index

    def settings(self, n_items: int) -> dict:
        return {"type": self.name, "faiss": "IndexHNSWFlat", "metric": "inner_product", "M": self.M,
                "efConstruction": self.efConstruction, "efSearch": self.efSearch}
