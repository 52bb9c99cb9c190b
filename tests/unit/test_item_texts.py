"""Item texts of every dataset reader (issue 13, item 1): the real copies, the brand rule,
McAuley's metadata reader, the synthetic texts and the custom dataset's text columns."""

from __future__ import annotations

import csv
import gzip
import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from recsys.data.datasets.amazon import Beauty, LastFM, S3RecDataset, Sports, Yelp
from recsys.data.datasets.amazon_meta import read_amazon_meta, split_brands
from recsys.data.datasets.custom import CustomDataset
from recsys.data.datasets.gowalla import Gowalla
from recsys.data.datasets.movielens import ML1M, ML100K
from recsys.data.datasets.synthetic import Synthetic
from recsys.data.files import RemoteFile
from recsys.data.texts import ItemTexts
from recsys.errors import ConfigError, DataError
from test_datasets import _TinyS3Rec, raises_one_line

AMAZON_LOG = "recsys.data.datasets.amazon"


def test_item_texts_counts() -> None:
    texts = ItemTexts("t", {"a": ["x", "x", "", "y"], "b": ["", "", "", "z"]}, ("a", "b"))
    assert texts.texts() == ["x", "x", "", "y | z"]
    assert (texts.n_items, texts.n_empty(), texts.n_shared(), texts.n_distinct()) == (4, 1, 2, 3)
    assert "1 empty, 2 shared with another item, 3 distinct" in texts.summary()


# --------------------------------------------------------------------------- MovieLens


def test_ml1m_texts_match_item_meta(data_dir: Path) -> None:
    texts = ML1M(download=False).item_texts(data_dir)
    meta = pd.read_csv(data_dir / "ml-1m" / "item_meta.tsv", sep="\t", quoting=csv.QUOTE_NONE, dtype=str)
    assert texts.n_items == len(meta) == 3416 and texts.order == ("title", "genres")
    index = meta["sas_item_id"].astype(int) - 1  # 1-based sas ids -> the 0-based ids of load()
    assert [texts.fields["title"][i] for i in index] == meta["title"].tolist()
    assert [texts.fields["genres"][i] for i in index] == meta["genres"].str.replace("|", ", ").tolist()
    assert texts.text(0) == "Raiders of the Lost Ark (1981) | Action, Adventure"
    assert texts.n_empty() == 0


def test_ml100k_texts(data_dir: Path) -> None:
    dataset = ML100K(download=False)
    texts = dataset.item_texts(data_dir)
    assert texts.n_items == 1682 and texts.order == ("title", "genres")
    assert texts.text(0) == "Toy Story (1995) | Animation, Children's, Comedy"  # item token 1
    assert texts.text(266) == ""  # token 267: title, year and genre are placeholders
    assert texts.text(1372) == "Good Morning (1971)"  # genre "unknown" dropped
    # same ids as load(): every item has as many genres in its text as in its genre feature
    genres = dataset.load(data_dir).interactions.item_features["genres"]
    n_codes = (genres >= 0).sum(1).tolist()
    n_names = [len(g.split(", ")) if g else 0 for g in texts.fields["genres"]]
    assert sum(a != b for a, b in zip(n_codes, n_names)) == 2  # items 267 and 1373 ("unknown")


# --------------------------------------------------------------------------- S3-Rec


def test_beauty_brand_and_categories(data_dir: Path) -> None:
    texts = Beauty(download=False).item_texts(data_dir)
    assert texts.n_items == 12101 and texts.order == ("brand", "categories") and texts.n_empty() == 0
    assert texts.text(0) == "OPI | Makeup, Nails, Nail Polish"
    assert texts.text(2) == "Skin Care, Face, Creams & Moisturizers"  # brand "Unknown": no brand
    assert texts.text(96) == "Scissors | Hair Care, Styling Tools, Scissors"  # a brand named like a category
    assert texts.text(438) == "Fragrance"  # a root category alone
    assert "Burt's Bees" in texts.fields["brand"]  # HTML entities decoded
    roots = {c.split(", ")[0] for c in texts.fields["categories"]}
    assert roots == {"Makeup", "Skin Care", "Hair Care", "Tools & Accessories", "Bath & Body", "Fragrance"}
    assert sum(1 for b in texts.fields["brand"] if b) == 7458


