"""The data side of the retrieval reward service (issue 13, item 6): rows cut from the
project's splits, negatives drawn once, prompts from item texts."""

from __future__ import annotations

import csv
from contextlib import contextmanager

import pytest
import torch

from recsys.data.interactions import Interactions, SplitData, UserItems
from recsys.data.texts import ItemTexts
from recsys.errors import ConfigError
from recsys.retrieval.data import RecommendationDataset, load_split
from recsys.retrieval.prompts import PromptGenerator


@contextmanager
def one_line_error(match: str):
    """``pytest.raises(ConfigError, match=...)`` whose message must also be one line."""
    with pytest.raises(ConfigError, match=match) as info:
        yield info
    assert "\n" not in str(info.value), str(info.value)


@pytest.fixture(scope="module")
def synthetic() -> SplitData:
    split, reader = load_split("synthetic")
    assert reader.name == "synthetic"
    return split


def tiny_split() -> SplitData:
    """3 users, 6 items; user 2 has two validation and two test targets (as a fixed or
    temporal split gives), user 1 a single training event and no targets."""
    user = torch.tensor([0, 0, 0, 1, 2, 2])
    item = torch.tensor([3, 1, 4, 5, 0, 2])
    train = Interactions(user=user, item=item, time=torch.arange(6), n_users=3, n_items=6)
    valid = UserItems.from_pairs(torch.tensor([0, 2, 2]), torch.tensor([5, 3, 4]), 3)
    test = UserItems.from_pairs(torch.tensor([0, 2, 2]), torch.tensor([0, 5, 1]), 3)
    return SplitData(train=train, valid=valid, test=test)


def rows(ds: RecommendationDataset) -> list[tuple[int, list[int], int]]:
    return [(r["user_id"], r["history"], r["target"]) for r in (ds[i] for i in range(len(ds)))]


# ---------------------------------------------------------------- rows
def test_rows_of_a_hand_made_split():
    split = tiny_split()
    assert rows(RecommendationDataset(split, "train")) == [(0, [3, 1], 4), (2, [0], 2)]
    assert rows(RecommendationDataset(split, "valid")) == [(0, [3, 1, 4], 5), (2, [0, 2], 3), (2, [0, 2], 4)]
    assert rows(RecommendationDataset(split, "test")) == [
        (0, [3, 1, 4, 5], 0), (2, [0, 2, 3, 4], 5), (2, [0, 2, 3, 4], 1)]
    assert rows(RecommendationDataset(split, "test", max_history=2)) == [(0, [4, 5], 0), (2, [3, 4], 5), (2, [3, 4], 1)]


def test_valid_rows_keep_only_the_validated_users_of_split_valid_users():
    split = tiny_split()
    split.valid_users = torch.tensor([2])  # user 0's validation item stays held out, in its test history
    assert rows(RecommendationDataset(split, "valid")) == [(2, [0, 2], 3), (2, [0, 2], 4)]
    assert rows(RecommendationDataset(split, "test"))[0] == (0, [3, 1, 4, 5], 0)


def per_user(split: SplitData) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """Each user's training items (time order), validation and test items, from the split."""
    n, train = split.n_users, [[] for _ in range(split.n_users)]
    for u, i in zip(split.train.user.tolist(), split.train.item.tolist()):
        train[u].append(i)
    held = [[split_part.items[split_part.indptr[u] : split_part.indptr[u + 1]].tolist() for u in range(n)]
            for split_part in (split.valid, split.test)]
    return train, held[0], held[1]


def test_rows_follow_the_synthetic_split(synthetic):
    train, valid, test = per_user(synthetic)
    assert rows(RecommendationDataset(synthetic, "train")) == [
        (u, t[:-1], t[-1]) for u, t in enumerate(train) if len(t) >= 2]
    assert rows(RecommendationDataset(synthetic, "valid")) == [
        (u, train[u], v) for u in range(synthetic.n_users) for v in valid[u]]
    assert rows(RecommendationDataset(synthetic, "test")) == [
        (u, train[u] + valid[u], s) for u in range(synthetic.n_users) for s in test[u]]
    assert len(RecommendationDataset(synthetic, "test")) == synthetic.n_users  # leave-one-out: one row per user


def test_max_history_keeps_the_most_recent_events(synthetic):
    full, cut = RecommendationDataset(synthetic, "valid"), RecommendationDataset(synthetic, "valid", max_history=5)
    for i in range(0, len(full), 97):
        assert cut[i]["history"] == full[i]["history"][-5:] and cut[i]["target"] == full[i]["target"]


# ---------------------------------------------------------------- negatives
@pytest.mark.parametrize("which", ["train", "valid", "test"])
def test_negatives_avoid_the_history_and_target_of_every_row(synthetic, which):
    ds = RecommendationDataset(synthetic, which, num_negs=20, seed=3, max_history=4)
    full = RecommendationDataset(synthetic, which)  # the uncut histories
    n_items, n_rows = synthetic.n_items, len(ds)
    negs = ds.neg_items  # [R, 20]
    assert negs.shape == (n_rows, 20) and negs.dtype == torch.long
    assert int(negs.min()) >= 0 and int(negs.max()) < n_items
    row, item = full.history.rows(torch.arange(n_rows))
    seen = torch.cat([row * n_items + item, torch.arange(n_rows) * n_items + full.target])  # whole history + target
    drawn = torch.arange(n_rows).unsqueeze(1) * n_items + negs  # [R, 20]
    assert not bool(torch.isin(drawn, seen).any())
    assert all(len(ds[i]["neg_items"]) == 20 for i in (0, n_rows - 1))


