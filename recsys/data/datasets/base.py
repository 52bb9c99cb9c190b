"""The dataset contract: files, parsing and expected statistics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from recsys.data.files import RemoteFile, resolve
from recsys.data.interactions import RawData
from recsys.data.texts import ItemTexts
from recsys.errors import DataError

TEXT_DATASETS = "data=ml1m, data=ml100k, data=beauty, data=sports, data=yelp, data=lastfm, data=synthetic"


@dataclass(frozen=True)
class Stats:
    """Expected size of a dataset right after parsing (before any filtering)."""

    users: int
    items: int
    interactions: int


class Dataset:
    """Base class of dataset readers.

    Subclasses set ``name``, ``subdir`` (folder under the data directory), ``files`` and
    ``stats``, and implement :meth:`parse`. :meth:`load` resolves the files (data
    directory, then download), parses them and checks the statistics.
    """

    name: ClassVar[str]
    subdir: ClassVar[str]
    files: ClassVar[tuple[RemoteFile, ...]] = ()
    stats: ClassVar[Stats | None] = None
    source: ClassVar[str] = ""

    def __init__(self, download: bool = True) -> None:
        self.download = download

    def paths(self, data_dir: Path | str) -> dict[str, Path]:
        """Local path of every file of the dataset, by file name."""
        return {f.name: resolve(f, data_dir, self.subdir, download=self.download) for f in self.files}

    def parse(self, paths: dict[str, Path]) -> RawData:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, data_dir: Path | str) -> RawData:
        raw = self.parse(self.paths(data_dir))
        self.check_stats(raw)
        return raw

    def item_texts(self, data_dir: Path | str) -> ItemTexts:
        """Text fields of every item, indexed by the 0-based item ids of :meth:`load`.

        Raises:
            DataError: the dataset has no item metadata (this default).
        """
        raise DataError(
            f"dataset {self.name} has no item texts (titles, genres, brands...); the datasets with item texts are "
            f"{TEXT_DATASETS}, and data=custom with data.dataset.item_text_path or data.dataset.item_text_cols set"
        )

    def check_stats(self, raw: RawData) -> None:
        if self.stats is None:
            return
        inter = raw.interactions
        n_events = len(inter) + (len(raw.fixed_test) if raw.fixed_test is not None else 0)
        found = Stats(users=inter.n_users, items=inter.n_items, interactions=n_events)
        if found != self.stats:
            raise DataError(
                f"dataset {self.name} in {self.subdir}/ does not have the expected size: expected "
                f"{self.stats.users:,} users / {self.stats.items:,} items / {self.stats.interactions:,} "
                f"interactions, found {found.users:,} / {found.items:,} / {found.interactions:,}; "
                f"the files are corrupt or a different version, re-download them from {self.source}"
            )
