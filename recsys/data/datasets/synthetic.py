"""A seeded synthetic dataset with planted, documented structure.

It is the default dataset so that ``python -m recsys.run`` works offline and fast, and it
is built so that each kind of model has something real to find:

* **Popularity skew** - within each taste cluster, item popularity follows a Zipf law with
  exponent ``zipf`` over a random order, so popularity-aware samplers and logQ matter.
* **Taste clusters** - items are split into ``n_clusters`` contiguous blocks; every user
  belongs to one cluster and draws ``taste`` of its free choices from it (collaborative
  filtering signal: MF and LightGCN find it).
* **Series** - each cluster is cut into series of ``series_len`` consecutive item ids;
  after item ``i`` that is not the end of its series, the next event is ``i + 1`` with
  probability ``p_series`` (sequential signal: SASRec finds it, MF cannot).
* **Side features** - users: ``age`` (5 buckets) and ``region`` (4 values), both
  correlated with the user's cluster; items: ``category`` (its cluster) and ``brand``
  (3 brands per cluster), so feature-based towers have signal.

Item texts (:meth:`Synthetic.item_texts`) follow the planted features: ``title``
``"<Brand> <category noun> no. <k>"`` (``k`` numbers the brand's items), ``brand``,
``category`` (one name per cluster) and ``series`` (``"series 12, part 3 of 5"``).

Sequence lengths are ``min_len`` plus a geometric draw with mean ``mean_extra_len``.
Everything is drawn from one ``torch.Generator`` seeded with ``seed``: the same seed gives
the same dataset on every machine.
"""

from __future__ import annotations

from pathlib import Path

import torch

from recsys.data.datasets.base import Dataset
from recsys.data.interactions import Interactions, RawData
from recsys.data.texts import ItemTexts
from recsys.errors import ConfigError, check_number

# (category name, noun) of the first clusters; later clusters reuse them with a number
CATEGORIES = (
    ("Kitchen", "kettle"), ("Lighting", "lamp"), ("Audio", "headphones"), ("Outdoors", "tent"),
    ("Books", "novel"), ("Toys", "puzzle"), ("Fragrance", "perfume"), ("Music", "guitar"),
    ("Travel", "backpack"), ("Garden", "planter"), ("Photo", "camera"), ("Tea", "tea blend"),
)
_BRAND_HEADS = ("Ar", "Bel", "Cor", "Dun", "El", "Fen", "Gal", "Hol", "Ir", "Jun", "Kel", "Lum")
_BRAND_TAILS = ("ex", "ora", "ix", "ani", "ton", "via", "mar", "eno", "ika", "ust", "ode", "wyn")