def test_negatives_are_drawn_once_from_the_seed(synthetic):
    a = RecommendationDataset(synthetic, "train", num_negs=8, seed=1)
    b = RecommendationDataset(synthetic, "train", num_negs=8, seed=1)
    c = RecommendationDataset(synthetic, "train", num_negs=8, seed=2)
    assert torch.equal(a.neg_items, b.neg_items) and not torch.equal(a.neg_items, c.neg_items)
    assert a[5]["neg_items"] == a[5]["neg_items"] == b[5]["neg_items"]


def test_no_negatives_gives_empty_lists(synthetic):
    ds = RecommendationDataset(synthetic, "valid")
    assert ds[0]["neg_items"] == [] and ds[0]["prompt"] == ""
    assert set(map(len, ds.columns()["neg_items"])) == {0}


def test_a_row_with_too_few_allowed_items_is_one_line():
    with one_line_error(r"num_negs=2 .*user 0\) has only 1 items .*lower num_negs"):
        RecommendationDataset(tiny_split(), "test", num_negs=2)  # each row: 4 seen + 1 target of 6 items
    only = RecommendationDataset(tiny_split(), "test", num_negs=1)  # ... so one item is left to draw
    assert only.neg_items.tolist() == [[2], [1], [5]]


def test_columns_match_the_rows(synthetic):
    texts = ItemTexts("synthetic", {"title": [f"item {i}" for i in range(synthetic.n_items)]}, ("title",))
    ds = RecommendationDataset(synthetic, "test", num_negs=2, prompt_generator=PromptGenerator(texts, k=3))
    cols = ds.columns()
    assert set(cols) == {"prompt", "history", "target", "user_id", "neg_items"}
    assert all(len(v) == len(ds) for v in cols.values())
    for i in (0, 1, len(ds) - 1):
        assert {k: v[i] for k, v in cols.items()} == ds[i]


# ---------------------------------------------------------------- prompts
def movie_texts() -> ItemTexts:
    return ItemTexts(
        "toy",
        {"title": ["Toy Story (1995)", "Heat (1995)", "Up (2009)", ""],
         "genres": ["Animation, Comedy", "Action, Crime", "", "Drama"]},
        ("title", "genres"),
    )


def test_the_prompt_lists_the_last_k_items_and_names_the_most_recent():
    prompt = PromptGenerator(movie_texts(), k=2)([2, 0, 1])
    assert prompt.splitlines() == [
        "The user's most recent items, oldest first (the last 2 of 3):",
        "1. Toy Story (1995) | Animation, Comedy",
        "2. Heat (1995) | Action, Crime",
        "Most recent: Heat (1995)",
        "Describe the next item this user will want: its title and genres.",
    ]
    only = PromptGenerator(movie_texts(), k=5, fields=["genres"], task="Name it.")([3])
    assert only.splitlines()[1:] == ["1. Drama", "Most recent: Drama", "Name it."]
    assert "2. Drama" in PromptGenerator(movie_texts())([0, 3])  # no title: the other fields name it
    assert "no history" in PromptGenerator(movie_texts())([])


def test_prompt_arguments_are_checked_in_one_line():
    with one_line_error(r"unknown item text field\(s\) 'brand' for toy: available fields are title, genres"):
        PromptGenerator(movie_texts(), fields=["title", "brand"])
    with one_line_error("k must be an integer >= 1"):
        PromptGenerator(movie_texts(), k=0)


# ---------------------------------------------------------------- loading
def test_unknown_data_and_kcore_are_refused_in_one_line():
    with one_line_error(r"unknown data 'ml2m': available datasets are .*ml1m.*synthetic"):
        load_split("ml2m")
    with one_line_error(r"data.item_core=5 asks for k-core filtering.* set data.item_core=0"):
        load_split("synthetic", overrides=["data.item_core=5"])
    with one_line_error(r"data.nope is not in the config"):
        load_split("synthetic", overrides=["data.nope=1"])
    with one_line_error("unknown split 'dev'"):
        RecommendationDataset(tiny_split(), "dev")


def test_loading_leaves_another_callers_hydra_alone():
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from recsys.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        theirs = GlobalHydra.instance().hydra
        split, _ = load_split("synthetic", overrides=["data.dataset.n_users=50"])
        assert GlobalHydra.instance().hydra is theirs
    assert split.n_users == 50


def test_ml1m_rows_and_default_prompts_on_the_real_data(data_dir, monkeypatch):
    """The real ml1m split, with titles from ``ml-1m/item_meta.tsv`` (``sas_item_id`` 1-based)."""
    from recsys.data.datasets.movielens import ML1M

    with open(data_dir / "ml-1m" / "item_meta.tsv", newline="") as f:
        meta = sorted(csv.DictReader(f, delimiter="\t"), key=lambda r: int(r["sas_item_id"]))
    texts = ItemTexts("ml1m", {"title": [r["title"] for r in meta],
                               "genres": [r["genres"].replace("|", ", ") for r in meta]}, ("title", "genres"))
    monkeypatch.setattr(ML1M, "item_texts", lambda self, path: texts, raising=False)
    ds = RecommendationDataset("ml1m", "test", num_negs=5, prompt_generator="default", data_dir=data_dir)
    assert len(ds) == ds.split_data.n_users == 6040 and ds.split_data.n_items == texts.n_items == 3416
    row = ds[0]
    lines = row["prompt"].splitlines()
    assert lines[1:11] == [f"{n}. {texts.text(i)}" for n, i in enumerate(row["history"][-10:], 1)]
    assert lines[11] == f"Most recent: {texts.fields['title'][row['history'][-1]]}"
    assert row["target"] not in row["history"] and not set(row["neg_items"]) & {*row["history"], row["target"]}
