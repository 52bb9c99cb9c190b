"""Sequential benchmarks in the S3-Rec format: Amazon Beauty and Sports, Yelp, Last.fm.

Source: K. Zhou et al., "S3-Rec: Self-Supervised Learning for Sequential Recommendation with
Mutual Information Maximization", CIKM 2020, github.com/RUCAIBox/CIKM2020-S3Rec (``data/``).
The Amazon sets come from J. McAuley et al.'s Amazon review data (5-core), Yelp from the
Yelp Open Dataset and Last.fm from the HetRec 2011 Last.fm-2k set.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import torch

from recsys.data.datasets.amazon_meta import (
    brand_text,
    name_text,
    read_amazon_meta,
    read_item_meta_tsv,
    split_brands,
    title_text,
)
from recsys.data.datasets.base import Dataset, Stats
from recsys.data.datasets.parsing import make_interactions, no_interactions, read_item_attributes, read_sequences
from recsys.data.files import RemoteFile, resolve
from recsys.data.interactions import RawData
from recsys.data.texts import ItemTexts, join_names
from recsys.errors import ConfigError, DataError

log = logging.getLogger(__name__)

_UPSTREAM = "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/2a81540ae18615d88ef88227b0c066e5b74781e5/data/"
_MCAULEY = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
ITEM_META_TSV = "item_meta.tsv"  # optional local file (amazon-beauty): item_id, asin, attribute names
ITEM_META_MODES = ("auto", "download", "off")
MIN_META_COVERAGE = 0.9  # warn when the metadata file has titles for fewer of the dataset's asins


def _s3rec_files(prefix: str, sha_txt: str, sha_json: str) -> tuple[RemoteFile, ...]:
    return (
        RemoteFile(f"{prefix}.txt", _UPSTREAM + f"{prefix}.txt", sha_txt),
        RemoteFile(f"{prefix}_item2attributes.json", _UPSTREAM + f"{prefix}_item2attributes.json", sha_json),
    )


class S3RecDataset(Dataset):
    """A dataset in the S3-Rec format.

    ``<prefix>.txt`` holds one user per line, ``user item1 item2 ...`` in chronological
    order with 1-based ids (``n_items`` is the largest item id; no timestamps, so ``time`` is
    the position in the user's sequence). ``<prefix>_item2attributes.json`` maps each item id
    to its attribute ids (brand and categories for Amazon, categories for Yelp, tags for
    Last.fm): item feature ``attributes`` ``[n_items, L]``, 0-based and padded with ``-1``,
    each attribute kept once per item. Repeated (user, item) events are kept.

    Item texts (:meth:`item_texts`) come from the optional local ``item_meta.tsv`` (attribute
    names and asins, amazon-beauty) and McAuley's ``meta_<Category>.json.gz`` (titles);
    without them an item's text is its attribute ids.

    Args:
        item_meta: McAuley's product metadata, for item titles: ``auto`` reads it when it
            is in the dataset's folder, ``download`` also fetches it when missing, ``off``
            ignores it. It is joined through the asins of ``item_meta.tsv``.
        download: fetch missing dataset files from the public upstream.
    """

    prefix: ClassVar[str]
    meta_file: ClassVar[RemoteFile | None] = None  # McAuley's metadata of the category, if it has one
    source = "github.com/RUCAIBox/CIKM2020-S3Rec (data/)"

    def __init__(self, item_meta: str = "auto", download: bool = True) -> None:
        super().__init__(download=download)
        if item_meta not in ITEM_META_MODES:
            raise ConfigError(f"data.dataset.item_meta must be one of {', '.join(ITEM_META_MODES)}, got {item_meta!r}")
        if item_meta == "download" and self.meta_file is None:
            raise ConfigError(
                f"data.dataset.item_meta is download but {self.name} has no Amazon product metadata to download; "
                f"use auto or off"
            )
        self.item_meta = item_meta

    def parse(self, paths: dict[str, Path]) -> RawData:
        path = paths[f"{self.prefix}.txt"]
        line_users, user, item, position = read_sequences(path, first_id=1)
        if user.size == 0:
            raise no_interactions(path)
        n_users, n_items = int(line_users.max()), int(item.max())
        inter = make_interactions(user - 1, item - 1, position, n_users, n_items, has_timestamps=False)
        attributes, n_attributes = read_item_attributes(paths[f"{self.prefix}_item2attributes.json"], n_items)
        inter.item_features = {"attributes": attributes}
        inter.feature_cardinality = {"attributes": n_attributes}
        return RawData(interactions=inter)

    def item_texts(self, data_dir: Path | str) -> ItemTexts:
        """Texts from ``item_meta.tsv`` (``brand``, ``categories``) and the product metadata
        (``title``) when present, else ``attributes``: the attribute ids of
        ``<prefix>_item2attributes.json`` (``attribute 17, attribute 28``)."""
        attributes = self.load(data_dir).interactions.item_features["attributes"]  # [I, L] 0-based, -1 pad
        tsv = Path(data_dir).expanduser() / self.subdir / ITEM_META_TSV
        if not tsv.is_file():
            log.warning(
                "%s: attribute names are unknown (no %s in %s), so item texts are attribute ids", self.name,
                ITEM_META_TSV, tsv.parent,
            )
            ids = [[f"attribute {a + 1}" for a in row if a >= 0] for row in attributes.tolist()]
            fields = {"attributes": [join_names(names) for names in ids]}
            return ItemTexts(self.name, fields, ("attributes",), source=f"{self.prefix}_item2attributes.json")
        rows = read_item_meta_tsv(tsv, attributes.shape[0])
        self._check_aligned(tsv, rows, attributes)
        split = split_brands([r[1] if r else [] for r in rows])
        fields = {
            "brand": [brand_text(brand) for brand, _ in split],
            "categories": [join_names([name_text(c) for c in categories]) for _, categories in split],
        }
        order, source = ("brand", "categories"), ITEM_META_TSV
        meta = self._meta_path(data_dir)
        if meta is not None:
            asins = [r[0] if r else "" for r in rows]
            records = read_amazon_meta(meta, {a for a in asins if a})
            fields = {"title": [title_text(records.get(a)) for a in asins], **fields}
            order, source = ("title", *order), f"{ITEM_META_TSV}, {meta.name} (titles, joined by asin)"
            self._check_coverage(meta, fields["title"], asins)
        return ItemTexts(self.name, fields, order, source=source)

    def _meta_path(self, data_dir: Path | str) -> Path | None:
        """The product metadata file, per ``item_meta``; ``None`` when not used."""
        if self.meta_file is None or self.item_meta == "off":
            return None
        local = Path(data_dir).expanduser() / self.subdir / self.meta_file.name
        if self.item_meta == "auto":
            return local if local.is_file() else None
        return resolve(self.meta_file, data_dir, self.subdir, download=True)

    def _check_aligned(self, tsv: Path, rows: list, attributes: torch.Tensor) -> None:
        """``item_meta.tsv`` must name as many distinct attributes per item as the JSON file
        has ids: a file of another copy (shifted ids) fails this on most items."""
        n_ids = (attributes >= 0).sum(1).tolist()  # [I]
        n_names = [len(set(r[1])) if r else 0 for r in rows]
        bad = sum(a != b for a, b in zip(n_ids, n_names))
        if bad > 0.01 * len(rows):
            raise DataError(
                f"{tsv} does not match {self.prefix}_item2attributes.json: {bad:,} of {len(rows):,} items have a "
                f"different number of attribute names than attribute ids; it belongs to another copy, "
                f"remove or replace it"
            )

    def _check_coverage(self, meta: Path, titles: list[str], asins: list[str]) -> None:
        """A local metadata file is not checksummed (and Sports' has no known checksum): it is
        checked by how many of the dataset's asins it gives a title."""
        known = sum(1 for a in asins if a)
        covered = sum(1 for a, t in zip(asins, titles) if a and t)
        if known and covered < MIN_META_COVERAGE * known:
            log.warning(
                "%s covers only %d of the %d asins of %s (%.0f%%): it is probably not the metadata of this "
                "dataset; items without a title keep their brand and categories", meta, covered, known, self.name,
                100 * covered / known,
            )


class Beauty(S3RecDataset):
    """Amazon Beauty, 5-core (S3-Rec copy)."""

    name = "beauty"
    subdir = "amazon-beauty"
    prefix = "Beauty"
    files = _s3rec_files(
        prefix,
        "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
        "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4",
    )
    # sha256 as published by github.com/ShyJason/CaIRec (docs/DATASETS.md, commit b6be4f45), the
    # only one found; not verified here (no network). Coverage of the asins is checked as well.
    meta_file = RemoteFile(
        "meta_Beauty.json.gz",
        _MCAULEY + "meta_Beauty.json.gz",
        "c7977dc0e0ead14ac7df8c1c6de74da00e4bebfad87a0f0c5763d4c5bc9b53a0",
    )
    stats = Stats(users=22_363, items=12_101, interactions=198_502)


class Sports(S3RecDataset):
    """Amazon Sports and Outdoors, 5-core (S3-Rec copy)."""

    name = "sports"
    subdir = "amazon-sports"
    prefix = "Sports_and_Outdoors"
    files = _s3rec_files(
        prefix,
        "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
        "7fb10733ac4f1811384a52144cdefa7fcc7536fa80a7232c5da9bd789155c34b",
    )
    # no checksum could be obtained offline: verified by how many of the asins it covers; used
    # only with a local item_meta.tsv giving each item's asin (the shared copy has none)
    meta_file = RemoteFile("meta_Sports_and_Outdoors.json.gz", _MCAULEY + "meta_Sports_and_Outdoors.json.gz", None)
    stats = Stats(users=35_598, items=18_357, interactions=296_337)


class Yelp(S3RecDataset):
    """Yelp (S3-Rec copy); holds 11,830 repeated user-item events, all kept."""

    name = "yelp"
    subdir = "yelp"
    prefix = "Yelp"
    files = _s3rec_files(
        prefix,
        "724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed",
        "f25acd5e1e680e0b22fd4e3f4fb6be4b2a7461e9222610616e3e1ee6702dd58d",
    )
    stats = Stats(users=30_431, items=20_033, interactions=316_354)


class LastFM(S3RecDataset):
    """Last.fm (S3-Rec copy of HetRec 2011 Last.fm-2k); attributes are tags."""

    name = "lastfm"
    subdir = "lastfm"
    prefix = "LastFM"
    files = _s3rec_files(
        prefix,
        "9ded486adb5b0fe9dc761950afa0a9a05e93ff018992e0c52bf11afec529f802",
        "a4ccd678dc9ff6d43fe5073f491db5c9b02eb98dfa4f8c0382913a784be217ef",
    )
    stats = Stats(users=1_090, items=3_646, interactions=52_551)
