"""Item texts: what each item is called, for text encoders and prompts.

A dataset that has metadata returns an :class:`ItemTexts` from ``Dataset.item_texts``:
named fields (``title``, ``genres``, ``brand``, ``categories``, ...), one string per item
id (the same 0-based ids as the dataset's interactions, ``""`` where a field is unknown).
The text of an item is its non-empty fields joined with `` | `` in ``order``
(ml1m: ``Toy Story (1995) | Animation, Children's, Comedy``). An item with no known field
has the empty text ``""``: :meth:`ItemTexts.n_empty` counts those, and a reward service
should report them rather than score them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

SEPARATOR = " | "


@dataclass(frozen=True)
class ItemTexts:
    """Per-item text fields of one dataset.

    Attributes:
        dataset: the dataset's name (``ml1m``, ``beauty``, ...).
        fields: field name -> ``[n_items]`` strings (``""`` where unknown).
        order: the fields that make up :meth:`texts`, in order.
        source: where the texts came from (file names), for logs and the README.
    """

    dataset: str
    fields: dict[str, list[str]]
    order: tuple[str, ...]
    source: str = ""

    def __post_init__(self) -> None:
        lengths = {name: len(values) for name, values in self.fields.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"item text fields of {self.dataset} differ in length: {lengths}")
        unknown = [name for name in self.order if name not in self.fields]
        if unknown:
            raise ValueError(f"item text order names unknown fields {unknown}; fields: {list(self.fields)}")

    @property
    def n_items(self) -> int:
        return len(next(iter(self.fields.values()))) if self.fields else 0

    def text(self, item: int, fields: tuple[str, ...] | None = None) -> str:
        """The text of one item: its non-empty ``fields`` (default ``order``) joined."""
        names = self.order if fields is None else fields
        return SEPARATOR.join(v for v in (self.fields[n][item] for n in names) if v)

    def texts(self, fields: tuple[str, ...] | None = None) -> list[str]:
        """``[n_items]`` texts, one per item id."""
        return [self.text(i, fields) for i in range(self.n_items)]

    def n_empty(self) -> int:
        """Number of items whose text is ``""`` (no field known)."""
        return sum(1 for i in range(self.n_items) if not self.text(i))

    def n_distinct(self) -> int:
        """Number of distinct texts (``""`` included when some item has it)."""
        return len(set(self.texts()))

    def summary(self) -> str:
        """One line for logs: items, empty texts, shared texts, distinct texts."""
        return (
            f"{self.dataset}: {self.n_items:,} item texts ({', '.join(self.order)}) from {self.source or '?'}; "
            f"{self.n_empty():,} empty, {self.n_shared():,} shared with another item, {self.n_distinct():,} distinct"
        )

    def n_shared(self) -> int:
        """Number of items whose text is identical to another item's text.

        Ties are ranked pessimistically, so an item that shares its text with ``m`` others
        can never rank above rank ``m + 1`` for a text encoder: this bounds the reward.
        """
        counts = Counter(self.texts())
        return sum(c for c in counts.values() if c > 1)


def join_names(names: list[str] | tuple[str, ...]) -> str:
    """``"a, b"``: the non-empty names, each kept once in first-seen order."""
    return ", ".join(dict.fromkeys(n for n in names if n))
