"""MovieLens readers: ML-1M in the SASRec form and ML-100K in RecBole's atomic form.

Side features shared by both, all categorical int64 codes (``-1`` = unknown):

* ``gender``: 0 = F, 1 = M.
* ``age``: the 7 MovieLens-1M age groups, 0..6 = under 18, 18-24, 25-34, 35-44, 45-49,
  50-55, 56+ (ML-100K's exact ages are put in the same groups).
* ``occupation``: ML-1M's codes 0..20; ML-100K's 21 names in sorted order.
* ``genres``: ``[n_items, L]`` genre codes padded with ``-1``.
* ``year``: ``[n_items, 1]`` release decade, 0..9 = before 1920, 1920s, ..., 1990s, 2000+.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recsys.data.datasets.base import Dataset, Stats
from recsys.data.datasets.parsing import (
    line_text,
    make_interactions,
    malformed,
    no_interactions,
    pad_lists,
    positions,
    read_int_columns,
    remap,
)
from recsys.data.files import RemoteFile
from recsys.data.interactions import RawData
from recsys.data.texts import ItemTexts, join_names
from recsys.errors import DataError

AGE_EDGES = np.array([18, 25, 35, 45, 50, 56])  # lower bounds of age groups 1..6
YEAR_EDGES = np.arange(1920, 2001, 10)  # lower bounds of decade buckets 1..9
YEAR_BUCKETS = len(YEAR_EDGES) + 1
ML1M_GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # the 18 genres listed in the GroupLens README, in that order
_PLACEHOLDERS = ("unknown", "unkonwn")  # ML-100K's missing title / year / genre (sic)
_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")
_ML1M_ZIP = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
_SAS_MAPPING = "https://raw.githubusercontent.com/asash/ml1m-sas-mapping/56013fb1def17a503613b5b914c2809ed18f607c/"
_ML100K_ZIP = "https://recbole.s3-accelerate.amazonaws.com/data/MovieLens/ml-100k.zip"


def age_group(age: np.ndarray) -> np.ndarray:
    """MovieLens-1M age group 0..6 of ages in years."""
    return np.searchsorted(AGE_EDGES, age, side="right").astype(np.int64)


def year_bucket(year: np.ndarray) -> np.ndarray:
    """Decade bucket 0..9 of release years; NaN (unknown) -> -1."""
    year = np.asarray(year, dtype=np.float64)
    bucket = np.searchsorted(YEAR_EDGES, np.nan_to_num(year), side="right").astype(np.int64)
    return np.where(np.isnan(year), -1, bucket)


def _read_dat(path: Path, n_fields: int, expected: str) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of every non-blank line of a GroupLens ``::`` file."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="latin-1").split("\n"), 1):
        if line.strip():
            fields = line.rstrip("\r").split("::")
            if len(fields) != n_fields:
                raise malformed(path, number, line, expected)
            rows.append((number, fields))
    return rows


def _sas_mapping(path: Path, n: int) -> dict[int, int]:
    """0-based SASRec id -> original MovieLens id (ids beyond ``n`` are ignored)."""
    pairs = read_int_columns(path, 2, "'sas_id original_id' integers >= 1", low=1)
    return {int(s) - 1: int(o) for s, o in pairs if s <= n}


class ML1M(Dataset):
    """MovieLens-1M as preprocessed for SASRec (Kang & McAuley, ICDM 2018).

    ``ml-1m.txt`` holds one ``user item`` pair per line, users 1..6040 and items re-indexed
    1..3416 in order of first appearance, each user's items in chronological order (no
    timestamps, so ``time`` is the position in the user's history). The side features come
    from the official GroupLens ``users.dat`` / ``movies.dat`` through the SASRec-to-MovieLens
    id mappings of github.com/asash/ml1m-sas-mapping.

    Sources: github.com/kang205/SASRec (``data/ml-1m.txt``); F. M. Harper and J. A. Konstan,
    "The MovieLens Datasets: History and Context", ACM TiiS 2015 (grouplens.org).
    """

    name = "ml1m"
    subdir = "ml-1m"
    files = (
        RemoteFile(
            "ml-1m.txt",
            "https://raw.githubusercontent.com/kang205/SASRec/e3738967fddab206d6eeb4fda433e7a7034dd8b1/data/ml-1m.txt",
            "b725f3acb3986fe3130bffd1e77a74d182a1f51799567a236dbd60270f95b0a2",
        ),
        RemoteFile(
            "users.dat",
            _ML1M_ZIP,
            "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3",
            "ml-1m/users.dat",
        ),
        RemoteFile(
            "movies.dat",
            _ML1M_ZIP,
            "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
            "ml-1m/movies.dat",
        ),
        RemoteFile(
            "sas_to_original_items.txt",
            _SAS_MAPPING + "sas_to_original_items.txt",
            "9ae42c23af0b0fe2f189b9d5acc6cf3936bffe1a9568390cf5d100c0c1b1fca1",
        ),
        RemoteFile(
            "sas_to_original_users.txt",
            _SAS_MAPPING + "sas_to_original_users.txt",
            "121893a66ab13fad83a67e12e3b3e6ddc56bcd01f0bcedf2ccb10bd8405e6239",
        ),
    )
    stats = Stats(users=6040, items=3416, interactions=999_611)
    source = "github.com/kang205/SASRec (data/ml-1m.txt) and files.grouplens.org (ml-1m.zip)"

    def parse(self, paths: dict[str, Path]) -> RawData:
        pairs = read_int_columns(paths["ml-1m.txt"], 2, "'user item' integers >= 1", low=1) - 1
        user, item = pairs[:, 0], pairs[:, 1]
        n_users, n_items = int(user.max()) + 1, int(item.max()) + 1
        inter = make_interactions(user, item, positions(user), n_users, n_items, has_timestamps=False)
        inter.user_features = self._user_features(paths, n_users)
        inter.item_features = self._item_features(paths, n_items)
        inter.feature_cardinality = {
            "gender": 2, "age": len(AGE_EDGES) + 1, "occupation": 21,
            "genres": len(ML1M_GENRES), "year": YEAR_BUCKETS,
        }
        return RawData(interactions=inter)

    @staticmethod
    def _user_features(paths: dict[str, Path], n_users: int) -> dict[str, torch.Tensor]:
        path = paths["users.dat"]
        expected = "'UserID::Gender::Age::Occupation::Zip' with gender F/M, age and occupation 0..20"
        by_original: dict[int, tuple[int, int, int]] = {}
        for number, (uid, gender, age, occupation, _zip) in _read_dat(path, 5, expected):
            numbers_ok = uid.isdigit() and age.isdigit() and occupation.isdigit()
            if gender not in ("F", "M") or not numbers_ok or int(occupation) > 20:
                raise malformed(path, number, line_text(path, number, "latin-1"), expected)
            by_original[int(uid)] = (int(gender == "M"), int(age_group(int(age))), int(occupation))
        table = np.full((n_users, 3), -1, dtype=np.int64)
        for sas, original in _sas_mapping(paths["sas_to_original_users.txt"], n_users).items():
            table[sas] = by_original.get(original, (-1, -1, -1))
        table = torch.from_numpy(table)
        return {"gender": table[:, 0].clone(), "age": table[:, 1].clone(), "occupation": table[:, 2].clone()}

    @staticmethod
    def _movies(paths: dict[str, Path], n_items: int) -> list[tuple[str, list[str]] | None]:
        """``(title, genre names)`` of every 0-based SASRec item from ``movies.dat``, ``None``
        where the item has no movie there."""
        path = paths["movies.dat"]
        expected = "'MovieID::Title (Year)::Genre|Genre...' with the 18 GroupLens genres"
        by_original: dict[int, tuple[str, list[str]]] = {}
        for number, (mid, title, genres) in _read_dat(path, 3, expected):
            names = genres.strip().split("|")
            if not mid.isdigit() or not all(g in ML1M_GENRES for g in names):
                raise malformed(path, number, line_text(path, number, "latin-1"), expected)
            by_original[int(mid)] = (title.strip(), names)
        movies: list[tuple[str, list[str]] | None] = [None] * n_items
        for sas, original in _sas_mapping(paths["sas_to_original_items.txt"], n_items).items():
            movies[sas] = by_original.get(original)
        return movies

    @classmethod
    def _item_features(cls, paths: dict[str, Path], n_items: int) -> dict[str, torch.Tensor]:
        code = {genre: i for i, genre in enumerate(ML1M_GENRES)}
        genres_of: list[list[int]] = [[] for _ in range(n_items)]
        years = np.full(n_items, np.nan)
        for sas, movie in enumerate(cls._movies(paths, n_items)):
            if movie is not None:
                title, names = movie
                match = _TITLE_YEAR.search(title)
                genres_of[sas], years[sas] = [code[g] for g in names], float(match.group(1)) if match else np.nan
        return {"genres": pad_lists(genres_of), "year": torch.from_numpy(year_bucket(years)[:, None])}

    def item_texts(self, data_dir: Path | str) -> ItemTexts:
        """``title`` (``Toy Story (1995)``, as in ``movies.dat``) and ``genres``
        (``Animation, Children's, Comedy``) of every item."""
        n_items = self.load(data_dir).interactions.n_items
        movies = self._movies(self.paths(data_dir), n_items)
        fields = {
            "title": [m[0] if m else "" for m in movies],
            "genres": [join_names(m[1]) if m else "" for m in movies],
        }
        return ItemTexts(self.name, fields, ("title", "genres"), source="movies.dat via sas_to_original_items.txt")


def read_atomic(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """Read a RecBole atomic file (tab separated, ``name:type`` header) as strings.

    Returns:
        the frame with the types stripped from the column names.

    Raises:
        DataError: a missing column (listing those found) or a line with the wrong number of
            fields (naming the line).
    """
    try:
        frame = pd.read_csv(
            path, sep="\t", dtype=object, keep_default_na=False, na_values=[], quoting=csv.QUOTE_NONE,
            engine="c", encoding="utf-8", encoding_errors="replace",
        )
    except pd.errors.EmptyDataError:
        raise no_interactions(path) from None
    except pd.errors.ParserError:
        frame = None
    if frame is not None:
        frame.columns = [str(c).split(":")[0] for c in frame.columns]
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(
                f"{path} lacks column(s) {', '.join(missing)}: found {', '.join(frame.columns)}; "
                f"fix or re-download the file"
            )
        bad = np.flatnonzero(frame.isna().any(axis=1).to_numpy())  # lines with too few fields
        if not bad.size:
            return frame
    with open(path, encoding="utf-8", errors="replace") as fh:
        n_fields = len(fh.readline().split("\t"))
        for number, line in enumerate(fh, 2):
            if line.strip() and len(line.rstrip("\r\n").split("\t")) != n_fields:
                raise malformed(path, number, line, f"{n_fields} tab-separated fields")
    raise DataError(f"could not parse {path} as a tab-separated RecBole atomic file")


class ML100K(Dataset):
    """MovieLens-100K with real timestamps, in RecBole's atomic-file form.

    ``ml-100k.inter`` holds ``user_id, item_id, rating, timestamp`` (all 100,000 ratings
    kept), ``ml-100k.user`` the age, gender and occupation of each user and ``ml-100k.item``
    the release year and genres (``class``) of each movie. User and item tokens are mapped to
    contiguous ids in increasing order of the original ids.

    Sources: F. M. Harper and J. A. Konstan, "The MovieLens Datasets: History and Context",
    ACM TiiS 2015 (grouplens.org, ``ml-100k.zip``); atomic files from RecBole
    (Zhao et al., CIKM 2021, recbole.io).
    """

    name = "ml100k"
    subdir = "ml-100k"
    files = (
        RemoteFile(
            "ml-100k.inter",
            _ML100K_ZIP,
            "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
            "ml-100k/ml-100k.inter",
        ),
        RemoteFile(
            "ml-100k.item",
            _ML100K_ZIP,
            "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
            "ml-100k/ml-100k.item",
        ),
        RemoteFile(
            "ml-100k.user",
            _ML100K_ZIP,
            "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
            "ml-100k/ml-100k.user",
        ),
    )
    stats = Stats(users=943, items=1682, interactions=100_000)
    source = "recbole.io (atomic ml-100k.zip) or files.grouplens.org (ml-100k.zip)"

    def parse(self, paths: dict[str, Path]) -> RawData:
        path = paths["ml-100k.inter"]
        frame = read_atomic(path, ("user_id", "item_id", "timestamp"))
        if frame.empty:
            raise no_interactions(path)
        try:
            time = frame["timestamp"].to_numpy(np.float64)
        except ValueError:
            time = pd.to_numeric(frame["timestamp"], errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(time))
        if bad.size:
            number = int(bad[0]) + 2  # header is line 1
            raise malformed(path, number, line_text(path, number), "a numeric timestamp")
        user, user_tokens = remap(frame["user_id"])
        item, item_tokens = remap(frame["item_id"])
        order = np.lexsort((time, user))  # sort on the exact times before rounding
        inter = make_interactions(
            user[order], item[order], np.floor(time[order]), len(user_tokens), len(item_tokens),
            has_timestamps=True,
        )
        inter.user_features, user_card = self._user_features(paths["ml-100k.user"], user_tokens)
        inter.item_features, item_card = self._item_features(paths["ml-100k.item"], item_tokens)
        inter.feature_cardinality = {**user_card, **item_card}
        return RawData(interactions=inter)

    @staticmethod
    def _lookup(frame: pd.DataFrame, tokens: np.ndarray) -> pd.DataFrame:
        """Rows of ``frame`` (indexed by its id column) in the order of ``tokens``."""
        key = frame.columns[0]
        ids = pd.to_numeric(frame[key], errors="coerce")
        if not ids.isna().any() and tokens.dtype.kind in "iu":
            frame = frame.assign(**{key: ids.astype(np.int64)})
        return frame.drop_duplicates(key).set_index(key).reindex(tokens)

    def _user_features(self, path: Path, tokens: np.ndarray) -> tuple[dict, dict]:
        users = self._lookup(read_atomic(path, ("user_id", "age", "gender", "occupation")), tokens)
        age = pd.to_numeric(users["age"], errors="coerce").to_numpy(np.float64)
        age_code = np.where(np.isnan(age), -1, age_group(np.nan_to_num(age)))
        gender = pd.Categorical(users["gender"], categories=["F", "M"]).codes
        occupation = pd.Categorical(users["occupation"])  # sorted names; unknown -> -1
        features = {"gender": gender, "age": age_code, "occupation": occupation.codes}
        card = {"gender": 2, "age": len(AGE_EDGES) + 1, "occupation": len(occupation.categories)}
        return {k: torch.from_numpy(np.asarray(v, dtype=np.int64)) for k, v in features.items()}, card

    def _item_features(self, path: Path, tokens: np.ndarray) -> tuple[dict, dict]:
        items = self._lookup(read_atomic(path, ("item_id", "release_year", "class")), tokens)
        genre_lists = [g.split() for g in items["class"].fillna("")]
        vocabulary = {g: i for i, g in enumerate(sorted({g for gs in genre_lists for g in gs}))}
        genres = pad_lists([[vocabulary[g] for g in gs] for gs in genre_lists])
        years = pd.to_numeric(items["release_year"], errors="coerce").to_numpy(np.float64)
        features = {"genres": genres, "year": torch.from_numpy(year_bucket(years)[:, None])}
        return features, {"genres": len(vocabulary), "year": YEAR_BUCKETS}

    def item_texts(self, data_dir: Path | str) -> ItemTexts:
        """``title`` (``Toy Story (1995)``: ``movie_title`` and ``release_year``) and
        ``genres`` (``Animation, Children's, Comedy``) of every item.

        ML-100K's placeholders carry no text: the title and year ``unkonwn`` of item 267 and
        the genre ``unknown`` (item 267 and 1373) become ``""``.
        """
        paths = self.paths(data_dir)
        _, tokens = remap(read_atomic(paths["ml-100k.inter"], ("item_id",))["item_id"])  # the ids of parse
        columns = ("item_id", "movie_title", "release_year", "class")
        items = self._lookup(read_atomic(paths["ml-100k.item"], columns), tokens)
        titles = []
        for title, year in zip(items["movie_title"].fillna(""), items["release_year"].fillna("")):
            title = "" if title.strip().lower() in _PLACEHOLDERS else title.strip()
            year = year.strip() if year.strip().isdigit() else ""
            titles.append(f"{title} ({year})" if title and year else title)
        genres = [
            join_names([g for g in names.split() if g.lower() not in _PLACEHOLDERS]) for names in items["class"].fillna("")
        ]
        return ItemTexts(self.name, {"title": titles, "genres": genres}, ("title", "genres"), source="ml-100k.item")
