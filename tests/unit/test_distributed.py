"""The pieces of a DDP run (``trainer=ddp``) that need no processes: the batch sharding,
the evaluator's merge of every process's users (padding duplicates dropped exactly), the
per-rank random streams, which process writes, and the refusal of a DDP sweep. The runs
with two processes are in ``tests/integration/test_ddp.py``."""

from __future__ import annotations

import pytest
import torch
from omegaconf import open_dict, read_write

import recsys.metrics.evaluator as evaluator_module
from recsys.data.datamodule import IndexBatches, ShardedBatches
from recsys.data.interactions import UserItems
from recsys.distributed import is_rank_zero, stream_name
from recsys.errors import ConfigError, TrainingError
from recsys.metrics.evaluator import RankingEvaluator, first_of_each
from recsys.metrics.popularity import ItemPopularity
from recsys.samplers.uniform import UniformSampler
from recsys.wiring import check_strategy

N_USERS, N_ITEMS, KS = 29, 37, [3, 10]


@pytest.mark.parametrize("n, batch_size, world", [(29, 6, 2), (29, 3, 3), (8, 4, 2), (3, 4, 2)])
def test_sharded_batches_cover_every_batch_and_pad_the_last_round(n, batch_size, world):
    batches = list(IndexBatches(n, batch_size, shuffle=False))
    shards = [list(ShardedBatches(IndexBatches(n, batch_size, shuffle=False), world, r)) for r in range(world)]
    steps = -(-len(batches) // world)
    assert all(len(s) == steps for s in shards)  # every process takes the same number of steps
    for r, shard in enumerate(shards):  # batch i on rank i % world, padded with the first batches
        for j, got in enumerate(shard):
            assert torch.equal(got, batches[(j * world + r) % len(batches)])
    seen = torch.cat([b for s in shards for b in s])
    assert set(seen.tolist()) == set(range(n))


def test_sharded_batches_follow_the_epoch_and_share_one_shuffle():
    def epoch_rows(rank, epoch):
        sampler = ShardedBatches(IndexBatches(40, 4, shuffle=True, seed=7), 2, rank)
        sampler.set_epoch(epoch)
        return torch.cat(list(sampler))

    assert not torch.equal(epoch_rows(0, 0), epoch_rows(0, 1))  # set_epoch reaches the shuffle
    both = torch.cat([epoch_rows(0, 3), epoch_rows(1, 3)])
    assert sorted(both.tolist()) == list(range(40))  # the ranks' rows never overlap


def random_scores(seed: int = 3) -> tuple[torch.Tensor, UserItems, ItemPopularity]:
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(N_USERS, N_ITEMS, generator=gen)
    scores[5, :8] = scores[5, 8]  # ties
    rows = torch.repeat_interleave(torch.arange(N_USERS), 4)
    items = torch.randint(0, N_ITEMS, (rows.numel(),), generator=gen)
    keep = items != 2  # item 2 is every user's target
    exclude_row, exclude_item = rows[keep], items[keep]
    few = torch.arange(N_ITEMS)[torch.arange(N_ITEMS) != 2][:-5]  # user 7 has 5 allowed items: top-10 lists with holes
    exclude_row, exclude_item = torch.cat([exclude_row, torch.full_like(few, 7)]), torch.cat([exclude_item, few])
    exclude = UserItems.from_pairs(exclude_row, exclude_item, N_USERS)
    counts = torch.randint(0, 30, (N_ITEMS,), generator=gen)
    return scores, exclude, ItemPopularity.from_counts(counts, counts.clamp(max=9), 40)


def batch_of(users: torch.Tensor, exclude: UserItems, sampled: torch.Tensor) -> dict[str, torch.Tensor]:
    targets = UserItems.from_pairs(torch.arange(N_USERS), torch.full((N_USERS,), 2), N_USERS)
    batch = {"user": users, "target": targets.padded(users), "sampled6": sampled[users]}
    batch["exclude_row"], batch["exclude_item"] = exclude.rows(users)
    return batch


@pytest.mark.parametrize("batch_size, world", [(6, 2), (3, 3), (4, 2)])
def test_merged_shards_give_exactly_the_single_process_results(monkeypatch, batch_size, world):
    """Each simulated process evaluates its shard (the padding repeats users); merging their
    states gives the single process's metrics, per-user table, exposure and counts, bit for
    bit, in every process."""
    scores, exclude, popularity = random_scores()
    scores[11, 4] = float("nan")  # a non-finite user, counted once although user 11 may be repeated
    sampled = torch.randint(3, N_ITEMS, (N_USERS, 6), generator=torch.Generator().manual_seed(1))

    def run(sampler, distributed: bool) -> RankingEvaluator:
        monkeypatch.setattr(evaluator_module, "world_size", lambda: world if distributed else 1)
        ev = RankingEvaluator(KS, N_ITEMS)
        ev.set_popularity(popularity)
        for users in sampler:
            ev.update(scores[users].clone(), batch_of(users, exclude, sampled), "test")
        return ev

    single = run(IndexBatches(N_USERS, batch_size, shuffle=False), distributed=False)
    shards = [run(ShardedBatches(IndexBatches(N_USERS, batch_size, shuffle=False), world, r), True) for r in range(world)]
    states = [ev.local_state() for ev in shards]
    assert sum(s["per_user"]["user"].numel() for s in states) >= N_USERS
    for ev in shards:
        ev.merge(states)
        assert (ev.n_users, ev.nonfinite_users) == (single.n_users, single.nonfinite_users) == (N_USERS, 1)
        assert all(torch.equal(ev.exposure[k], single.exposure[k]) for k in KS)
        want, got = single.per_user_table(), ev.per_user_table()
        assert want.keys() == got.keys() and all(torch.equal(got[name], want[name]) for name in want)
        with pytest.raises(TrainingError, match="1 of 29 users"):
            ev.compute("test")
    scores[11, 4] = 0.0
    single = run(IndexBatches(N_USERS, batch_size, shuffle=False), distributed=False)
    shards = [run(ShardedBatches(IndexBatches(N_USERS, batch_size, shuffle=False), world, r), True) for r in range(world)]
    states = [ev.local_state() for ev in shards]
    shards[-1].merge(states)
    want = single.compute("test")
    assert shards[-1].compute("test") == want  # exactly, NaN-free
    assert {"test/coverage@10", "test/gini@3", "test_sampled6/ndcg@3", "test/novelty@10"} <= want.keys()


def test_gather_is_nothing_in_a_single_process():
    ev = RankingEvaluator(KS, N_ITEMS)
    scores, exclude, _ = random_scores()
    ev.update(scores.clone(), batch_of(torch.arange(N_USERS), exclude, torch.zeros(N_USERS, 6, dtype=torch.long)), "val")
    before = ev.compute("val")
    ev.gather()
    assert ev.compute("val") == before and not ev.top_lists


def test_first_of_each_keeps_the_first_row_of_every_id_in_id_order():
    assert first_of_each(torch.tensor([4, 1, 4, 0, 1, 9])).tolist() == [3, 1, 0, 5]


def test_each_rank_draws_its_own_negatives_and_rank_0_the_single_process_ones():
    def draws(rank: int | None) -> torch.Tensor:
        sampler = UniformSampler(num_negatives=50, seed=42)
        sampler.n_items = 1000
        if rank is not None:
            sampler.set_rank(rank)
        return sampler.sample(torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long)).items

    assert torch.equal(draws(None), draws(0))
    assert not torch.equal(draws(0), draws(1)) and not torch.equal(draws(1), draws(2))
    assert torch.equal(draws(1), draws(1))
    assert stream_name("sampler", 0) == "sampler" and stream_name("sampler", 3) == "sampler/rank3"


