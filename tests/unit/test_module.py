"""RecModule.objective: the one training step shared by training_step, the benchmark and
the loss contract test."""

from __future__ import annotations

import pytest
import torch

from recsys.auxiliary.orthogonal import Orthogonal
from recsys.errors import ConfigError, TrainingError
from recsys.losses.bpr import BPR
from recsys.models.mf import MF
from recsys.module import RecModule
from recsys.samplers.uniform import UniformSampler

BATCH = {"user": torch.tensor([0, 1, 2]), "item": torch.tensor([1, 2, 3])}


def make_module(loss=None, weight: float = 0.5) -> RecModule:
    torch.manual_seed(0)
    sampler = UniformSampler(2)
    sampler.n_items = 6
    aux = {"orthogonal": Orthogonal(weight=weight, source="user_embeddings")}
    return RecModule(MF(4, 6, 3), loss or BPR(), sampler, optimizer=None, n_items=6, aux=aux, loss_name="bpr")


def test_objective_returns_the_weighted_total_and_each_term():
    module = make_module()
    gen = torch.Generator()
    gen.set_state(module.sampler.generator().get_state())  # where the sampler's draws start
    step = module.objective(BATCH)
    assert set(step.terms) == {"bpr", "orthogonal"} and step.rows == 3
    # independent re-computation of both terms with the same negatives
    neg = torch.randint(6, (3, 2), generator=gen)
    u, v = module.model.user_emb.weight, module.model.item_emb.weight
    pos_s = (u[BATCH["user"]] * v[BATCH["item"]]).sum(1)  # [3]
    neg_s = (u[BATCH["user"]].unsqueeze(1) * v[neg]).sum(2)  # [3, 2]
    mask = (neg != BATCH["item"].unsqueeze(1)).float()  # accidental hits are not negatives
    per_row = (torch.nn.functional.softplus(neg_s - pos_s.unsqueeze(1)) * mask).sum(1) / mask.sum(1).clamp(min=1)
    bpr = per_row.mean()  # mean over each row's valid negatives, then over rows
    unit = torch.nn.functional.normalize(u, dim=1)
    cos = (unit @ unit.T)[~torch.eye(4, dtype=torch.bool)]
    assert float(step.terms["bpr"]) == pytest.approx(float(bpr), rel=1e-5)
    assert float(step.terms["orthogonal"]) == pytest.approx(float(cos.abs().mean()), rel=1e-5)
    assert float(step.total) == pytest.approx(float(bpr) + 0.5 * float(cos.abs().mean()), rel=1e-5)


def test_training_step_returns_the_objective(monkeypatch):
    module = make_module()
    monkeypatch.setattr(module, "log", lambda *a, **kw: None)
    state = module.sampler.state_dict()
    want = module.objective(BATCH).total
    module.sampler.load_state_dict(state)
    assert float(module.training_step(BATCH, 0)) == float(want)


class NaNLoss(BPR):
    def forward(self, s):
        return super().forward(s) * float("nan")


def test_objective_stops_on_a_non_finite_total():
    with pytest.raises(TrainingError, match="training loss became nan at step 0"):
        make_module(loss=NaNLoss()).objective(BATCH)


def test_an_infinite_aux_term_is_caught_too(monkeypatch):
    real = Orthogonal.forward
    monkeypatch.setattr(Orthogonal, "forward", lambda self, *args, **kwargs: real(self, *args, **kwargs) * float("inf"))
    with pytest.raises(TrainingError, match="became inf"):
        make_module().objective(BATCH)


def test_an_infinite_aux_weight_is_refused_before_training():
    with pytest.raises(ConfigError) as info:
        make_module(weight=float("inf"))
    assert str(info.value) == "aux.orthogonal.weight must be a number >= 0, got inf"