def test_split_brands_rule() -> None:
    lists = [
        ["OPI", "Makeup", "Nails"],  # OPI is never at a later position: a brand; Makeup a root
        ["Makeup", "Nails"],  # Makeup appears later elsewhere and Nails is no root: no brand
        ["Acme", "Hair Care", "Scissors"],  # Hair Care becomes a root
        ["Scissors", "Hair Care", "Styling Tools"],  # Scissors also a category, but a root follows
        ["Fragrance"],  # a lone name is a category (every item has one)
        ["Solo", "Fragrance"],  # Solo a brand
        [],
    ]
    assert split_brands(lists) == [
        ("OPI", ["Makeup", "Nails"]),
        ("", ["Makeup", "Nails"]),
        ("Acme", ["Hair Care", "Scissors"]),
        ("Scissors", ["Hair Care", "Styling Tools"]),
        ("", ["Fragrance"]),
        ("Solo", ["Fragrance"]),
        ("", []),
    ]


@pytest.mark.parametrize("cls", [LastFM, Yelp, Sports], ids=lambda c: c.name)
def test_attribute_id_texts(data_dir: Path, cls: type[S3RecDataset], caplog) -> None:
    with caplog.at_level(logging.WARNING, logger=AMAZON_LOG):
        texts = cls(download=False).item_texts(data_dir)
    warnings = [r for r in caplog.records if r.name == AMAZON_LOG]
    assert len(warnings) == 1 and "attribute names are unknown" in warnings[0].getMessage()
    assert texts.order == ("attributes",) and texts.n_items == cls.stats.items
    mapping = json.loads((data_dir / cls.subdir / f"{cls.prefix}_item2attributes.json").read_text())
    for key in ("1", "2", str(texts.n_items)):
        expected = ", ".join(f"attribute {a}" for a in dict.fromkeys(mapping.get(key, [])))
        assert texts.text(int(key) - 1) == expected
    assert texts.n_empty() == sum(1 for i in range(1, texts.n_items + 1) if not mapping.get(str(i)))


def test_beauty_without_item_meta_tsv(data_dir: Path, tmp_path: Path, caplog) -> None:
    folder = tmp_path / "amazon-beauty"
    folder.mkdir()
    for f in Beauty.files:
        (folder / f.name).symlink_to(data_dir / "amazon-beauty" / f.name)
    with caplog.at_level(logging.WARNING, logger=AMAZON_LOG):
        texts = Beauty(download=False).item_texts(tmp_path)
    assert texts.order == ("attributes",) and texts.text(3).startswith("attribute 1, attribute 2")
    assert sum("attribute names are unknown" in r.getMessage() for r in caplog.records) == 1


# --------------------------------------------------------------------------- McAuley metadata


class _TinyAmazon(_TinyS3Rec):
    meta_file = RemoteFile("meta_Tiny.json.gz", "file:///nonexistent/meta_Tiny.json.gz")


META_LINES = [
    "{'asin': 'A1', 'title': 'Nail Lacquer &amp; Top  Coat', 'brand': 'OPI', 'categories': [['Beauty']]}",
    '{"asin": "A2", "title": "Rose Cream", "price": 3.5}',  # strict JSON
    "{'asin': 'ZZ', 'title': 'not in the dataset'}",
    "{'asin': 'A3', 'related': {'also_bought': ['A1']}}",  # no title
]


def write_tiny_amazon(root: Path, meta_lines: list[str] | None = META_LINES) -> Path:
    folder = root / "tiny"
    folder.mkdir(parents=True)
    (folder / "Tiny.txt").write_text("1 1 2 3\n2 2 4\n")
    (folder / "Tiny_item2attributes.json").write_text(json.dumps({"1": [1, 2], "2": [3, 4], "3": [5], "4": [2]}))
    (folder / "item_meta.tsv").write_text(
        "item_id\tasin\tattributes\n1\tA1\tOPI|Makeup\n2\tA2\tAcme|Skin Care\n3\tA3\tMakeup\n4\tA4\tMakeup\n"
    )
    if meta_lines is not None:
        with gzip.open(folder / "meta_Tiny.json.gz", "wt", encoding="utf-8") as fh:
            fh.write("\n".join(meta_lines) + "\n")
    return folder


