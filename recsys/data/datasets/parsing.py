"""Fast, strict parsing helpers shared by the dataset readers.

The whole-file fast paths use pandas' C parser or numpy on the raw bytes. When a fast path
fails, a line scan finds the first bad line, so that every problem becomes a one-line
:class:`~recsys.errors.DataError` naming the file, the 1-based line and the offending text.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from recsys.data.interactions import Interactions
from recsys.errors import DataError

_INT = re.compile(r"[+-]?\d+")
_WS_TO_NEWLINE = bytes.maketrans(bytes(range(33)), b"\n" * 33)  # space and control bytes


def malformed(path: Path | str, line_no: int, text: str, expected: str) -> DataError:
    """The standard error for a line that cannot be parsed."""
    shown = text.strip()
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return DataError(
        f"malformed line {line_no} in {path}: expected {expected}, got {shown!r}; "
        f"fix or re-download the file"
    )


def no_interactions(path: Path | str) -> DataError:
    return DataError(f"{path} has no interactions (the file is empty or holds no events); fix or replace it")


def line_text(path: Path | str, line_no: int, encoding: str = "utf-8") -> str:
    """Text of the 1-based line ``line_no`` (used to build error messages only)."""
    with open(path, encoding=encoding, errors="replace", newline="\n") as fh:
        for number, line in enumerate(fh, 1):
            if number == line_no:
                return line
    return ""


def _ints_ok(tokens: list[str], n_fields: int | None, low: int | None) -> bool:
    if (n_fields is not None and len(tokens) != n_fields) or not all(map(_INT.fullmatch, tokens)):
        return False
    low = -(2**63) if low is None else low
    return all(low <= int(t) < 2**63 for t in tokens)  # in range and fits int64


def _first_bad_line(path: Path, n_fields: int | None, low: int | None, expected: str) -> DataError:
    """The error for the first non-blank line that is not ``n_fields`` integers >= ``low``."""
    with open(path, encoding="utf-8", errors="replace", newline="\n") as fh:
        for number, line in enumerate(fh, 1):
            tokens = line.split()
            if tokens and not _ints_ok(tokens, n_fields, low):
                return malformed(path, number, line, expected)
    return DataError(f"could not parse {path} as {expected}; fix or re-download the file")


def read_int_columns(path: Path | str, n_fields: int, expected: str, low: int | None = None) -> np.ndarray:
    """Read a whitespace-separated file of ``n_fields`` integers per line (blank lines skipped).

    Args:
        path: the file.
        n_fields: integers per line.
        expected: what a line should hold, for error messages.
        low: smallest valid value (None: no bound).

    Returns:
        ``[N, n_fields]`` int64 array, one row per non-blank line.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(
            path, sep=r"\s+", header=None, names=list(range(n_fields)), index_col=False,
            dtype=np.int64, engine="c", quoting=csv.QUOTE_NONE,
        )
    except pd.errors.EmptyDataError:
        raise no_interactions(path) from None
    except (ValueError, OverflowError, pd.errors.ParserError):  # bad token or field count
        raise _first_bad_line(path, n_fields, low, expected) from None
    values = frame.to_numpy(dtype=np.int64)
    if values.shape[0] == 0:
        raise no_interactions(path)
    if low is not None and (values < low).any():
        raise _first_bad_line(path, n_fields, low, expected)
    return values