def test_the_benchmark_times_the_objective(monkeypatch):
    """experiments/bench.py must time the real step (aux terms, NaN guard), not a copy."""
    from experiments.bench import bench_training

    module = make_module()
    calls = []
    real = module.objective
    monkeypatch.setattr(module, "objective", lambda batch: calls.append(1) or real(batch))

    class Loader(list):
        sampler = [0, 1]

    class DM:
        def train_dataloader(self):
            return Loader([BATCH, BATCH])

    out = bench_training(module, DM(), steps=0)
    assert len(calls) == 2 and out["measured_batches"] == 2


def test_the_epoch_profile_splits_real_steps_into_phases_that_sum_to_the_step():
    """experiments/bench.py's profile runs the module's own encode, scores and loss and
    times every phase once per step; the phases add up to the total."""
    from experiments.bench import profile_sasrec_epoch

    module = make_module()

    class Loader(list):
        sampler = [0, 1, 2, 3]

    class DM:
        def train_dataloader(self):
            return Loader([BATCH] * 4)

    out = profile_sasrec_epoch(module, DM(), steps=3)
    phases = ("data", "attention_blocks", "output_layer_and_softmax", "optimizer")
    assert all(out[f"epoch_profile_{p}_s"] >= 0 for p in phases)
    assert abs(sum(out[f"epoch_profile_{p}_s"] for p in phases) - out["epoch_profile_total_s"]) < 1e-9
    assert module.model.user_emb.weight.grad is not None  # the backward pass ran


def test_the_loss_step_bench_trains_each_main_loss_through_the_objective(monkeypatch):
    """experiments/bench.py's per-loss step times run RecModule.objective for every loss
    (warm-up step untimed) on a SASRec batch, and the backward pass reaches the model."""
    from experiments.bench import bench_loss_steps
    from recsys.data.datasets.synthetic import Synthetic
    from recsys.data.interactions import RawData
    from recsys.data.splits import LeaveOneOut

    split = LeaveOneOut()(RawData(Synthetic(n_users=30, n_items=20, n_clusters=2, series_len=4, seed=1).generate()))
    pad = split.n_items
    batch = {"user": torch.arange(3), "input": torch.tensor([[pad, 1, 2, 3], [4, 5, 6, 7], [pad, pad, 8, 1]]),
             "target": torch.tensor([[pad, 2, 3, 9], [5, 6, 7, 10], [pad, pad, 1, 9]])}
    losses = []
    real = RecModule.objective
    monkeypatch.setattr(RecModule, "objective", lambda self, b: losses.append(type(self.loss).__name__) or real(self, b))

    class Loader(list):
        sampler = [0, 1, 2, 3, 4]

    class DM:
        def train_dataloader(self):
            return Loader([batch] * 5)

    out = bench_loss_steps(split, DM(), steps=2)
    assert set(out) == {f"loss_step_{n}_s" for n in ("ce", "poly", "bce", "gbce", "infonce", "nss", "ssm_mixed")}
    assert all(v > 0 for v in out.values())
    assert losses == [name for name in ("CE", "Poly1", "BCE", "GBCE", "InfoNCE", "NSS", "SSM") for _ in range(3)]  # warm-up + 2


def test_the_bench_baseline_names_a_bad_commit_and_the_table_shows_ratios(capsys):
    import argparse

    from experiments.bench import bench_baseline, print_table

    args = argparse.Namespace(steps=0, data_dir="/nonexistent", no_gowalla=True, no_default_runs=True,
                              default_runs_only=False, no_reward=True, reward_only=False, no_bounded=True,
                              bounded_only=False)
    with pytest.raises(SystemExit, match="--baseline no-such-commit: git archive failed .* --baseline none"):
        bench_baseline("no-such-commit", args)
    print_table({"epoch_s": 15.0, "eval_users": 6040, "new_figure_s": 1.0}, {"epoch_s": 30.0, "eval_users": 6040}, "abc123")
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "previous abc123" in lines["figure"] and "new/prev" in lines["figure"]
    assert lines["epoch_s"].split()[1:4] == ["15.000", "30.000", "0.50"] and "<= 20 ok" in lines["epoch_s"]
    assert "(not measured)" in lines["new_figure_s"]
