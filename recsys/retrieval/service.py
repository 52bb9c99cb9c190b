"""``RetrievalService``: generated texts -> cosine scores against item text embeddings.

One service holds a text encoder and, per dataset, the L2-normalized embedding of every
item's text (``[n_items, D]``, computed once and cached on disk). A call embeds the
generated texts and returns their cosine similarity with the items: either every item
(full catalogue, a user's history masked) or only each row's target and pre-sampled
negatives. The same class runs in-process (tests, notebooks) and as a named Ray actor
(:mod:`recsys.serve`), so many trainer processes share one encoder.

Item ids are the project's 0-based ids, as in the dataset's interactions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from recsys.errors import ConfigError
from recsys.retrieval.cache import item_embeddings
from recsys.retrieval.encoders.base import TextEncoder

log = logging.getLogger(__name__)

IdRows = Sequence[Sequence[int]] | Tensor


class RetrievalService:
    """Scores texts against the items of one or more datasets.

    Args:
        encoder: the text encoder shared by queries and items.
        item_texts: dataset name -> ``[n_items]`` item texts (index = item id).
        cache_dir: where item embeddings are cached (None: recompute every time).
        item_vectors: dataset name -> ``[n_items, D]`` ready item embeddings (tests,
            precomputed catalogues), used as they are.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        item_texts: Mapping[str, Sequence[str]] | None = None,
        cache_dir: str | Path | None = None,
        item_vectors: Mapping[str, Tensor] | None = None,
    ) -> None:
        self.encoder = encoder
        self.catalogs: dict[str, Tensor] = {}
        for name, vectors in (item_vectors or {}).items():
            self.catalogs[name] = vectors.float()  # [I, D]
        for name, texts in (item_texts or {}).items():
            self.catalogs[name] = item_embeddings(list(texts), encoder, cache_dir)  # [I, D]
        if not self.catalogs:
            raise ConfigError("a RetrievalService needs at least one dataset with item texts")
        for name, vectors in self.catalogs.items():
            log.info("%s: %d items, %d-dimensional %s embeddings", name, vectors.shape[0], vectors.shape[1], encoder.name)

    def datasets(self) -> dict[str, int]:
        """Dataset name -> number of items (also a cheap readiness probe for a Ray actor)."""
        return {name: int(vectors.shape[0]) for name, vectors in self.catalogs.items()}

    def calculate_reward(
        self,
        texts: Sequence[str],
        dataset_name: str | None = None,
        targets: Sequence[int] | Tensor | None = None,
        neg_items: IdRows | None = None,
        histories: Sequence[Sequence[int]] | None = None,
    ) -> Tensor:
        """Cosine scores of ``texts`` against items.

        Args:
            texts: ``B`` generated texts (non-empty strings).
            dataset_name: which catalogue; may be omitted when the service holds one.
            targets: ``[B]`` target item ids (needed with ``neg_items``; in full mode they
                stay unmasked even when a history lists them).
            neg_items: ``[B, N]`` negative item ids per row (same ``N`` for every row, the
                target never among them).
            histories: ``B`` lists of item ids masked (``-inf``) in full mode.

        Returns:
            ``[B, 1 + N]`` float32 scores (column 0 the target, then the negatives in the
            given order) when ``neg_items`` is given, else ``[B, n_items]`` with each
            history's items at ``-inf`` except the row's target.
        """
        name, items = self._catalog(dataset_name)
        n_items = items.shape[0]
        texts = _check_texts(texts)
        b = len(texts)
        target = None if targets is None else _ids(targets, "targets", n_items, b).reshape(b)  # [B]
        if neg_items is not None:
            if target is None:
                raise ConfigError("neg_items needs targets: column 0 of the scores is each row's target")
            negs = _ids(neg_items, "neg_items", n_items, b)  # [B, N]
            if negs.dim() != 2:
                raise ConfigError(f"neg_items must be a [B, N] table of item ids, got shape {tuple(negs.shape)}")
            clash = (negs == target.unsqueeze(1)).any(1)  # [B]
            if bool(clash.any()):
                row = int(clash.nonzero()[0])
                raise ConfigError(
                    f"row {row}'s target {int(target[row])} is among its own neg_items; "
                    f"negatives must exclude the target"
                )
        queries = self.encoder.encode(texts)  # [B, D]
        if neg_items is not None:
            columns = torch.cat([target.unsqueeze(1), negs], 1)  # [B, 1 + N]
            return torch.einsum("bd,bnd->bn", queries, items[columns])  # [B, 1 + N]
        scores = queries @ items.T  # [B, I]
        if histories is not None:
            row, item = _history_pairs(histories, n_items, b)  # [H], [H]
            if target is not None:
                keep = item == target[row]  # [H] the target is never hidden
                row, item = row[~keep], item[~keep]
            scores[row, item] = float("-inf")
        return scores

    def _catalog(self, dataset_name: str | None) -> tuple[str, Tensor]:
        if dataset_name is None:
            if len(self.catalogs) != 1:
                raise ConfigError(f"dataset_name is needed: this service holds {', '.join(self.catalogs)}")
            dataset_name = next(iter(self.catalogs))
        if dataset_name not in self.catalogs:
            raise ConfigError(
                f"unknown dataset {dataset_name!r}: this service holds {', '.join(self.catalogs)}; "
                f"serve it too, e.g. python -m recsys.serve data=[ml1m,beauty]"
            )
        return dataset_name, self.catalogs[dataset_name]


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise ConfigError("texts must be a list of strings, got one string; wrap it in a list")
    texts = list(texts)
    if not texts:
        raise ConfigError("texts is empty: pass at least one generated text")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ConfigError(f"texts[{i}] is a {type(text).__name__}, not a string")
        if not text.strip():
            raise ConfigError(f"texts[{i}] is empty; an empty generation has nothing to embed (reward it 0 instead)")
    return texts


def _ids(values, what: str, n_items: int, b: int) -> Tensor:
    """Item ids as an int64 tensor with ``b`` rows, checked against ``[0, n_items)``."""
    if isinstance(values, Tensor):
        ids = values.long()
    else:
        values = list(values)
        if values and isinstance(values[0], (list, tuple, Tensor)):
            lengths = {len(row) for row in values}
            if len(lengths) > 1:
                raise ConfigError(
                    f"{what} is ragged: rows have {sorted(lengths)} items; every row needs the same number"
                )
        try:
            ids = torch.as_tensor(values, dtype=torch.long)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{what} must hold integer item ids ({exc})") from None
    if ids.shape[0] != b:
        raise ConfigError(f"{what} has {ids.shape[0]} rows but there are {b} texts; give one per text")
    _check_range(ids, what, n_items)
    return ids


def _check_range(ids: Tensor, what: str, n_items: int) -> None:
    bad = (ids < 0) | (ids >= n_items)
    if bool(bad.any()):
        value = int(ids[bad][0])
        raise ConfigError(f"{what} holds item id {value}, outside this dataset's ids 0..{n_items - 1}")


def _history_pairs(histories, n_items: int, b: int) -> tuple[Tensor, Tensor]:
    """``[H]`` rows and ``[H]`` items of every (row, history item) pair."""
    histories = list(histories)
    if len(histories) != b:
        raise ConfigError(f"histories has {len(histories)} rows but there are {b} texts; give one per text")
    lengths = torch.tensor([len(h) for h in histories], dtype=torch.long)  # [B]
    row = torch.repeat_interleave(torch.arange(b), lengths)  # [H]
    flat = [int(i) for h in histories for i in h]
    item = torch.tensor(flat, dtype=torch.long)  # [H]
    _check_range(item, "histories", n_items)
    return row, item
