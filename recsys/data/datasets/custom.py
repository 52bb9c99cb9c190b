"""A user's own interaction log from a CSV, TSV or Parquet file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.datasets.base import Dataset
from recsys.data.datasets.parsing import make_interactions, no_interactions, positions, remap
from recsys.data.interactions import RawData
from recsys.errors import DataError

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
        download: bool = False,
    ) -> None:
        super().__init__(download=download)
        self.path, self.user_col, self.item_col, self.time_col = path, user_col, item_col, time_col
        self.sep, self.header = sep, header

    @property
    def columns(self) -> list[str]:
        return [self.user_col, self.item_col] + ([self.time_col] if self.time_col else [])

    def load(self, data_dir: Path | str) -> RawData:
        path = Path(self.path).expanduser()
        path = path if path.is_absolute() else Path(data_dir).expanduser() / path
        if not path.is_file():
            raise DataError(
                f"missing file {path} for the custom dataset: expected a table with columns "
                f"{', '.join(self.columns)}; check data.dataset.path (relative paths start at paths.data_dir)"
            )
        frame, first_line = self._read(path)
        if frame.empty:
            raise no_interactions(path)
        for col in (self.user_col, self.item_col):
            null = np.flatnonzero(frame[col].isna().to_numpy())
            if null.size:
                raise DataError(
                    f"{_where(int(null[0]), first_line)} of {path} has no {col}; "
                    f"fill or drop the rows with an empty {col}"
                )
        user, user_tokens = remap(frame[self.user_col])
        item, item_tokens = remap(frame[self.item_col])
        if self.time_col is None:
            time = positions(user)  # row order within each user
        else:
            time = self._times(frame[self.time_col], path, first_line)
            order = np.lexsort((time, user))  # sort on the exact times before casting
            time = time[order] if time.dtype.kind == "i" else np.floor(time[order])
            user, item = user[order], item[order]
        inter = make_interactions(
            user, item, time, len(user_tokens), len(item_tokens), has_timestamps=self.time_col is not None
        )
        return RawData(interactions=inter)

    def _read(self, path: Path) -> tuple[pd.DataFrame, int | None]:
        """The needed columns, and the file line of the first row (None for Parquet)."""
        suffix = path.suffix.lower()
        first_line: int | None = None
        if self.sep is None and suffix in (".parquet", ".pq"):
            try:
                frame = pd.read_parquet(path)
            except ImportError:
                raise DataError("reading Parquet needs pyarrow: pip install pyarrow") from None
            except Exception as exc:
                raise DataError(_one_line(f"cannot read {path} as Parquet ({type(exc).__name__}: {exc})")) from None
        else:
            sep = self.sep if self.sep is not None else _SEPARATORS.get(suffix)
            if sep is None:
                raise DataError(
                    f"cannot tell the format of {path} from its extension: use .csv, .tsv, .txt "
                    f"or .parquet, or set data.dataset.sep"
                )
            ids = (self.user_col, self.item_col) if self.header else (0, 1)  # read ids as text
            try:
                frame = pd.read_csv(
                    path, sep=sep, header=0 if self.header else None, dtype={c: object for c in ids},
                    engine="c",
                )
            except pd.errors.EmptyDataError:
                raise no_interactions(path) from None
            except (ValueError, pd.errors.ParserError) as exc:
                raise DataError(_one_line(f"cannot parse {path}: {exc}")) from None
            if not self.header:
                names = self.columns[: frame.shape[1]]
                frame.columns = names + [str(c) for c in frame.columns[len(names):]]
            first_line = 2 if self.header else 1
        frame.columns = [str(c) for c in frame.columns]
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise DataError(
                f"{path} has no column {', '.join(repr(c) for c in missing)}: found "
                f"{', '.join(repr(c) for c in frame.columns)}; set data.dataset.user_col, data.dataset.item_col or "
                f"data.dataset.time_col (data.dataset.time_col=null uses the row order)"
            )
        return frame[self.columns], first_line

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


def _where(row: int, first_line: int | None) -> str:
    """``row 3`` or ``row 3 (line 4)`` for the 0-based table row ``row``."""
    return f"row {row + 1}" if first_line is None else f"row {row + 1} (line {row + first_line})"


def _one_line(message: str) -> str:
    return " ".join(message.split())
