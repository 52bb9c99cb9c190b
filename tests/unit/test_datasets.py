"""Dataset readers: the real benchmark copies, downloads and checksums, and bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recsys.data.datasets.amazon import Beauty, LastFM, S3RecDataset, Sports, Yelp
from recsys.data.datasets.base import Dataset
from recsys.data.datasets.custom import CustomDataset
from recsys.data.datasets.gowalla import Gowalla
from recsys.data.datasets.movielens import ML1M, ML100K, year_bucket
from recsys.data.datasets.parsing import pad_lists, positions, remap
from recsys.data.files import RemoteFile, resolve
from recsys.data.interactions import Interactions
from recsys.errors import ConfigError, DataError



def raises_one_line(match: str | None = None, kind: type[Exception] = DataError):
    """``pytest.raises(kind)`` whose message must also be a single line."""

    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(kind, match=match)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            suppressed = self.ctx.__exit__(*exc)
            assert "\n" not in str(self.info.value), str(self.info.value)
            return suppressed

    return _Check()


def assert_sorted(inter: Interactions) -> None:
    user, time = inter.user, inter.time
    step = user[1:] - user[:-1]
    assert bool((step >= 0).all())
    assert bool(((step > 0) | (time[1:] >= time[:-1])).all())


def assert_valid(inter: Interactions) -> None:
    assert inter.user.dtype == inter.item.dtype == inter.time.dtype == torch.int64
    assert int(inter.user.min()) >= 0 and int(inter.user.max()) < inter.n_users
    assert int(inter.item.min()) >= 0 and int(inter.item.max()) < inter.n_items
    assert_sorted(inter)
    for name, values in inter.user_features.items():
        assert values.shape == (inter.n_users,)
        assert int(values.min()) >= -1 and int(values.max()) < inter.feature_cardinality[name]
    for name, values in inter.item_features.items():
        assert values.dim() == 2 and values.shape[0] == inter.n_items
        assert int(values.min()) >= -1 and int(values.max()) < inter.feature_cardinality[name]


# --------------------------------------------------------------------------- real copies

REAL = [
    (ML1M, {"gender": 2, "age": 7, "occupation": 21, "genres": 18, "year": 10}),
    (ML100K, {"gender": 2, "age": 7, "occupation": 21, "genres": 19, "year": 10}),
    (Beauty, {"attributes": 637}),
    (Sports, {"attributes": 2277}),
    (Yelp, {"attributes": 1001}),
    (LastFM, {"attributes": 388}),
    (Gowalla, {}),
]


@pytest.mark.parametrize("cls,cardinality", REAL, ids=[c.name for c, _ in REAL])
def test_real_dataset_loads(data_dir: Path, cls: type[Dataset], cardinality: dict) -> None:
    if not (data_dir / cls.subdir).is_dir():
        pytest.skip(f"{cls.subdir}/ not in {data_dir}")
    raw = cls(download=False).load(data_dir)  # load() checks the README statistics
    inter = raw.interactions
    assert (inter.n_users, inter.n_items) == (cls.stats.users, cls.stats.items)
    assert_valid(inter)
    assert inter.feature_cardinality == cardinality
    assert inter.has_timestamps == (cls is ML100K)
    assert int(inter.user_counts().min()) > 0 and int(inter.item_counts().min()) > 0
    if cls is Gowalla:
        test = raw.fixed_test
        assert (len(inter), len(test)) == (810_128, 217_242)
        assert (test.n_users, test.n_items) == (inter.n_users, inter.n_items)
        assert_valid(test)
        # test events are numbered after the user's training events
        assert bool((test.time >= inter.user_counts()[test.user]).all())
    else:
        assert raw.fixed_test is None
    if cls is ML1M:
        assert inter.item_features["genres"].shape[1] == 6 and inter.item_features["year"].shape == (3416, 1)
        assert inter.time[:3].tolist() == [0, 1, 2]
    if cls is Yelp:
        pairs = inter.user * inter.n_items + inter.item
        assert len(pairs) - torch.unique(pairs).numel() == 11_830  # repeated events are kept


def test_stats_mismatch(data_dir: Path, tmp_path: Path) -> None:
    source = data_dir / "ml-1m"
    if not source.is_dir():
        pytest.skip(f"ml-1m/ not in {data_dir}")
    target = tmp_path / "ml-1m"
    target.mkdir()
    for f in ML1M.files:
        if f.name != "ml-1m.txt":
            shutil.copy(source / f.name, target / f.name)
    with open(source / "ml-1m.txt") as src:
        (target / "ml-1m.txt").write_text("".join(next(src) for _ in range(5000)))
    with raises_one_line("expected 6,040 users"):
        ML1M(download=False).load(tmp_path)


# --------------------------------------------------------------------------- files and downloads


class _Toy(Dataset):
    name = "toy"
    subdir = "toy"
    files = (RemoteFile("toy.txt", "file:///nonexistent/recsys-test/toy.txt"),)


def test_missing_file_without_download(tmp_path: Path) -> None:
    with raises_one_line() as info:
        _Toy(download=False).load(tmp_path)
    message = str(info.value)
    assert "toy.txt" in message and str(tmp_path / "toy" / "toy.txt") in message
    with raises_one_line() as info:
        ML1M(download=False).load(tmp_path)
    assert "ml-1m.txt" in str(info.value) and str(tmp_path / "ml-1m") in str(info.value)


def test_missing_file_failed_download(tmp_path: Path) -> None:
    with raises_one_line("download from file:///nonexistent") as info:
        _Toy(download=True).load(tmp_path)
    assert "toy.txt" in str(info.value)


def test_checksum(tmp_path: Path) -> None:
    src = tmp_path / "upstream.txt"
    src.write_bytes(b"1 2\n3 4\n")
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = tmp_path / "data"
    with raises_one_line("checksum mismatch"):
        resolve(RemoteFile("f.txt", src.as_uri(), "0" * 64), dest, "sub")
    assert list((dest / "sub").iterdir()) == []  # neither the file nor a partial download
    path = resolve(RemoteFile("f.txt", src.as_uri(), good), dest, "sub")
    assert path == dest / "sub" / "f.txt" and path.read_bytes() == src.read_bytes()


def test_checksum_zip_member(tmp_path: Path) -> None:
    archive = tmp_path / "upstream.zip"
    payload = b"a::b\n"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pack/users.dat", payload)
        zf.writestr("pack/other.dat", b"x")
    good = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "data"
    path = resolve(RemoteFile("users.dat", archive.as_uri(), good, "pack/users.dat"), dest, "sub")
    assert path.read_bytes() == payload
    with raises_one_line("checksum mismatch"):
        resolve(RemoteFile("other.dat", archive.as_uri(), good, "pack/other.dat"), dest, "sub")
    assert not (dest / "sub" / "other.dat").exists()
    with raises_one_line("missing.dat"):
        resolve(RemoteFile("missing.dat", archive.as_uri(), good, "pack/missing.dat"), dest, "sub")


# --------------------------------------------------------------------------- synthetic ML-1M


def write_ml1m(folder: Path, ratings: str) -> Path:
    """A tiny ml-1m/ folder: 2 users, 3 items."""
    d = folder / "ml-1m"
    d.mkdir(parents=True)
    (d / "ml-1m.txt").write_text(ratings)
    (d / "users.dat").write_text("10::F::1::10::48067\n20::M::56::16::70072\n")
    (d / "movies.dat").write_bytes(
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "2::Métropolis (1927)::Drama|Sci-Fi\n3::Heat (1995)::Action\n".encode("latin-1")
    )
    (d / "sas_to_original_users.txt").write_text("1 20\n2 10\n")
    (d / "sas_to_original_items.txt").write_text("1 2\n2 3\n3 1\n")
    return d


def test_ml1m_tiny_parse(tmp_path: Path) -> None:
    d = write_ml1m(tmp_path, "1 1\n1 3\n2 2\n\n2 1\n2 3\n")
    ds = ML1M(download=False)
    inter = ds.parse(ds.paths(tmp_path)).interactions
    assert_valid(inter)
    assert inter.user.tolist() == [0, 0, 1, 1, 1] and inter.item.tolist() == [0, 2, 1, 0, 2]
    assert inter.time.tolist() == [0, 1, 0, 1, 2]
    assert inter.user_features["gender"].tolist() == [1, 0]
    assert inter.user_features["age"].tolist() == [6, 0]
    assert inter.user_features["occupation"].tolist() == [16, 10]
    assert inter.item_features["genres"].tolist() == [[7, 14, -1], [0, -1, -1], [2, 3, 4]]
    assert inter.item_features["year"].flatten().tolist() == [1, 8, 8]
    assert (d / "ml-1m.txt").exists()


@pytest.mark.parametrize("bad", ["abc 3", "1 2 3", "7", "0 1", "1.5 2"])
def test_ml1m_malformed_line(tmp_path: Path, bad: str) -> None:
    write_ml1m(tmp_path, f"1 1\n1 2\n{bad}\n2 1\n")
    with raises_one_line("line 3") as info:
        ML1M(download=False).load(tmp_path)
    assert "ml-1m.txt" in str(info.value) and bad in str(info.value)


def test_ml1m_malformed_side_file(tmp_path: Path) -> None:
    d = write_ml1m(tmp_path, "1 1\n2 2\n")
    (d / "users.dat").write_text("10::F::1::10::48067\n20::M::56\n")
    with raises_one_line("line 2 in .*users.dat"):
        ML1M(download=False).load(tmp_path)


def test_ml1m_empty(tmp_path: Path) -> None:
    write_ml1m(tmp_path, "")
    with raises_one_line("has no interactions"):
        ML1M(download=False).load(tmp_path)


def test_year_bucket() -> None:
    assert year_bucket(np.array([1900, 1919, 1920, 1995, 1999, 2000, 2015, np.nan])).tolist() == [
        0, 0, 1, 8, 8, 9, 9, -1,
    ]


# --------------------------------------------------------------------------- synthetic ML-100K


def write_ml100k(folder: Path, inter_rows: str) -> None:
    d = folder / "ml-100k"
    d.mkdir(parents=True)
    head = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    (d / "ml-100k.inter").write_text(head + inter_rows)
    (d / "ml-100k.user").write_text(
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
        "10\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n"
    )
    (d / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "5\tA\t1995\tComedy Drama\n7\tB\tunknown\tDrama\n"
    )


def test_ml100k_tiny_parse(tmp_path: Path) -> None:
    write_ml100k(tmp_path, "10\t7\t3\t300\n2\t5\t4\t100\n10\t5\t5\t200\n")
    ds = ML100K(download=False)
    inter = ds.parse(ds.paths(tmp_path)).interactions
    assert_valid(inter)
    assert inter.has_timestamps
    assert inter.user.tolist() == [0, 1, 1] and inter.item.tolist() == [0, 0, 1]  # "2" < "10"
    assert inter.time.tolist() == [100, 200, 300]
    assert inter.user_features["gender"].tolist() == [0, 1]
    assert inter.user_features["age"].tolist() == [5, 1]
    assert inter.user_features["occupation"].tolist() == [0, 1]
    assert inter.item_features["genres"].tolist() == [[0, 1], [1, -1]]
    assert inter.item_features["year"].flatten().tolist() == [8, -1]


@pytest.mark.parametrize("bad", ["2\t5\t4", "2\t5\t4\t100\t9", "2\t5\t4\tnoon"])
def test_ml100k_malformed_line(tmp_path: Path, bad: str) -> None:
    write_ml100k(tmp_path, f"10\t7\t3\t300\n{bad}\n10\t5\t5\t200\n")
    with raises_one_line("line 3 in .*ml-100k.inter"):
        ML100K(download=False).load(tmp_path)


def test_ml100k_missing_column(tmp_path: Path) -> None:
    write_ml100k(tmp_path, "10\t7\t3\t300\n")
    path = tmp_path / "ml-100k" / "ml-100k.inter"
    path.write_text(path.read_text().replace("timestamp:float", "time:float"))
    with raises_one_line("lacks column.*timestamp.*found user_id, item_id, rating, time"):
        ML100K(download=False).load(tmp_path)


# --------------------------------------------------------------------------- synthetic S3-Rec


class _TinyS3Rec(S3RecDataset):
    name = "tiny"
    subdir = "tiny"
    prefix = "Tiny"
    files = (
        RemoteFile("Tiny.txt", "file:///nonexistent/Tiny.txt"),
        RemoteFile("Tiny_item2attributes.json", "file:///nonexistent/Tiny_item2attributes.json"),
    )


def write_s3rec(folder: Path, lines: str, attributes: dict | str | None = None) -> Path:
    d = folder / "tiny"
    d.mkdir(parents=True)
    (d / "Tiny.txt").write_text(lines)
    attributes = {"1": [1, 2], "3": [2, 2, 3]} if attributes is None else attributes
    text = attributes if isinstance(attributes, str) else json.dumps(attributes)
    (d / "Tiny_item2attributes.json").write_text(text)
    return d


def test_s3rec_tiny_parse(tmp_path: Path) -> None:
    write_s3rec(tmp_path, "1 1 2 1\n2 3\n\n3 2 3\n")
    inter = _TinyS3Rec(download=False).load(tmp_path).interactions
    assert_valid(inter)
    assert inter.user.tolist() == [0, 0, 0, 1, 2, 2]
    assert inter.item.tolist() == [0, 1, 0, 2, 1, 2]  # repeated events kept
    assert inter.time.tolist() == [0, 1, 2, 0, 0, 1]
    assert (inter.n_users, inter.n_items) == (3, 3)
    assert inter.item_features["attributes"].tolist() == [[0, 1], [-1, -1], [1, 2]]
    assert inter.feature_cardinality == {"attributes": 3}


@pytest.mark.parametrize("bad", ["2 3 x", "2 0", "0 1", "1 1"])
def test_s3rec_malformed_line(tmp_path: Path, bad: str) -> None:
    write_s3rec(tmp_path, f"1 1 2\n\n{bad}\n3 2\n")  # blank line 2: the bad one is line 3
    with raises_one_line("line 3 in .*Tiny.txt") as info:
        _TinyS3Rec(download=False).load(tmp_path)
    assert bad in str(info.value)


@pytest.mark.parametrize(
    "attributes,match",
    [('{"1": [1, 2]', "malformed JSON"), ({"9": [1]}, "key '9'"), ({"1": ["a"]}, "item 1 has")],
)
def test_s3rec_bad_attributes(tmp_path: Path, attributes, match: str) -> None:
    write_s3rec(tmp_path, "1 1 2\n2 3\n", attributes)
    with raises_one_line(match) as info:
        _TinyS3Rec(download=False).load(tmp_path)
    assert "Tiny_item2attributes.json" in str(info.value)


@pytest.mark.parametrize("lines", ["", "\n\n", "1\n2\n"])
def test_s3rec_no_interactions(tmp_path: Path, lines: str) -> None:
    write_s3rec(tmp_path, lines)
    with raises_one_line("has no interactions"):
        _TinyS3Rec(download=False).load(tmp_path)


# --------------------------------------------------------------------------- synthetic Gowalla


def test_gowalla_tiny_parse(tmp_path: Path) -> None:
    d = tmp_path / "gowalla"
    d.mkdir()
    (d / "train.txt").write_text("0 0 1\n1 2\n2\n")  # user 2 has no training item
    (d / "test.txt").write_text("0 2\n2 0 1\n")
    ds = Gowalla(download=False)
    raw = ds.parse(ds.paths(tmp_path))
    train, test = raw.interactions, raw.fixed_test
    assert (train.n_users, train.n_items, test.n_users, test.n_items) == (3, 3, 3, 3)
    assert train.user.tolist() == [0, 0, 1] and train.time.tolist() == [0, 1, 0]
    assert test.user.tolist() == [0, 2, 2] and test.time.tolist() == [2, 0, 1]
    (d / "test.txt").write_text("0 2\n1 1 y\n")
    with raises_one_line("line 2 in .*test.txt"):
        ds.parse(ds.paths(tmp_path))


# --------------------------------------------------------------------------- custom


@pytest.fixture
def log() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u2", "u1", "u2", "u3"],
            "item_id": ["b", "a", "a", "c"],
            "timestamp": [30, 20, 10, 5],
            "rating": [1.0, 2.0, 3.0, 4.0],
        }
    )


@pytest.mark.parametrize("ext", ["csv", "tsv", "parquet"])
def test_custom_round_trip(tmp_path: Path, log: pd.DataFrame, ext: str) -> None:
    path = tmp_path / f"log.{ext}"
    if ext == "parquet":
        pytest.importorskip("pyarrow")
        log.to_parquet(path)
    else:
        log.to_csv(path, sep="," if ext == "csv" else "\t", index=False)
    inter = CustomDataset(path=path.name).load(tmp_path).interactions  # relative to data_dir
    assert_valid(inter)
    assert inter.has_timestamps and (inter.n_users, inter.n_items) == (3, 3)
    assert inter.user.tolist() == [0, 1, 1, 2]
    assert inter.item.tolist() == [0, 0, 1, 2]
    assert inter.time.tolist() == [20, 10, 30, 5]


def test_custom_dates_and_numeric_ids(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user,item,when\n10,7,2021-01-02\n2,7,2021-01-01\n10,3,2021-01-01 12:00\n")
    inter = CustomDataset(str(path), user_col="user", item_col="item", time_col="when").load("/unused").interactions
    assert inter.user.tolist() == [0, 1, 1]  # "2" < "10" numerically
    assert inter.item.tolist() == [1, 0, 1]
    assert inter.time.tolist() == [1609459200, 1609502400, 1609545600]


def test_custom_row_order(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_text("b\tx\na\ty\nb\tz\nb\ty\n")
    inter = CustomDataset(str(path), time_col=None, header=False).load(tmp_path).interactions
    assert not inter.has_timestamps
    assert inter.user.tolist() == [0, 1, 1, 1] and inter.item.tolist() == [1, 0, 2, 1]
    assert inter.time.tolist() == [0, 0, 1, 2]


def test_custom_errors(tmp_path: Path, log: pd.DataFrame) -> None:
    log.to_csv(tmp_path / "log.csv", index=False)
    with raises_one_line("no column 'movie': found 'user_id', 'item_id', 'timestamp', 'rating'"):
        CustomDataset("log.csv", item_col="movie").load(tmp_path)
    with raises_one_line("no column 'time'"):
        CustomDataset("log.csv", time_col="time").load(tmp_path)
    with raises_one_line(r"missing file .*nope.csv.*user_id, item_id, timestamp"):
        CustomDataset("nope.csv").load(tmp_path)
    log.loc[2, "item_id"] = None
    log.to_csv(tmp_path / "null.csv", index=False)
    with raises_one_line(r"row 3 \(line 4\) of .*null.csv has no item_id"):
        CustomDataset("null.csv").load(tmp_path)
    (tmp_path / "empty.csv").write_text("user_id,item_id,timestamp\n")
    with raises_one_line("has no interactions"):
        CustomDataset("empty.csv").load(tmp_path)
    (tmp_path / "log.json").write_text("{}")
    with raises_one_line("cannot tell the format"):
        CustomDataset("log.json").load(tmp_path)


def write_featured(tmp_path: Path) -> Path:
    """Items a, b, c (genres "a|b", "b", none) and users u1, u2 (ages 30, missing)."""
    path = tmp_path / "feat.csv"
    path.write_text(
        "user_id,item_id,timestamp,genre,age\n"
        "u2,b,1,b,\n"
        "u1,a,2,a|b,30\n"
        "u1,c,3,,30\n"
        "u2,a,4,c,\n"  # not a's first row: ignored
    )
    return path


def test_custom_features(tmp_path: Path) -> None:
    path = write_featured(tmp_path)
    inter = CustomDataset(str(path), item_feature_cols=["genre"], user_feature_cols="age").load(tmp_path).interactions
    assert_valid(inter)
    assert inter.item_features["genre"].dtype == torch.int64
    assert inter.item_features["genre"].tolist() == [[0, 1], [1, -1], [-1, -1]]  # a: a|b, b: b, c: none
    assert inter.user_features["age"].tolist() == [0, -1]  # u1: "30", u2: missing
    assert inter.feature_cardinality == {"genre": 2, "age": 1}
    plain = CustomDataset(str(path)).load(tmp_path).interactions
    assert plain.item_features == {} and plain.user_features == {} and plain.feature_cardinality == {}
    single = CustomDataset(str(path), item_feature_cols=["age"]).load(tmp_path).interactions
    assert single.item_features["age"].tolist() == [[0], [-1], [0]]  # one value each: V = 1 (30 read as a number)


def test_custom_feature_errors(tmp_path: Path) -> None:
    path = write_featured(tmp_path)
    with raises_one_line(
        r"no column 'kind' for item features: found 'user_id', 'item_id', 'timestamp', 'genre', 'age'; "
        r"set data.dataset.item_feature_cols"
    ):
        CustomDataset(str(path), item_feature_cols=["kind"]).load(tmp_path)
    with raises_one_line(r"no column 'kind' for user features.*data.dataset.user_feature_cols"):
        CustomDataset(str(path), user_feature_cols=["kind"]).load(tmp_path)
    with raises_one_line(r"row 2 \(line 3\) of .*gives the user feature 'genre' several values"):
        CustomDataset(str(path), user_feature_cols=["genre"]).load(tmp_path)
    with raises_one_line("'genre' is both an item and a user feature", kind=ConfigError):
        CustomDataset(str(path), item_feature_cols=["genre"], user_feature_cols=["genre"])


def test_custom_features_reach_sasrec_context(tmp_path: Path, cfg_factory) -> None:
    from recsys.wiring import build

    path = tmp_path / "events.csv"
    genre = {"a": "x|y", "b": "y", "c": "", "d": "z"}
    rows = [f"u{u},{i},{t},{genre[i]}" for u in range(3) for t, i in enumerate("abcd")]  # 4 events per user
    path.write_text("user_id,item_id,timestamp,genre\n" + "\n".join(rows) + "\n")
    cfg = cfg_factory(
        ["model=sasrec_context", "data=custom", f"data.dataset.path={path}", "data.dataset.item_feature_cols=[genre]",
         "eval.ks=[2]", "eval.monitor=val/ndcg@2"],
        data_dir=tmp_path,
    )
    _, module = build(cfg)
    assert module.model.item_context is not None


# --------------------------------------------------------------------------- helpers


def test_helpers() -> None:
    codes, tokens = remap(pd.Series(["10", "2", "b", "2"]))
    assert tokens.tolist() == ["10", "2", "b"] and codes.tolist() == [0, 1, 2, 1]  # not all numbers
    codes, tokens = remap(pd.Series(["10", "2", "2"]))
    assert tokens.tolist() == [2, 10] and codes.tolist() == [1, 0, 0]
    assert positions(np.array([1, 0, 1, 1, 0])).tolist() == [0, 0, 1, 2, 1]
    assert pad_lists([[1], [], [2, 3]]).tolist() == [[1, -1], [-1, -1], [2, 3]]
    assert pad_lists([[], []]).shape == (2, 1)
