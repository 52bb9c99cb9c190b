"""The text encoder contract shared by the hashing baseline and the sentence models."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor

from recsys.errors import DataError


class TextEncoder(ABC):
    """Maps texts to unit-norm float32 vectors, so that a dot product is a cosine.

    Subclasses set :attr:`name` and :attr:`dim` and implement :meth:`fingerprint` and
    :meth:`_encode`; :meth:`encode` checks the input and gives every blank text (empty or
    whitespace only) a zero row without asking the subclass, so a blank generated text
    scores 0 against every item rather than whatever a model makes of ``""``.

    Attributes:
        name: short name of the encoder (``hashing``, ``all-MiniLM-L6-v2``).
        dim: the embedding size ``D``.
    """

    name: str
    dim: int

    @abstractmethod
    def fingerprint(self) -> str:
        """The name plus every setting that changes the vectors (``hashing-v1-d256-w1,2-lower-logtf``);
        two encoders with the same fingerprint give the same vectors, so it keys caches.
        Settings that only change speed (batch size, device) are left out."""

    @abstractmethod
    def _encode(self, texts: list[str], progress: bool) -> Tensor:
        """Encode non-blank texts.

        Args:
            texts: ``N >= 1`` texts, none of them blank.
            progress: show a progress bar.

        Returns:
            ``[N, D]`` float32 CPU tensor, rows of unit norm (zero for a text without features).
        """

    def encode(self, texts: Sequence[str], progress: bool = False) -> Tensor:
        """Embed ``texts``.

        Args:
            texts: the texts; a sequence of ``str`` (a lone ``str`` is refused: it would be
                read as one text per character).
            progress: show a progress bar (for long item lists).

        Returns:
            ``[N, D]`` float32 CPU tensor; rows of unit L2 norm, zero rows for blank texts
            and texts with no features (never NaN).

        Raises:
            DataError: ``texts`` is not a sequence of strings.
        """
        texts = check_texts(texts, what=f"{type(self).__name__}.encode texts")
        out = torch.zeros(len(texts), self.dim, dtype=torch.float32)  # [N, D]
        keep = [i for i, t in enumerate(texts) if t.strip()]
        if keep:
            out[keep] = self._encode([texts[i] for i in keep], progress).to("cpu", torch.float32)  # [K, D]
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.fingerprint()})"


def check_texts(texts: object, what: str = "texts") -> list[str]:
    """``texts`` as a list, or a one-line :class:`DataError` if it is not a sequence of ``str``."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise DataError(f"{what} must be a list of strings, got {type(texts).__name__}")
    texts = list(texts)
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise DataError(f"{what} must be strings: entry {bad} is {type(texts[bad]).__name__} {texts[bad]!r:.60}")
    return texts
