"""Evaluation inside :class:`RecModule`: scores in float32 whatever the autocast precision,
and NaN or infinite scores that stop the stage instead of becoming metrics."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from recsys.data.interactions import UserItems
from recsys.errors import TrainingError
from recsys.losses.bpr import BPR
from recsys.metrics.evaluator import RankingEvaluator
from recsys.models.mf import MF
from recsys.module import RecModule
from recsys.samplers.uniform import UniformSampler

N_USERS, N_ITEMS = 48, 3000
CUDA = pytest.param(
    "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
)


def make_module(seed: int = 0) -> RecModule:
    """An untrained MF over a catalogue large enough for bf16 scores to tie."""
    torch.manual_seed(seed)
    model = MF(N_USERS, N_ITEMS, embedding_dim=32, init_std=0.1)
    optimizer = partial(torch.optim.Adam, lr=1e-3)
    return RecModule(model, BPR(), UniformSampler(), optimizer, n_items=N_ITEMS, ks=[10, 100]).eval()


def eval_batches(batch_size: int = 20, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Batches shaped like ``RecDataModule.eval_batch``: 1..3 targets and 5 excluded items per user."""
    rng = np.random.default_rng(seed)
    t_user, t_item, e_user, e_item = [], [], [], []
    for u in range(N_USERS):
        n_t = int(rng.integers(1, 4))
        chosen = rng.choice(N_ITEMS, size=n_t + 5, replace=False).tolist()
        t_user += [u] * n_t
        t_item += chosen[:n_t]
        e_user += [u] * 5
        e_item += chosen[n_t:]
    targets = UserItems.from_pairs(torch.tensor(t_user), torch.tensor(t_item), N_USERS)
    exclude = UserItems.from_pairs(torch.tensor(e_user), torch.tensor(e_item), N_USERS)
    batches = []
    for lo in range(0, N_USERS, batch_size):
        users = torch.arange(lo, min(lo + batch_size, N_USERS))
        batch = {"user": users, "target": targets.padded(users)}
        batch["exclude_row"], batch["exclude_item"] = exclude.rows(users)
        batches.append(batch)
    return batches


@torch.no_grad()
def run_stage(module: RecModule, batches, stage: str = "val") -> None:
    """The steps of one evaluation stage, as Lightning calls them (no trainer attached)."""
    module.evaluator.reset()
    module.query_sample.reset()
    step = module.validation_step if stage == "val" else module.test_step
    for i, batch in enumerate(batches):
        step(batch, i)


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_evaluation_scores_are_float32_under_bf16_autocast(device):
    """Lightning's bf16-mixed precision runs the evaluation steps under bf16 autocast; the
    metrics must be those of float32 scores, exactly."""
    module = make_module().to(device)
    batches = [{k: v.to(device) for k, v in b.items()} for b in eval_batches()]
    run_stage(module, batches)
    want = module.evaluator.compute("val")
    with torch.autocast(device, dtype=torch.bfloat16):
        run_stage(module, batches)
    assert module.evaluator.compute("val") == want  # exactly, every metric and coverage
    assert all(q.dtype == torch.float32 for q in module.query_sample.queries)
    # the check can fail: scored under bf16 autocast, these users get other metrics (ties)
    bf16 = RankingEvaluator([10, 100], N_ITEMS)
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16):
        for batch in batches:
            scores = module.model.score(module.model.user_queries(batch), module.model.item_embeddings())
            assert scores.dtype == torch.bfloat16
            bf16.update(scores, batch, "val")
    assert bf16.compute("val")["val/mrr"] < want["val/mrr"]


@pytest.mark.parametrize("stage", ["val", "test"])
def test_nonfinite_scores_stop_the_stage_naming_it_with_the_epoch_and_users(stage):
    module, batches = make_module(), eval_batches()
    with torch.no_grad():
        module.model.user_emb.weight[[3, 25, 26]] = float("nan")  # users in two different batches
        module.model.user_emb.weight[40] = float("inf")
    run_stage(module, batches, stage)
    end = module.on_validation_epoch_end if stage == "val" else module.on_test_epoch_end
    with pytest.raises(TrainingError, match=rf"^{stage} scores are NaN or infinite for 4 of 48 users at epoch 0,") as info:
        end()
    assert "\n" not in str(info.value)


def test_nonfinite_item_vector_affects_every_user_that_can_be_shown_it():
    module, batches = make_module(), eval_batches()
    with torch.no_grad():
        module.model.item_emb.weight[7] = float("nan")
    run_stage(module, batches)
    excluded_7 = sum(int((b["exclude_item"] == 7).sum()) for b in batches)  # 0 or a few users
    with pytest.raises(TrainingError, match=f"for {N_USERS - excluded_7} of {N_USERS} users"):
        module.on_validation_epoch_end()


def test_test_stage_logs_and_tables_the_popularity_bias_metrics(monkeypatch):
    """With the split's training popularity (``build`` calls ``evaluator.setup``), the test
    stage logs arp/aplt/novelty/gini@K beside coverage@K, and the per-user ones reach the
    per-user table that becomes ``test_per_user.csv``."""
    from recsys.data.interactions import Interactions, SplitData

    gen = torch.Generator().manual_seed(0)
    user, item = torch.randint(0, N_USERS, (2000,), generator=gen), torch.randint(0, N_ITEMS, (2000,), generator=gen)
    train = Interactions(user, item, torch.arange(2000), N_USERS, N_ITEMS).sorted()
    held_out = UserItems.from_pairs(torch.arange(N_USERS), torch.zeros(N_USERS, dtype=torch.long), N_USERS)
    module = make_module()
    module.evaluator.setup(SplitData(train=train, valid=held_out, test=held_out))
    logged = {}
    monkeypatch.setattr(module, "log_dict", lambda metrics, **kw: logged.update(metrics))
    run_stage(module, eval_batches(), "test")
    module.on_test_epoch_end()
    for k in (10, 100):
        for name in ("coverage", "gini", "arp", "aplt", "novelty"):
            assert f"test/{name}@{k}" in logged, name
        for name in ("arp", "aplt", "novelty"):
            assert module.test_per_user[f"test/{name}@{k}"].shape == (N_USERS,)
            assert logged[f"test/{name}@{k}"] == pytest.approx(float(module.test_per_user[f"test/{name}@{k}"].mean()))
    assert 0.0 <= logged["test/gini@10"] < 1.0 and 0.0 <= logged["test/aplt@10"] <= 1.0