def read_sequences(
    path: Path | str, first_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read ``user item item ...`` lines (one user per line, items in order).

    Token counts come from numpy on the raw bytes and the values from one pandas C-parser
    pass over the file with every separator turned into a newline: no per-line Python.

    Args:
        path: the file.
        first_id: smallest valid user and item id (0 or 1); smaller ids raise a DataError,
            as does a user on two lines.

    Returns:
        ``(line_users, user, item, position)``: the user of every non-blank line ``[L]``
        (a line may hold a user and no item), then one entry per event ``[E]`` with the
        event's position inside its line. Ids are returned as in the file.
    """
    path = Path(path)
    expected = f"'user item item ...' integers >= {first_id}"
    raw = path.read_bytes()
    data = np.frombuffer(raw, np.uint8)
    space = data <= 32
    token_start = np.flatnonzero(~space & np.concatenate(([True], space[:-1])))  # [T]
    if token_start.size == 0:
        raise no_interactions(path)
    newline = np.flatnonzero(data == 10)
    per_line = np.bincount(np.searchsorted(newline, token_start), minlength=newline.size + 1)
    line_no = np.flatnonzero(per_line) + 1  # [L] 1-based numbers of the non-blank lines
    counts = per_line[line_no - 1]  # [L] integers on each of them
    try:
        frame = pd.read_csv(
            io.BytesIO(raw.translate(_WS_TO_NEWLINE)), header=None, dtype=np.int64,
            engine="c", quoting=csv.QUOTE_NONE,
        )
        values = frame.to_numpy(dtype=np.int64)[:, 0]
        if frame.shape != (token_start.size, 1):  # e.g. a token like "1,2"
            raise ValueError("token count mismatch")
    except (ValueError, OverflowError, pd.errors.ParserError):
        raise _first_bad_line(path, None, first_id, expected) from None
    if (values < first_id).any():
        raise _first_bad_line(path, None, first_id, expected)
    first = np.cumsum(counts) - counts  # [L] index of each line's user token
    line_users = values[first]
    is_item = np.ones(values.size, dtype=bool)
    is_item[first] = False
    n_items = counts - 1  # [L]
    user = np.repeat(line_users, n_items)
    position = np.arange(user.size) - np.repeat(np.cumsum(n_items) - n_items, n_items)
    order = np.argsort(line_users, kind="stable")
    repeated = np.flatnonzero(line_users[order][1:] == line_users[order][:-1])
    if repeated.size:
        number = int(line_no[order[repeated[0] + 1]])
        raise malformed(path, number, line_text(path, number), "each user on one line only")
    return line_users, user, values[is_item], position


def positions(user: np.ndarray) -> np.ndarray:
    """Position of each event among its user's events, in the given order."""
    order = np.argsort(user, kind="stable")
    sorted_user = user[order]
    start = np.concatenate(([0], np.flatnonzero(sorted_user[1:] != sorted_user[:-1]) + 1))
    sizes = np.diff(np.concatenate((start, [user.size])))
    out = np.empty_like(user)
    out[order] = np.arange(user.size) - np.repeat(start, sizes)
    return out


def remap(values: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map arbitrary tokens to contiguous ids ``0..n-1`` in sorted token order.

    Strings that all look like integers are sorted and returned as numbers ("2" before "10").

    Returns:
        ``(codes, tokens)``: ``[N]`` int64 ids and the ``[n]`` distinct tokens by id.
    """
    codes, tokens = pd.factorize(pd.Series(values))  # order of first appearance
    tokens = pd.Series(tokens)
    if tokens.dtype == object or pd.api.types.is_string_dtype(tokens.dtype):
        numbers = pd.to_numeric(tokens, errors="coerce")
        if not numbers.isna().any() and (numbers == np.floor(numbers)).all():
            tokens = numbers.astype(np.int64)
    try:
        order = np.argsort(tokens.to_numpy(), kind="stable")
    except TypeError:  # mixed types that do not compare: sort their text instead
        order = np.argsort(tokens.astype(str).to_numpy(), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[codes].astype(np.int64), tokens.to_numpy()[order]


def pad_lists(lists: list[list[int]]) -> Tensor:
    """``[N, L]`` int64 tensor of ragged lists, right-padded with ``-1`` (``L >= 1``)."""
    lengths = np.fromiter(map(len, lists), np.int64, len(lists))
    width = max(int(lengths.max()) if lengths.size else 0, 1)
    out = np.full((len(lists), width), -1, dtype=np.int64)
    row = np.repeat(np.arange(len(lists)), lengths)
    col = np.arange(row.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[row, col] = [value for values in lists for value in values]
    return torch.from_numpy(out)


def read_item_attributes(path: Path | str, n_items: int, first_id: int = 1) -> tuple[Tensor, int]:
    """Read an S3-Rec ``item2attributes`` JSON file (``{"item id": [attribute ids]}``).

    Args:
        path: the JSON file.
        n_items: items are ``first_id..first_id + n_items - 1`` in the file.
        first_id: smallest item id and smallest attribute id in the file (S3-Rec: 1).

    Returns:
        ``([n_items, L] int64 0-based attribute ids padded with -1, number of attributes)``.
        Repeated attributes of an item are kept once, in first-seen order; items missing
        from the file get an all ``-1`` row.
    """
    path = Path(path)
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(
            f"malformed JSON in {path} at line {exc.lineno} column {exc.colno}: {exc.msg}; "
            f"fix or re-download the file"
        ) from None
    if not isinstance(mapping, dict):
        raise DataError(f"malformed {path}: expected a JSON object of item id -> attribute ids")
    lists: list[list[int]] = [[] for _ in range(n_items)]
    for key, attrs in mapping.items():
        if not (_INT.fullmatch(key) and first_id <= int(key) < first_id + n_items):
            raise DataError(
                f"malformed {path}: key {key[:20]!r} is not an item id in "
                f"{first_id}..{first_id + n_items - 1}; fix or re-download the file"
            )
        if not isinstance(attrs, list) or not all(type(a) is int and a >= first_id for a in attrs):
            raise DataError(
                f"malformed {path}: item {key} has {str(attrs)[:40]!r}, expected a list of "
                f"attribute ids >= {first_id}; fix or re-download the file"
            )
        lists[int(key) - first_id] = [a - first_id for a in dict.fromkeys(attrs)]
    table = pad_lists(lists)
    return table, int(table.max()) + 1 if table.numel() else 0


def make_interactions(
    user: np.ndarray, item: np.ndarray, time: np.ndarray, n_users: int, n_items: int, **kwargs
) -> Interactions:
    """Interactions sorted by (user, time), keeping the given order among ties.

    Extra keyword arguments (``has_timestamps``, features...) go to :class:`Interactions`.
    """
    user, item, time = (np.asarray(a, dtype=np.int64) for a in (user, item, time))
    step = np.diff(user)
    if not ((step >= 0).all() and ((step > 0) | (np.diff(time) >= 0)).all()):
        order = np.lexsort((time, user))  # stable
        user, item, time = user[order], item[order], time[order]
    return Interactions(
        user=torch.from_numpy(user.copy()),
        item=torch.from_numpy(item.copy()),
        time=torch.from_numpy(time.copy()),
        n_users=int(n_users),
        n_items=int(n_items),
        **kwargs,
    )