def test_meta_reader_joins_titles(tmp_path: Path) -> None:
    write_tiny_amazon(tmp_path)
    texts = _TinyAmazon(download=False).item_texts(tmp_path)
    assert texts.order == ("title", "brand", "categories")
    assert texts.fields["title"] == ["Nail Lacquer & Top Coat", "Rose Cream", "", ""]
    assert texts.texts() == [
        "Nail Lacquer & Top Coat | OPI | Makeup", "Rose Cream | Acme | Skin Care", "Makeup", "Makeup",
    ]
    assert "meta_Tiny.json.gz" in texts.source


def test_meta_reader_fallbacks(tmp_path: Path, caplog) -> None:
    write_tiny_amazon(tmp_path / "absent", meta_lines=None)
    texts = _TinyAmazon(download=False).item_texts(tmp_path / "absent")  # auto, no file: no titles
    assert texts.order == ("brand", "categories") and texts.text(0) == "OPI | Makeup"
    write_tiny_amazon(tmp_path / "off")
    assert "title" not in _TinyAmazon(item_meta="off", download=False).item_texts(tmp_path / "off").fields
    with caplog.at_level(logging.WARNING, logger=AMAZON_LOG):  # 2 of 4 asins have a title
        _TinyAmazon(download=False).item_texts(tmp_path / "off")
    assert any("covers only 2 of the 4 asins" in r.getMessage() for r in caplog.records)


def test_meta_download(tmp_path: Path) -> None:
    upstream = write_tiny_amazon(tmp_path / "upstream")
    write_tiny_amazon(tmp_path / "data", meta_lines=None)

    class _Remote(_TinyAmazon):
        meta_file = RemoteFile("meta_Tiny.json.gz", (upstream / "meta_Tiny.json.gz").as_uri())

    texts = _Remote(item_meta="download", download=False).item_texts(tmp_path / "data")
    assert texts.fields["title"][1] == "Rose Cream"
    assert (tmp_path / "data" / "tiny" / "meta_Tiny.json.gz").is_file()


def test_meta_reader_errors(tmp_path: Path) -> None:
    bad = tmp_path / "meta.json.gz"
    with gzip.open(bad, "wt") as fh:
        fh.write("{'asin': 'A1', 'title': 'ok'}\n{'asin': 'A2', 'title': broken\n")
    assert read_amazon_meta(bad, {"A1"}) == {"A1": {"asin": "A1", "title": "ok"}}  # unwanted lines are skipped
    with raises_one_line("malformed line 2 in .*meta.json.gz"):
        read_amazon_meta(bad, {"A2"})
    with raises_one_line("must be one of auto, download, off, got 'on'", ConfigError):
        Beauty(item_meta="on")
    with raises_one_line("lastfm has no Amazon product metadata", ConfigError):
        LastFM(item_meta="download")


def test_item_meta_tsv_must_match_the_attributes(tmp_path: Path) -> None:
    folder = write_tiny_amazon(tmp_path)
    (folder / "item_meta.tsv").write_text(  # names shifted by one item
        "item_id\tasin\tattributes\n1\tA1\tMakeup\n2\tA2\tOPI|Makeup\n3\tA3\tAcme|Skin Care\n4\tA4\tMakeup\n"
    )
    with raises_one_line("item_meta.tsv does not match Tiny_item2attributes.json: 2 of 4 items"):
        _TinyAmazon(download=False).item_texts(tmp_path)


# --------------------------------------------------------------------------- gowalla, synthetic


def test_gowalla_has_no_texts(tmp_path: Path) -> None:
    with raises_one_line("dataset gowalla has no item texts .* data=ml1m, .* data=custom"):
        Gowalla(download=False).item_texts(tmp_path)