class Synthetic(Dataset):
    """Seeded generator; see the module docstring for the planted structure."""

    name = "synthetic"
    subdir = "synthetic"

    def __init__(
        self,
        n_users: int = 2000,
        n_items: int = 1000,
        n_clusters: int = 10,
        series_len: int = 5,
        min_len: int = 5,
        mean_extra_len: float = 20.0,
        max_len: int = 100,
        zipf: float = 1.0,
        taste: float = 0.8,
        p_series: float = 0.5,
        seed: int = 0,
        download: bool = False,
    ) -> None:
        super().__init__(download=download)
        if n_items % n_clusters != 0 or n_items < n_clusters * series_len:
            raise ConfigError(
                f"data.dataset.n_items ({n_items}) must be a multiple of n_clusters ({n_clusters}) "
                f"with room for at least one series of {series_len} per cluster"
            )
        check_number("data.dataset.taste", taste, 0, 1)
        check_number("data.dataset.p_series", p_series, 0, 1)
        if n_users < 1 or min_len < 3 or max_len < min_len:
            raise ConfigError(
                f"data.dataset needs n_users >= 1 and 3 <= min_len <= max_len, got {n_users}, {min_len}, {max_len}"
            )
        self.n_users, self.n_items, self.n_clusters = n_users, n_items, n_clusters
        self.series_len, self.min_len, self.max_len = series_len, min_len, max_len
        self.mean_extra_len, self.zipf, self.taste, self.p_series = mean_extra_len, zipf, taste, p_series
        self.seed = seed

    def load(self, data_dir: Path | str) -> RawData:  # needs no files
        return RawData(interactions=self.generate())

    def item_texts(self, data_dir: Path | str) -> ItemTexts:
        """Texts that spell out the planted item features of :meth:`generate` (module docstring)."""
        features = self.generate().item_features
        category = features["category"][:, 0].tolist()  # [I]
        brand = features["brand"][:, 0].tolist()  # [I]
        per_cluster = self.n_items // self.n_clusters
        n_series = -(-per_cluster // self.series_len)  # series per cluster, the last may be short
        seen: dict[int, int] = {}  # brand -> items so far
        fields: dict[str, list[str]] = {"title": [], "brand": [], "category": [], "series": []}
        for item, (c, b) in enumerate(zip(category, brand)):
            name, noun = category_name(c)
            seen[b] = seen.get(b, 0) + 1
            j = item % per_cluster  # position in the cluster
            start = j - j % self.series_len
            length = min(self.series_len, per_cluster - start)
            fields["title"].append(f"{brand_name(b)} {noun} no. {seen[b]}")
            fields["brand"].append(brand_name(b))
            fields["category"].append(name)
            series = c * n_series + j // self.series_len + 1  # numbered across clusters
            fields["series"].append(f"series {series}, part {j - start + 1} of {length}")
        return ItemTexts(self.name, fields, ("title", "brand", "category", "series"), source="Synthetic.generate")

    def generate(self) -> Interactions:
        gen = torch.Generator().manual_seed(self.seed)
        n_users, n_items, n_clusters = self.n_users, self.n_items, self.n_clusters
        per_cluster = n_items // n_clusters
        item_cluster = torch.arange(n_items) // per_cluster  # [I]
        # Zipf popularity over a random order inside each cluster.
        ranks = torch.cat([torch.randperm(per_cluster, generator=gen) for _ in range(n_clusters)]) + 1
        weight = ranks.double().pow(-self.zipf)  # [I]
        cum = torch.cumsum(weight, 0)  # [I]
        cluster_lo = torch.cat([torch.zeros(1, dtype=torch.double), cum[per_cluster - 1 :: per_cluster][:-1]])  # [C]
        cluster_hi = cum[per_cluster - 1 :: per_cluster]  # [C]
        in_cluster = torch.arange(n_items) % per_cluster  # [I] position in the cluster
        # a series ends every series_len items and at the end of its cluster (a shorter last series)
        series_end = (in_cluster % self.series_len == self.series_len - 1) | (in_cluster == per_cluster - 1)  # [I]

        user_cluster = torch.randint(n_clusters, (n_users,), generator=gen)  # [U]
        extra = _geometric(1.0 / (1.0 + self.mean_extra_len), n_users, gen)  # [U]
        lengths = (self.min_len + extra).clamp(max=self.max_len)  # [U]

        events = torch.full((n_users, self.max_len), -1, dtype=torch.long)  # [U, T]
        last = torch.full((n_users,), -1, dtype=torch.long)  # [U]
        for t in range(int(lengths.max())):
            u = torch.rand(n_users, generator=gen, dtype=torch.double)  # [U]
            in_taste = torch.rand(n_users, generator=gen) < self.taste
            lo = torch.where(in_taste, cluster_lo[user_cluster], torch.zeros_like(u))
            hi = torch.where(in_taste, cluster_hi[user_cluster], cum[-1].expand_as(u))
            choice = torch.searchsorted(cum, lo + u * (hi - lo)).clamp(max=n_items - 1)  # [U]
            can_continue = (last >= 0) & ~series_end[last.clamp(min=0)]
            follow = can_continue & (torch.rand(n_users, generator=gen) < self.p_series)
            nxt = torch.where(follow, last + 1, choice)
            active = t < lengths
            events[:, t] = torch.where(active, nxt, events[:, t])
            last = torch.where(active, nxt, last)

        mask = events >= 0  # [U, T]
        user = torch.arange(n_users).unsqueeze(1).expand_as(events)[mask]
        time = torch.arange(self.max_len).unsqueeze(0).expand_as(events)[mask]
        age = (user_cluster + (torch.rand(n_users, generator=gen) < 0.3).long() * torch.randint(5, (n_users,), generator=gen)) % 5
        region = torch.where(torch.rand(n_users, generator=gen) < 0.7, user_cluster % 4, torch.randint(4, (n_users,), generator=gen))
        brand = item_cluster * 3 + torch.randint(3, (n_items,), generator=gen)
        return Interactions(
            user=user,
            item=events[mask],
            time=time,
            n_users=n_users,
            n_items=n_items,
            has_timestamps=False,
            user_features={"age": age, "region": region},
            item_features={"category": item_cluster.unsqueeze(1), "brand": brand.unsqueeze(1)},
            feature_cardinality={"age": 5, "region": 4, "category": n_clusters, "brand": 3 * n_clusters},
        )


def category_name(cluster: int) -> tuple[str, str]:
    """``(name, noun)`` of a taste cluster: ``("Lighting", "lamp")``, ``("Lighting 2", "lamp")``..."""
    name, noun = CATEGORIES[cluster % len(CATEGORIES)]
    rounds = cluster // len(CATEGORIES)
    return (f"{name} {rounds + 1}" if rounds else name), noun


def brand_name(brand: int) -> str:
    """A made-up brand name, distinct for every brand id (``Arex``, ``Belex``...)."""
    n = len(_BRAND_HEADS)
    head, tail, rounds = _BRAND_HEADS[brand % n], _BRAND_TAILS[brand // n % n], brand // (n * n)
    return f"{head}{tail}" + (f" {rounds + 1}" if rounds else "")


def _geometric(p: float, n: int, gen: torch.Generator) -> torch.Tensor:
    """``[n]`` draws of failures before the first success, from a seeded generator."""
    u = torch.rand(n, generator=gen, dtype=torch.double).clamp(min=1e-12)
    return torch.floor(torch.log(u) / torch.log1p(torch.tensor(-p, dtype=torch.double))).long()
