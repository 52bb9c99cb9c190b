"""sampler=mixed: in-batch negatives plus a shared pool, and the mixture's log q."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from recsys.config import validate
from recsys.errors import ConfigError
from recsys.losses.ssm import SSM
from recsys.outputs import one_line
from recsys.samplers.mixed import MixedSampler
from recsys.wiring import build
from test_samplers import COUNTS, N_ITEMS, make_module, make_split, training_rows

FREQ = COUNTS / COUNTS.sum()  # [I] f_j, the in-batch candidates' distribution


@pytest.fixture
def split():
    return make_split()


def pool_probs(pool: str, alpha: float) -> np.ndarray:
    if pool == "uniform":
        return np.full(N_ITEMS, 1.0 / N_ITEMS)
    w = np.array([c**alpha if c > 0 else 0.0 for c in COUNTS], dtype=np.float64)
    return w / w.sum()


def mixed(split, **kwargs) -> MixedSampler:
    s = MixedSampler(**{"num_negatives": 4, **kwargs})
    s.setup(split)
    return s


def test_items_are_the_batch_then_a_shared_pool_with_their_log_q(split):
    s = mixed(split, num_negatives=5, pool="popularity", alpha=0.5)
    pos = torch.tensor([0, 2, 5, 0])
    neg = s.sample(pos, torch.tensor([0, 0, 2, 2]))
    assert neg.items.shape == (4 + 5,) and neg.items.dtype == torch.long  # [B' + N]: one list for every row
    assert torch.equal(neg.items[:4], pos)  # the in-batch part, as InBatchSampler gives it
    assert not bool(torch.isin(neg.items[4:], torch.tensor([6, 7])).any())  # never-trained items: p = 0
    with np.errstate(divide="ignore"):
        want = np.log(4 * FREQ + 5 * pool_probs("popularity", 0.5))  # -inf for never-trained items
    assert_close(neg.log_q, torch.from_numpy(want[neg.items.numpy()]).float())
    assert_close(neg.pos_log_q, torch.from_numpy(want[pos.numpy()]).float())  # the same formula for positives


def test_cap_keeps_a_subset_of_the_batch_and_counts_it_in_log_q(split):
    s = mixed(split, num_negatives=3, max_negatives=2)
    pos = torch.tensor([0, 1, 2, 3, 4, 5])
    neg = s.sample(pos, torch.zeros_like(pos))
    assert neg.items.shape == (2 + 3,)
    assert set(neg.items[:2].tolist()) <= set(pos.tolist())
    want = np.log(2 * FREQ + 3 / N_ITEMS)  # B' = 2, not the batch size 6
    assert_close(neg.log_q, torch.from_numpy(want[neg.items.numpy()]).float())
    assert_close(neg.pos_log_q, torch.from_numpy(want[pos.numpy()]).float())


def test_the_pool_is_drawn_again_for_every_batch(split):
    s = mixed(split, num_negatives=50)
    pos = torch.tensor([0, 1, 2])
    a, b = s.sample(pos, pos).items[3:], s.sample(pos, pos).items[3:]
    assert a.shape == b.shape == (50,) and not torch.equal(a, b)


def test_module_shares_the_pool_across_rows_and_masks_accidental_hits(split):
    module, model = make_module(split, MixedSampler(num_negatives=6, seed=3))
    module.loss = SSM()
    batch = training_rows(split)
    enc = model.encode(batch)
    rows = batch["user"].numel()
    negatives = module.sampler.sample(enc.target, enc.user)
    s = module.scores(enc, negatives)
    assert s.neg.shape == s.neg_mask.shape == s.neg_log_q.shape == (rows, rows + 6)
    items = negatives.items.unsqueeze(0).expand(rows, -1)  # every row sees the same candidates
    assert torch.equal(s.neg_mask, items != batch["item"].unsqueeze(1))  # own positive, in the batch part or the pool
    assert not bool(s.neg_mask[:, :rows].all())  # the row's own positive is always among the in-batch part
    assert torch.equal(s.neg_log_q, negatives.log_q.expand(rows, -1))
    assert bool(torch.isfinite(module.loss(s)))


@pytest.mark.parametrize(
    "pool, alpha, max_negatives",
    [("uniform", 1.0, None), ("popularity", 1.0, None), ("popularity", 0.5, 3), ("uniform", 1.0, 3)],
)
def test_log_q_is_the_empirical_expected_count(split, pool, alpha, max_negatives):
    """Positives are drawn from the training frequency; averaged over many batches, the
    number of times item j is among a batch's candidates (the in-batch part, which holds
    the rows' positives, plus the pool) is exp(log q_j) = B' f_j + N p_j."""
    b, n, batches = 6, 4, 8000
    s = mixed(split, num_negatives=n, pool=pool, alpha=alpha, max_negatives=max_negatives, seed=1)
    gen = torch.Generator().manual_seed(0)
    positives = torch.multinomial(torch.from_numpy(FREQ), batches * b, replacement=True, generator=gen).view(batches, b)
    counts = np.zeros(N_ITEMS)
    expected = np.full(N_ITEMS, np.nan)
    for pos in positives:
        neg = s.sample(pos, torch.zeros_like(pos))
        counts += np.bincount(neg.items.numpy(), minlength=N_ITEMS)
        expected[neg.items.numpy()] = neg.log_q.exp().double().numpy()  # one value per item
    empirical = counts / batches
    b_prime = min(b, max_negatives or b)
    formula = b_prime * FREQ + n * pool_probs(pool, alpha)
    seen = formula > 0
    assert np.array_equal(counts > 0, seen)  # items with q = 0 never come up, the others do
    assert np.allclose(expected[seen], formula[seen], rtol=1e-5)
    # rarest: 0.5 per batch (uniform pool) -> 4000 hits, relative sd 1.6%
    assert np.allclose(empirical[seen], formula[seen], rtol=0.05), (empirical, formula)


def draws(sampler: MixedSampler, steps: int = 3) -> list[torch.Tensor]:
    pos = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    return [sampler.sample(pos, pos).items for _ in range(steps)]


def test_same_seed_same_negatives_and_state_dict_resumes_the_stream(split):
    for pool in ("uniform", "popularity"):
        a, b, c = (mixed(split, pool=pool, max_negatives=3, seed=seed) for seed in (7, 7, 8))
        first = draws(a)
        assert all(torch.equal(x, y) for x, y in zip(first, draws(b)))
        assert not all(torch.equal(x, y) for x, y in zip(first, draws(c)))
        state = a.state_dict()
        expected = draws(a)
        restored = mixed(split, pool=pool, max_negatives=3, seed=7)
        draws(restored, 1)  # a resumed run may draw before loading the checkpoint
        restored.load_state_dict(state)
        assert all(torch.equal(x, y) for x, y in zip(draws(restored), expected))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pool": "zipf"}, "sampler.pool must be one of uniform, popularity, got 'zipf'"),
        ({"num_negatives": 0}, "sampler.num_negatives must be a positive integer, got 0"),
        ({"num_negatives": -3}, "sampler.num_negatives must be a positive integer, got -3"),
        ({"alpha": -1.0}, "sampler.alpha must be a number >= 0, got -1.0"),
        ({"max_negatives": 1}, "sampler.max_negatives must be an integer >= 2 or null, got 1"),
        ({"seed": "1"}, "sampler.seed must be an integer"),
    ],
)
def test_bad_settings_are_one_line_config_errors(kwargs, message):
    with pytest.raises(ConfigError) as info:
        MixedSampler(**kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_pool_in_the_config_fails_before_training(cfg_factory):
    validate(cfg_factory(["sampler=mixed"]))
    cfg = cfg_factory(["sampler=mixed", "sampler.pool=zipf"])
    with pytest.raises(Exception) as info:
        build(cfg)
    assert one_line(info.value) == "sampler.pool must be one of uniform, popularity, got 'zipf'"  # what the CLI prints


SMALL_MF = ["model=mf", "data.dataset.n_users=400", "data.dataset.n_items=240", "data.dataset.n_clusters=6",
            "data.batch_size=512", "optimizer.lr=0.01", "sampler=mixed", "sampler.num_negatives=32"]


@pytest.mark.parametrize("loss, pool", [("ssm", "uniform"), ("ssm", "popularity"), ("infonce", "uniform")])
def test_trains_end_to_end(cfg_factory, loss, pool):
    cfg = cfg_factory([*SMALL_MF, f"loss={loss}", f"sampler.pool={pool}", "sampler.alpha=0.75"])
    validate(cfg)
    torch.manual_seed(0)
    datamodule, module = build(cfg)
    assert isinstance(module.sampler, MixedSampler) and module.sampler.pool == pool
    optimizer = module.configure_optimizers()
    module.train()
    losses = []
    batches = iter(datamodule.train_dataloader())
    for _ in range(12):
        batch = next(batches, None) or next(batches := iter(datamodule.train_dataloader()))
        value = module.objective(batch).total
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(float(value.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) < sum(losses[:3]), losses
    if loss == "ssm":  # the correction is applied: turning it off changes the loss
        enc = module.model.encode(batch)
        s = module.scores(enc, module.sampler.sample(enc.target, enc.user))
        with torch.no_grad():
            corrected = float(module.loss(s))
            module.loss.logq_lambda = 0.0
            assert not math.isclose(corrected, float(module.loss(s)))