def test_synthetic_texts_follow_the_planted_features() -> None:
    dataset = Synthetic(n_users=50, n_items=60, n_clusters=3, series_len=4, seed=3)
    texts = dataset.item_texts("/unused")
    features = dataset.generate().item_features
    assert texts.n_distinct() == texts.n_items == 60 and texts.n_shared() == texts.n_empty() == 0
    assert texts.texts() == Synthetic(n_users=50, n_items=60, n_clusters=3, series_len=4, seed=3).item_texts("").texts()
    category = features["category"][:, 0].tolist()
    for c in range(3):
        names = {texts.fields["category"][i] for i in range(60) if category[i] == c}
        nouns = {texts.fields["title"][i].split(" ")[1] for i in range(60) if category[i] == c}
        assert len(names) == 1 and len(nouns) == 1  # one category word per cluster
    assert len(set(texts.fields["category"])) == 3
    brand = features["brand"][:, 0].tolist()
    assert len({(b, n) for b, n in zip(brand, texts.fields["brand"])}) == len(set(brand))  # one name per brand
    assert all(t.startswith(f"{b} ") for t, b in zip(texts.fields["title"], texts.fields["brand"]))
    assert texts.fields["series"][:5] == [
        "series 1, part 1 of 4", "series 1, part 2 of 4", "series 1, part 3 of 4", "series 1, part 4 of 4",
        "series 2, part 1 of 4",
    ]
    # 10 items per cluster in series of 3: a last series of 1 (generate() used to run past the last item)
    many = Synthetic(n_users=20, n_items=140, n_clusters=14, series_len=3).item_texts("")
    assert len(set(many.fields["category"])) == 14  # "Kitchen", ..., "Tea", "Kitchen 2", "Lighting 2"
    assert many.fields["series"][18:21] == ["series 7, part 3 of 3", "series 8, part 1 of 1", "series 9, part 1 of 3"]


# --------------------------------------------------------------------------- custom


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp,title\nu1,10,5,Ten\nu1,2,6,Two\nu2,10,7,Ten again\nu2,7,8,\n")
    return path


def test_custom_texts_from_the_events_file(events: Path) -> None:
    dataset = CustomDataset(str(events), item_text_cols=["title"])
    texts = dataset.item_texts(events.parent)
    assert dataset.load(events.parent).interactions.n_items == texts.n_items == 3
    assert texts.fields["title"] == ["Two", "", "Ten"]  # ids in numeric token order 2 < 7 < 10; first row wins


@pytest.mark.parametrize("ext", ["tsv", "parquet"])
def test_custom_texts_from_a_table(events: Path, ext: str) -> None:
    table = pd.DataFrame({"item_id": ["10", "07", "99"], "name": ["Ten", "Seven", "unused"], "year": [2001, None, 1]})
    path = events.parent / f"items.{ext}"
    if ext == "parquet":
        pytest.importorskip("pyarrow")
        table.to_parquet(path)
    else:
        table.to_csv(path, sep="\t", index=False, float_format="%.0f")
    texts = CustomDataset(str(events), item_text_path=path.name).item_texts(events.parent)
    assert texts.order == ("name", "year") and texts.texts() == ["", "Seven", "Ten | 2001"]
    texts = CustomDataset(str(events), item_text_path=str(path), item_text_cols=["year"]).item_texts("/unused")
    assert texts.texts() == ["", "", "2001"]


def test_custom_text_errors(events: Path) -> None:
    with raises_one_line("dataset custom has no item texts"):
        CustomDataset(str(events)).item_texts(events.parent)
    with raises_one_line(r"missing item text file .*nope.csv"):
        CustomDataset(str(events), item_text_path="nope.csv").item_texts(events.parent)
    with raises_one_line("events.csv has no column 'genre' for item texts"):
        CustomDataset(str(events), item_text_cols=["genre"]).item_texts(events.parent)
    (events.parent / "items.csv").write_text("item_id,name\n10,Ten\n")
    with raises_one_line("items.csv has no column 'genre'"):
        CustomDataset(str(events), item_text_path="items.csv", item_text_cols=["genre"]).item_texts(events.parent)