@pytest.mark.parametrize("env, zero", [
    ({}, True), ({"LOCAL_RANK": "1"}, False), ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),
    ({"RANK": "0", "LOCAL_RANK": "0"}, True), ({"RANK": "3", "LOCAL_RANK": "1"}, False),
])
def test_the_writing_process_before_the_process_group_starts(monkeypatch, env, zero):
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert is_rank_zero() is zero


def test_a_ddp_sweep_is_refused_with_the_way_out(cfg_factory):
    cfg = cfg_factory(["trainer=ddp"])
    check_strategy(cfg.trainer)  # a single run is fine
    from hydra.core.hydra_config import HydraConfig

    with read_write(cfg.hydra), open_dict(cfg):
        cfg.hydra.mode = "MULTIRUN"
    HydraConfig.instance().set_config(cfg)
    with pytest.raises(ConfigError, match="trainer=ddp .* sweep \\(-m\\)"):
        check_strategy(cfg.trainer)
    check_strategy(cfg_factory(["trainer=cpu"]).trainer)


def test_the_freeze_curriculum_is_refused_under_ddp(cfg_factory):
    """DDP would not synchronize the gradients of what the curriculum unfreezes later."""
    cfg = cfg_factory(["trainer=ddp", "model=two_tower", "callbacks=[default,freeze_curriculum]"])
    with pytest.raises(ConfigError, match="callbacks freeze_curriculum unfreezes parameters .* one device"):
        check_strategy(cfg.trainer, cfg.callbacks)
    single = cfg_factory(["trainer=cpu", "model=two_tower", "callbacks=[default,freeze_curriculum]"])
    check_strategy(single.trainer, single.callbacks)  # one process: fine
    check_strategy(cfg_factory(["trainer=ddp"]).trainer, cfg_factory(["trainer=ddp"]).callbacks)
