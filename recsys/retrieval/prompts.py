"""Prompts that describe a user's history to a text-generating recommender.

:class:`PromptGenerator` turns a history of item ids (the project's 0-based ids, oldest
first) into the prompt an LLM reads before writing a description of the next item; the
reward service then scores that description against the real next item.
"""

from __future__ import annotations

from collections.abc import Sequence

from recsys.data.texts import ItemTexts
from recsys.errors import ConfigError

NO_TEXT = "(no description)"  # an item whose chosen fields are all empty


class PromptGenerator:
    """``history -> prompt``: the last ``k`` items, a line naming the most recent one, and
    the task.

    For ml1m with ``k=2`` and the history ``[.., 2, 0]``::

        The user's most recent items, oldest first (the last 2 of 12):
        1. Forrest Gump (1994) | Comedy, Romance, War
        2. Raiders of the Lost Ark (1981) | Action, Adventure
        Most recent: Raiders of the Lost Ark (1981)
        Describe the next item this user will want: its title and genres.

    Args:
        item_texts: the dataset's item texts (``Dataset.item_texts``).
        k: number of most recent items listed (>= 1).
        fields: the fields of each item line, in order; default the texts' own ``order``
            (e.g. title, brand, categories). The first one names the most recent item.
        task: the last line; default asks for the chosen fields of the next item.
    """

    def __init__(
        self, item_texts: ItemTexts, k: int = 10, fields: Sequence[str] | None = None, task: str | None = None
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"PromptGenerator k must be an integer >= 1 (items listed per prompt), got {k!r}")
        names = tuple(item_texts.order if fields is None else fields)
        unknown = [name for name in names if name not in item_texts.fields]
        if unknown or not names:
            listed = ", ".join(map(repr, unknown))
            what = f"unknown item text field(s) {listed}" if unknown else "no item text field chosen"
            raise ConfigError(
                f"{what} for {item_texts.dataset}: available fields are {', '.join(item_texts.fields) or 'none'}"
            )
        self.item_texts, self.k, self.fields = item_texts, k, names
        self.task = task if task is not None else f"Describe the next item this user will want: its {_listing(names)}."

    def line(self, item: int, fields: tuple[str, ...] | None = None) -> str:
        """One item's chosen ``fields`` (default all chosen) joined on one line."""
        if not 0 <= item < self.item_texts.n_items:
            raise IndexError(f"item id {item} is outside [0, {self.item_texts.n_items}) of {self.item_texts.dataset}")
        text = self.item_texts.text(item, self.fields if fields is None else fields)
        return " ".join(text.split()) or NO_TEXT  # one line, whatever the source held

    def __call__(self, history: Sequence[int]) -> str:
        """The prompt for a history of item ids, oldest first."""
        history = [int(i) for i in history]
        if not history:
            return f"The user has no history yet: there are no items to show.\n{self.task}"
        recent = history[-self.k :]
        lines = [f"The user's most recent items, oldest first (the last {len(recent)} of {len(history)}):"]
        lines += [f"{n}. {self.line(item)}" for n, item in enumerate(recent, 1)]
        name = self.line(recent[-1], self.fields[:1])
        lines.append(f"Most recent: {name if name != NO_TEXT else self.line(recent[-1])}")
        lines.append(self.task)
        return "\n".join(lines)


def _listing(names: tuple[str, ...]) -> str:
    """``title``; ``title and genres``; ``title, brand and categories``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"

