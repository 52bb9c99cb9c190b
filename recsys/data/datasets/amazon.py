"""Sequential benchmarks in the S3-Rec format: Amazon Beauty and Sports, Yelp, Last.fm.

Source: K. Zhou et al., "S3-Rec: Self-Supervised Learning for Sequential Recommendation with
Mutual Information Maximization", CIKM 2020, github.com/RUCAIBox/CIKM2020-S3Rec (``data/``).
The Amazon sets come from J. McAuley et al.'s Amazon review data (5-core), Yelp from the
Yelp Open Dataset and Last.fm from the HetRec 2011 Last.fm-2k set.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from recsys.data.datasets.base import Dataset, Stats
from recsys.data.datasets.parsing import make_interactions, no_interactions, read_item_attributes, read_sequences
from recsys.data.files import RemoteFile
from recsys.data.interactions import RawData

_UPSTREAM = "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/2a81540ae18615d88ef88227b0c066e5b74781e5/data/"


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
    """

    prefix: ClassVar[str]
    source = "github.com/RUCAIBox/CIKM2020-S3Rec (data/)"

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
