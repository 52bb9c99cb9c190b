"""A user's own interaction log from a CSV, TSV or Parquet file."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recsys.data.datasets.base import Dataset
from recsys.data.datasets.parsing import make_interactions, no_interactions, positions, remap
from recsys.data.interactions import RawData
from recsys.data.texts import ItemTexts
from recsys.errors import ConfigError, DataError

_SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}


class CustomDataset(Dataset):
    """Interactions read from one table with a user column, an item column and optionally a
    time column.

    User and item tokens of any type are mapped to contiguous ids in sorted token order
    (integer-looking strings sort as numbers). Numeric times are kept as int64 (fractional
    parts are dropped after sorting on the exact values); text or datetime times are parsed
    as dates and turned into Unix seconds. Without a time column the row order is the
    time order and ``time`` is the position among the user's rows (``has_timestamps=False``).
    There is no statistics check.

    Args:
        path: the file, absolute or relative to the data directory.
        user_col, item_col: column names.
        time_col: timestamp column, or None to use the row order.
        sep: field separator; None infers it from the extension (``.csv`` -> ``,``,
            ``.tsv``/``.txt`` -> tab, ``.parquet``/``.pq`` -> Parquet).
        header: whether a text file has a header row. Without one, the first columns are
            taken to be user, item and (if ``time_col`` is set) time, in that order.
        item_text_path: a table of item texts (CSV, TSV or Parquet with a header, format
            from the extension): the item column ``item_col`` and text columns, one row per
            item (the first row of an item wins). Absolute, or relative to the data directory.
        item_text_cols: the text columns, in the order the item text joins them; None takes
            every column but ``item_col`` of ``item_text_path``. Set without
            ``item_text_path``, the columns are read from the events file (an item's first row).
        item_feature_cols: columns of the events file holding categorical item features
            (``Interactions.item_features``, e.g. for ``model=sasrec_context``), each named
            after its column. An item's value comes from its first row in the file (other
            rows are not checked); a text value is split on ``feature_sep`` into several
            values (genres ``Action|Comedy``), surrounding spaces are dropped, and a missing
            or empty value gives no value. Output: ``[n_items, V]`` int64 ids padded with
            ``-1`` (``V``: the most values of any item, at least 1).
        user_feature_cols: the same for users, from a user's first row: ``[n_users]`` int64
            ids, ``-1`` for missing. A user feature takes one value: a value that splits into
            several raises a :class:`DataError`. A name may not be both an item and a user
            feature.
        feature_sep: the separator of multi-valued feature values. The values of a feature
            get ids ``0..K-1`` in sorted text order (``feature_cardinality`` is ``K``).
        download: unused (there is nothing to download); kept for a uniform signature.
    """

    name = "custom"
    subdir = ""

    def __init__(
        self,
        path: str,
        user_col: str = "user_id",
        item_col: str = "item_id",
        time_col: str | None = "timestamp",
        sep: str | None = None,
        header: bool = True,
        item_text_path: str | None = None,
        item_text_cols: list[str] | None = None,
        item_feature_cols: list[str] | None = None,
        user_feature_cols: list[str] | None = None,
        feature_sep: str = "|",
        download: bool = False,
    ) -> None:
        super().__init__(download=download)
        self.path, self.user_col, self.item_col, self.time_col = path, user_col, item_col, time_col
        self.sep, self.header = sep, header
        self.item_text_path = item_text_path
        if isinstance(item_text_cols, str):  # one column given as a bare name
            item_text_cols = [item_text_cols]
        self.item_text_cols = None if item_text_cols is None else [str(c) for c in item_text_cols]
        self.item_feature_cols, self.user_feature_cols = _names(item_feature_cols), _names(user_feature_cols)
        both = [c for c in self.item_feature_cols if c in self.user_feature_cols]
        if both:
            raise ConfigError(
                f"{', '.join(repr(c) for c in both)} is both an item and a user feature of the custom dataset "
                f"(feature names are shared); keep it in only one of data.dataset.item_feature_cols and "
                f"data.dataset.user_feature_cols"
            )
        self.feature_sep = str(feature_sep)

    @property
    def columns(self) -> list[str]:
        return [self.user_col, self.item_col] + ([self.time_col] if self.time_col else [])

    def load(self, data_dir: Path | str) -> RawData:
        frame, path, first_line = self._events(data_dir, extra=self.item_feature_cols + self.user_feature_cols)
        user, user_tokens = remap(frame[self.user_col])
        item, item_tokens = remap(frame[self.item_col])
        item_features, user_features, cardinality = {}, {}, {}
        for col in self.item_feature_cols:
            codes, cardinality[col], _ = self._feature(frame[col], item, len(item_tokens))
            item_features[col] = torch.from_numpy(codes)
        for col in self.user_feature_cols:
            codes, cardinality[col], rows = self._feature(frame[col], user, len(user_tokens))
            several = np.flatnonzero((codes[:, 1:] >= 0).any(1)) if codes.shape[1] > 1 else []
            if len(several):
                row = int(rows[several[0]])
                raise DataError(
                    f"{_where(row, first_line)} of {path} gives the user feature {col!r} several values "
                    f"({str(frame[col].iloc[row])[:40]!r} split on {self.feature_sep!r}), but a user feature takes one; "
                    f"change data.dataset.feature_sep or move {col!r} from data.dataset.user_feature_cols"
                )
            user_features[col] = torch.from_numpy(codes[:, 0].copy())
        if self.time_col is None:
            time = positions(user)  # row order within each user
        else:
            time = self._times(frame[self.time_col], path, first_line)
            order = np.lexsort((time, user))  # sort on the exact times before casting
            time = time[order] if time.dtype.kind == "i" else np.floor(time[order])
            user, item = user[order], item[order]
        inter = make_interactions(
            user, item, time, len(user_tokens), len(item_tokens), has_timestamps=self.time_col is not None,
            user_features=user_features, item_features=item_features, feature_cardinality=cardinality,
        )
        return RawData(interactions=inter)

    def _feature(self, column: pd.Series, owner: np.ndarray, n: int) -> tuple[np.ndarray, int, np.ndarray]:
        """``([n, V] int64 value ids padded with -1, number of values, [n] first row of each
        owner)`` of a feature column: each owner's (item's or user's) value is that of its
        first row, split on ``feature_sep``."""
        first = np.flatnonzero(~pd.Series(owner).duplicated().to_numpy())  # first row of each owner
        rows = np.empty(n, dtype=np.int64)
        rows[owner[first]] = first  # every owner has a row
        values = _strings(column.iloc[rows].reset_index(drop=True))  # [n], index = owner id
        parts = values.str.split(self.feature_sep, regex=False).explode().str.strip()
        parts = parts[parts.notna() & (parts != "")]
        parts = parts[~pd.MultiIndex.from_arrays([parts.index, parts.to_numpy()]).duplicated()]  # "a|a" once
        codes, vocabulary = pd.factorize(parts, sort=True)  # ids in sorted text order
        at = parts.index.to_numpy(np.int64)
        slot = pd.Series(at).groupby(at).cumcount().to_numpy()
        out = np.full((n, int(slot.max()) + 1 if slot.size else 1), -1, dtype=np.int64)
        out[at, slot] = codes
        return out, len(vocabulary), rows

    def item_texts(self, data_dir: Path | str) -> ItemTexts:
        """Texts from the columns ``item_text_cols`` of ``item_text_path`` or of the events file.

        Items are the ids of :meth:`load`; an item without a text row gets ``""``. Raises a
        :class:`DataError` when neither option is set (the dataset has no texts), or the
        text file or a column is missing.
        """
        if self.item_text_path is None and not self.item_text_cols:
            return super().item_texts(data_dir)
        events, events_path, _ = self._events(data_dir, extra=() if self.item_text_path else self.item_text_cols)
        _, tokens = remap(events[self.item_col])  # the item ids of load()
        if self.item_text_path is None:
            table, source, cols = events, events_path, list(self.item_text_cols or ())
        else:
            table, source, cols = self._text_table(data_dir)
        table = table[table[self.item_col].notna()]
        keys = _keys(table[self.item_col], tokens)
        first = ~keys.duplicated()  # the first row of an item wins
        rows = pd.Series(np.flatnonzero(first), index=keys[first])
        at = rows.reindex(_keys(pd.Series(tokens), tokens)).to_numpy()  # [I] row of each item, NaN if none
        fields = {col: _texts(table[col], at) for col in cols}
        return ItemTexts(self.name, fields, tuple(cols), source=source.name)

    def _text_table(self, data_dir: Path | str) -> tuple[pd.DataFrame, Path, list[str]]:
        """The table of ``item_text_path`` (all strings), its path and its text columns."""
        source = _resolve(self.item_text_path, data_dir)
        if not source.is_file():
            raise DataError(
                f"missing item text file {source} for the custom dataset: expected a table with the item column "
                f"{self.item_col!r} and text columns; check data.dataset.item_text_path (relative paths start at "
                f"paths.data_dir)"
            )
        table, _ = _read_table(source, None, True, None, no_rows=lambda: _no_texts(source))
        cols = self.item_text_cols or [c for c in table.columns if c != self.item_col]
        missing = [c for c in [self.item_col, *cols] if c not in table.columns]
        if missing or not cols:
            raise DataError(
                f"{source} has no column {', '.join(repr(c) for c in missing) or 'of text'}: found "
                f"{', '.join(repr(c) for c in table.columns)}; set data.dataset.item_col or "
                f"data.dataset.item_text_cols (null: every column but the item column)"
            )
        return table, source, cols

    def _events(self, data_dir: Path | str, extra: Iterable[str] = ()) -> tuple[pd.DataFrame, Path, int | None]:
        """The events table (needed columns and ``extra``) with no empty user or item, its
        path, and the file line of its first row (None for Parquet)."""
        path = _resolve(self.path, data_dir)
        if not path.is_file():
            raise DataError(
                f"missing file {path} for the custom dataset: expected a table with columns "
                f"{', '.join(self.columns)}; check data.dataset.path (relative paths start at paths.data_dir)"
            )
        frame, first_line = self._read(path, list(dict.fromkeys(c for c in extra if c not in self.columns)))
        if frame.empty:
            raise no_interactions(path)
        for col in (self.user_col, self.item_col):
            null = np.flatnonzero(frame[col].isna().to_numpy())
            if null.size:
                raise DataError(
                    f"{_where(int(null[0]), first_line)} of {path} has no {col}; "
                    f"fill or drop the rows with an empty {col}"
                )
        return frame, path, first_line

    def _read(self, path: Path, extra: list[str] | None = None) -> tuple[pd.DataFrame, int | None]:
        """The needed columns (and ``extra``), and the file line of the first row (None for Parquet)."""
        ids = (self.user_col, self.item_col) if self.header else (0, 1)  # read ids as text
        frame, first_line = _read_table(path, self.sep, self.header, ids, no_rows=lambda: no_interactions(path))
        if not self.header and first_line is not None:  # a text file without header
            names = self.columns[: frame.shape[1]]
            frame.columns = names + [str(c) for c in frame.columns[len(names):]]
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise DataError(
                f"{path} has no column {', '.join(repr(c) for c in missing)}: found "
                f"{', '.join(repr(c) for c in frame.columns)}; set data.dataset.user_col, data.dataset.item_col or "
                f"data.dataset.time_col (data.dataset.time_col=null uses the row order)"
            )
        missing = [c for c in extra or () if c not in frame.columns]
        if missing:
            if missing[0] in self.item_feature_cols:
                purpose, option = "item features", "data.dataset.item_feature_cols"
            elif missing[0] in self.user_feature_cols:
                purpose, option = "user features", "data.dataset.user_feature_cols"
            else:
                purpose, option = "item texts", "data.dataset.item_text_cols or data.dataset.item_text_path"
            raise DataError(
                f"{path} has no column {missing[0]!r} for {purpose}: found "
                f"{', '.join(repr(c) for c in frame.columns)}; set {option}"
            )
        return frame[self.columns + list(extra or ())], first_line

    def _times(self, column: pd.Series, path: Path, first_line: int | None) -> np.ndarray:
        """Times as int64 (integer column) or float64: numbers as they are, dates as Unix seconds."""
        if pd.api.types.is_integer_dtype(column) and not column.isna().any():
            return column.to_numpy(np.int64)
        numbers = pd.to_numeric(column, errors="coerce")
        if numbers.notna().sum() == column.notna().sum():  # numeric text or floats
            time = numbers.to_numpy(np.float64, na_value=np.nan)
        else:
            dates = pd.to_datetime(column, errors="coerce", utc=True)
            if dates.isna().sum() > column.isna().sum():  # differently formatted dates
                dates = pd.to_datetime(column, errors="coerce", utc=True, format="mixed")
            seconds = (dates - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
            time = seconds.to_numpy(np.float64, na_value=np.nan)
        bad = np.flatnonzero(~np.isfinite(time))
        if bad.size:
            row = int(bad[0])
            raise DataError(
                f"{_where(row, first_line)} of {path} has time {str(column.iloc[row])[:40]!r}, expected "
                f"a number or a date; fix it or set data.dataset.time_col=null to use the row order"
            )
        return time


def _resolve(path: str, data_dir: Path | str) -> Path:
    """``path`` as given if absolute, else under the data directory."""
    path_ = Path(path).expanduser()
    return path_ if path_.is_absolute() else Path(data_dir).expanduser() / path_


def _read_table(
    path: Path, sep: str | None, header: bool, as_text: tuple | None, no_rows: Callable[[], DataError]
) -> tuple[pd.DataFrame, int | None]:
    """A whole CSV/TSV/Parquet table (format from ``sep`` or the extension) with string
    column names, and the file line of its first row (None for Parquet); the columns
    ``as_text`` (None: all) of a text file are read as strings."""
    suffix = path.suffix.lower()
    if sep is None and suffix in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except ImportError:
            raise DataError("reading Parquet needs pyarrow: pip install pyarrow") from None
        except Exception as exc:
            raise DataError(_one_line(f"cannot read {path} as Parquet ({type(exc).__name__}: {exc})")) from None
        frame.columns = [str(c) for c in frame.columns]
        return frame, None
    sep = sep if sep is not None else _SEPARATORS.get(suffix)
    if sep is None:
        raise DataError(
            f"cannot tell the format of {path} from its extension: use .csv, .tsv, .txt "
            f"or .parquet, or set data.dataset.sep"
        )
    try:
        frame = pd.read_csv(
            path, sep=sep, header=0 if header else None,
            dtype=object if as_text is None else {c: object for c in as_text},
            engine="c",
        )
    except pd.errors.EmptyDataError:
        raise no_rows() from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(_one_line(f"cannot parse {path}: {exc}")) from None
    frame.columns = [str(c) for c in frame.columns]
    return frame, 2 if header else 1


def _no_texts(path: Path) -> DataError:
    return DataError(
        f"{path} is empty: expected a table with a header, the item column and text columns; fix or replace it"
    )


def _keys(values: pd.Series, tokens: np.ndarray) -> pd.Index:
    """Item tokens as :func:`remap` returns them (integer-looking text as numbers), for joins."""
    if tokens.dtype.kind in "iu":
        numbers = pd.to_numeric(values, errors="coerce")
        whole = numbers.notna() & (numbers == np.floor(numbers))
        return pd.Index([int(n) if w else str(v) for n, w, v in zip(numbers, whole, values)], dtype=object)
    return pd.Index(values.astype(str), dtype=object)


def _names(cols: list[str] | str | None) -> list[str]:
    """Column names of a list option (None: none; a bare name: one)."""
    if cols is None:
        return []
    return [str(cols)] if isinstance(cols, str) else [str(c) for c in cols]


def _strings(column: pd.Series) -> pd.Series:
    """A column as text (missing values stay missing; whole floats lose their ``.0``, since
    a column of integers with gaps reads as floats)."""
    if pd.api.types.is_float_dtype(column):
        present = column.dropna()
        if (present == np.floor(present)).all():
            column = column.astype("Int64")
    return column.astype("string")


def _texts(column: pd.Series, at: np.ndarray) -> list[str]:
    """``[I]`` texts of ``column`` at rows ``at`` (NaN: no row); missing values give ``""``."""
    values = [_text(v) for v in column]
    return [values[int(i)] if i == i else "" for i in at]


def _text(value: object) -> str:
    """One cell as text: ``""`` if missing, whole floats without ``.0`` (a column of
    integers with gaps reads as floats), whitespace collapsed."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(str(value).split())


def _where(row: int, first_line: int | None) -> str:
    """``row 3`` or ``row 3 (line 4)`` for the 0-based table row ``row``."""
    return f"row {row + 1}" if first_line is None else f"row {row + 1} (line {row + first_line})"


def _one_line(message: str) -> str:
    return " ".join(message.split())
