"""``model=pop`` runs like any model (metrics.json, per-user results) without training,
and its metrics are those of an independent popularity ranking of the same split."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from hydra.utils import instantiate

from recsys.pipeline import train

SMALL = ["data.dataset.n_users=400", "data.dataset.n_items=240", "data.dataset.n_clusters=6"]


def popularity_metrics(split, stage: str, break_ties: bool) -> dict[str, float]:
    """NDCG@10 and HR@10 of ranking by training counts, computed item by item (leave-one-out:
    one target per user; the user's training items, and for test the validation item,
    are not candidates)."""
    count = [0] * split.n_items
    for item in split.train.item.tolist():
        count[item] += 1
    seen: dict[int, set[int]] = {}
    for user, item in zip(split.train.user.tolist(), split.train.item.tolist()):
        seen.setdefault(user, set()).add(item)
    targets = split.valid if stage == "val" else split.test
    ndcg, hr = [], []
    for user in range(split.n_users):
        (target,) = targets.items[targets.indptr[user] : targets.indptr[user + 1]].tolist() or (None,)
        if target is None:
            continue
        excluded = set(seen.get(user, ()))
        if stage == "test":
            excluded |= set(split.valid.items[split.valid.indptr[user] : split.valid.indptr[user + 1]].tolist())
        excluded.discard(target)
        others = [j for j in range(split.n_items) if j not in excluded and j != target]
        if break_ties:  # items before the target: more events, or as many and a lower id
            ahead = sum(1 for j in others if (count[j], -j) > (count[target], -target))
        else:  # pessimistic: every other candidate with at least as many events
            ahead = sum(1 for j in others if count[j] >= count[target])
        rank = ahead + 1
        ndcg.append(1 / math.log2(rank + 1) if rank <= 10 else 0.0)
        hr.append(1.0 if rank <= 10 else 0.0)
    return {f"{stage}/ndcg@10": sum(ndcg) / len(ndcg), f"{stage}/hr@10": sum(hr) / len(hr)}


@pytest.mark.parametrize("break_ties", [True, False])
def test_pop_run_reports_the_popularity_ranking(cfg_factory, break_ties):
    cfg = cfg_factory(["model=pop", *SMALL, f"model.break_ties={str(break_ties).lower()}"])
    metrics = train(cfg)
    out = Path(cfg.paths.output_dir)
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics)
    assert metrics["epochs"] == 0 and not list(out.glob("**/*.ckpt"))  # evaluated as built
    per_user = pd.read_csv(out / "test_per_user.csv")
    assert len(per_user) == 400 and per_user["test/ndcg@10"].mean() == pytest.approx(metrics["test/ndcg@10"], rel=1e-5)
    split = instantiate(cfg.data).prepare()
    for stage in ("val", "test"):
        expected = popularity_metrics(split, stage, break_ties)
        assert {k: metrics[k] for k in expected} == pytest.approx(expected, abs=1e-6)


def test_pop_ignores_the_loss_and_sampler_and_reports_sampled_metrics(cfg_factory):
    """Whatever loss and sampler the config has (unused), and sampled evaluation beside
    full ranking."""
    cfg = cfg_factory(["model=pop", "loss=gbce", "sampler=presampled", "data.sampled_eval=[100]", *SMALL])
    metrics = train(cfg)
    assert metrics["epochs"] == 0
    assert metrics["test_sampled100/ndcg@10"] > metrics["test/ndcg@10"] > 0  # 101 candidates vs 240
