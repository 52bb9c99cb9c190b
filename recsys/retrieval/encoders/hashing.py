"""Signed feature hashing of n-grams (Weinberger et al., "Feature Hashing for Large Scale
Multitask Learning", ICML 2009): a model-free text encoder."""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys.errors import ConfigError
from recsys.retrieval.encoders.base import TextEncoder

WORD = re.compile(r"\w+")  # unicode letters, digits and _; punctuation separates words
VERSION = 1  # bump when tokens or hashing change: it is part of the fingerprint, so caches miss


@lru_cache(maxsize=1 << 18)
def _hash64(feature: str) -> int:
    """A 64-bit hash of ``feature`` that is the same in every process and on every machine
    (Python's ``hash`` of a str is salted per process)."""
    return int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little")


def _ngram_sizes(value: object, key: str) -> tuple[int, ...]:
    sizes = (value,) if isinstance(value, int) else tuple(value) if isinstance(value, Iterable) else None
    if sizes is None or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes):
        raise ConfigError(f"HashingEncoder {key} must be a list of n-gram sizes >= 1, got {value!r}")
    return tuple(sorted(set(sizes)))


class HashingEncoder(TextEncoder):
    """Bag of hashed n-grams: each n-gram adds ``sign * weight`` to one of ``dim`` buckets.

    The bucket and the sign of an n-gram come from its blake2b hash (the sign makes
    collisions cancel in expectation instead of piling up); ``weight`` is the n-gram's
    count in the text, ``1 + ln(count)`` when ``sublinear_tf``. Rows are then L2-normalized,
    so the dot product of two rows is about the cosine of their n-gram count vectors: texts
    score by word overlap, nothing more (``animated`` does not match ``Animation``).

    Args:
        dim: number of buckets ``D``; collisions grow as texts get longer than ``~dim / 4``
            distinct n-grams.
        ngrams: word n-gram sizes (``(1, 2)``: words and pairs of adjacent words).
        char_ngrams: character n-gram sizes taken inside each word padded with spaces
            (``(3,)`` makes ``toys`` share ``" to"``, ``"toy"`` with ``toy``); empty for none.
        lowercase: lowercase the text first.
        sublinear_tf: weigh an n-gram by ``1 + ln(count)`` instead of its count.

    Shape:
        ``N`` texts -> ``[N, dim]``.
    """

    name = "hashing"

    def __init__(
        self,
        dim: int = 256,
        ngrams: Sequence[int] = (1, 2),
        char_ngrams: Sequence[int] = (),
        lowercase: bool = True,
        sublinear_tf: bool = True,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"HashingEncoder dim must be a positive int, got {dim!r}")
        self.dim = dim
        self.ngrams = _ngram_sizes(ngrams, "ngrams")
        self.char_ngrams = _ngram_sizes(char_ngrams, "char_ngrams")
        if not self.ngrams and not self.char_ngrams:
            raise ConfigError("HashingEncoder needs word ngrams or char_ngrams: both are empty")
        self.lowercase = bool(lowercase)
        self.sublinear_tf = bool(sublinear_tf)

    def fingerprint(self) -> str:
        parts = [f"{self.name}-v{VERSION}", f"d{self.dim}", "w" + ",".join(map(str, self.ngrams))]
        if self.char_ngrams:
            parts.append("c" + ",".join(map(str, self.char_ngrams)))
        parts.append("lower" if self.lowercase else "cased")
        parts.append("logtf" if self.sublinear_tf else "tf")
        return "-".join(parts)

    def features(self, text: str) -> list[str]:
        """The n-grams of one text (word n-grams joined by a space, character n-grams
        marked with a leading ``#`` so that the two kinds never hash alike)."""
        words = WORD.findall(text.lower() if self.lowercase else text)
        out = []
        for n in self.ngrams:
            out.extend(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
        for n in self.char_ngrams:
            for word in words:
                padded = f" {word} "
                out.extend("#" + padded[i : i + n] for i in range(len(padded) - n + 1))
        return out

    def _encode(self, texts: list[str], progress: bool) -> Tensor:
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        for row, text in enumerate(texts):
            for feature, count in Counter(self.features(text)).items():
                h = _hash64(feature)
                weight = 1.0 + math.log(count) if self.sublinear_tf else float(count)
                rows.append(row)
                cols.append(h % self.dim)  # the bucket: the hash's low bits
                vals.append(weight if h >> 63 else -weight)  # the sign: its top bit
        out = torch.zeros(len(texts), self.dim, dtype=torch.float32)  # [N, D]
        if rows:
            out.index_put_(  # one scatter; colliding features of a text add up
                (torch.tensor(rows), torch.tensor(cols)), torch.tensor(vals, dtype=torch.float32), accumulate=True
            )
        return F.normalize(out, dim=1)  # [N, D], a zero row stays zero
