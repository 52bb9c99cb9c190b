"""Schedule and curriculum callbacks: pure schedules, the values applied at each step,
the freeze/unfreeze stages, and resuming from checkpoints."""

from __future__ import annotations

import functools
import math
import warnings
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from recsys.callbacks.freeze_curriculum import FreezeCurriculum
from recsys.callbacks.logq_warmup import LogQWarmup
from recsys.callbacks.schedules import KINDS, value_at
from recsys.callbacks.temperature_annealing import TemperatureAnnealing
from recsys.errors import ConfigError
from recsys.losses.base import RecLoss
from recsys.losses.bpr import BPR
from recsys.losses.infonce import InfoNCE
from recsys.models.mf import MF
from recsys.module import RecModule
from recsys.samplers.uniform import UniformSampler

BATCHES = 4  # training batches per epoch


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message, message
    return message


# ---- a tiny module shaped like RecModule: model.{user_tower, item_tower.{body, head}, graph} ----
class Tower(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body, self.head = nn.Linear(4, 4), nn.Linear(4, 4)


class TinyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.user_tower, self.item_tower, self.graph = nn.Linear(4, 4), Tower(), nn.Linear(4, 4)


class TinyLoss(RecLoss):
    scheduled = ("temperature", "logq_lambda")

    def __init__(self) -> None:
        super().__init__()
        self.temperature, self.logq_lambda = 1.0, 1.0


class Tiny(pl.LightningModule):
    """``train_loss[epoch]`` forces the value of the training loss (gradients stay real);
    ``val[epoch]`` is the logged ``val/recall@100``."""

    def __init__(self, train_loss=None, val=None, optimizer=torch.optim.Adam) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model, self.loss = TinyModel(), TinyLoss()
        self.train_loss, self.val, self.optimizer = train_loss or {}, val or {}, optimizer

    def training_step(self, batch, batch_idx):
        x = batch[0]  # [B, 4]
        m = self.model
        out = m.item_tower.head(m.item_tower.body(m.graph(x))) * m.user_tower(x)  # [B, 4]
        loss = out.pow(2).mean() * self.loss.temperature + self.loss.logq_lambda
        if self.current_epoch in self.train_loss:
            loss = loss + (self.train_loss[self.current_epoch] - loss).detach()
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=x.shape[0])
        for name, value in self.loss.schedule_values().items():
            self.log(f"sched/{name}", value, on_step=True, on_epoch=False, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        pass

    def on_validation_epoch_end(self):
        value = 1.0 if self.trainer.sanity_checking else self.val.get(self.current_epoch, 0.0)
        self.log("val/recall@100", value)

    def configure_optimizers(self):
        return self.optimizer([p for p in self.parameters() if p.requires_grad], lr=0.1)


class Recorder(pl.Callback):
    """Per training step: what the loss used, what was logged, the optimizer's groups."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, int], dict] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        metrics = trainer.callback_metrics
        groups = trainer.optimizers[0].param_groups
        self.rows[(trainer.current_epoch, batch_idx)] = {
            "step": trainer.global_step - 1,
            "temperature": getattr(pl_module.loss, "temperature", None),
            "logq_lambda": getattr(pl_module.loss, "logq_lambda", None),
            "sched/temperature": float(metrics["sched/temperature"]),
            "stage": float(metrics["curriculum/stage"]) if "curriculum/stage" in metrics else None,
            "lrs": [g["lr"] for g in groups],
        }

    def column(self, key: str) -> list:
        return [row[key] for _, row in sorted(self.rows.items())]


def data(batches: int = BATCHES) -> DataLoader:
    """``batches`` identical batches of 4 rows (so a mid-epoch resume, which restarts the
    loader, still sees the same data as the uninterrupted run)."""
    rows = torch.randn(4, 4, generator=torch.Generator().manual_seed(1))  # [4, 4]
    return DataLoader(TensorDataset(rows.repeat(batches, 1)), batch_size=4)


def fit(module, callbacks, epochs: int, val: bool = False, ckpt_path=None, **kw) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks),
        num_sanity_val_steps=2 if val else 0,
        limit_val_batches=1 if val else 0,
        callbacks=callbacks,
        **kw,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, data(), data(1) if val else None, ckpt_path=ckpt_path)
    return trainer


# ---- schedules --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [k for k in KINDS if k != "constant"])
@pytest.mark.parametrize("start, end", [(0.2, 0.07), (0.07, 0.2), (1.0, 3.0)])
def test_schedules_hit_their_endpoints_and_are_monotone(kind, start, end):
    assert value_at(kind, start, end, 0.0) == start and value_at(kind, start, end, 1.0) == end
    assert value_at(kind, start, end, -0.5) == start and value_at(kind, start, end, 1.5) == end  # clipped
    values = [value_at(kind, start, end, i / 1000) for i in range(1001)]
    steps = [b - a for a, b in zip(values, values[1:])]
    assert all(s <= 0 for s in steps) if start > end else all(s >= 0 for s in steps)
    assert all(min(start, end) <= v <= max(start, end) for v in values)


def test_schedule_shapes():
    assert value_at("constant", 0.2, 0.07, 0.7) == 0.2
    assert value_at("linear", 0.0, 1.0, 0.25) == pytest.approx(0.25)
    assert value_at("cosine", 0.0, 1.0, 0.5) == pytest.approx(0.5)
    assert value_at("exponential", 1.0, 100.0, 0.5) == pytest.approx(10.0)  # geometric midpoint


# ---- temperature annealing and logQ warm-up ------------------------------------------------------
@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_temperature_applied_each_step_is_the_pure_schedule(interval):
    """Cosine from 0.2 to 0.05 over the whole run, by hand: ``T(t) = 0.05 + 0.15 * (1 +
    cos(pi * t / D)) / 2`` with ``t`` the step (``D`` = 15, the last of 4 epochs x 4
    batches) or the epoch (``D`` = 3)."""
    anneal, rec = TemperatureAnnealing(start=0.2, end=0.05, schedule="cosine", interval=interval), Recorder()
    fit(Tiny(), [anneal, rec], epochs=4)
    steps = list(range(4 * BATCHES))
    assert rec.column("step") == steps
    if interval == "step":
        expected = [0.05 + 0.15 * (1 + math.cos(math.pi * s / 15)) / 2 for s in steps]
    else:  # cos(pi/3) = 1/2, cos(2 pi/3) = -1/2: 0.05 + 0.15 * 3/4 and 0.05 + 0.15 * 1/4
        expected = [v for v in (0.2, 0.1625, 0.0875, 0.05) for _ in range(BATCHES)]
    assert rec.column("temperature") == pytest.approx(expected, rel=1e-12)
    assert rec.column("temperature")[0] == 0.2 and rec.column("temperature")[-1] == 0.05  # exact ends
    assert rec.column("sched/temperature") == pytest.approx(expected)  # the logged value is the applied one


def fit_recmodule(callbacks, epochs: int = 2) -> pl.Trainer:
    """The real RecModule: MF + InfoNCE with uniform negatives, 4 hand-made batches per epoch."""
    torch.manual_seed(0)
    sampler = UniformSampler(3)
    sampler.n_items = 10
    module = RecModule(MF(8, 10, 4), InfoNCE(), sampler, functools.partial(torch.optim.Adam, lr=0.01), n_items=10)
    users = torch.arange(8)
    batches = [{"user": users[i : i + 4], "item": (users[i : i + 4] * 3 + e) % 10} for e in range(2) for i in (0, 4)]
    trainer = pl.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
                         callbacks=callbacks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, DataLoader(batches, batch_size=None))
    return trainer


def test_temperature_on_recmodule_with_mf_and_infonce():
    anneal, rec = TemperatureAnnealing(start=0.3, end=0.1, schedule="linear", duration=4), Recorder()
    fit_recmodule([anneal, rec])
    assert rec.column("sched/temperature") == pytest.approx([0.3, 0.25, 0.2, 0.15, 0.1, 0.1, 0.1, 0.1])
    assert rec.column("temperature") == pytest.approx(rec.column("sched/temperature"))


def test_freeze_curriculum_on_recmodule_optimizes_only_trainable_parameters():
    rec = Recorder()
    trainer = fit_recmodule([FreezeCurriculum(["item_emb"], ["item_emb"], after_epoch=0, lr_factor=0.1), rec])
    assert [len(row["lrs"]) for _, row in sorted(rec.rows.items())] == [1] * 4 + [2] * 4
    groups, model = trainer.optimizers[0].param_groups, trainer.lightning_module.model
    assert groups[0]["params"] == [model.user_emb.weight] and groups[1]["params"] == [model.item_emb.weight]
    assert groups[1]["lr"] == pytest.approx(0.01 * 0.1)


def test_logq_warmup_is_zero_then_ramps_per_step_then_holds():
    warm, rec = LogQWarmup(target=0.5, warmup_epochs=1, ramp_epochs=2), Recorder()
    fit(Tiny(), [warm, rec], epochs=4)
    ramp = [0.5 * (k / BATCHES) / 2 for k in range(2 * BATCHES)]  # 0, 1/16, ... by fractional epoch
    assert rec.column("logq_lambda") == pytest.approx([0.0] * BATCHES + ramp + [0.5] * BATCHES)
    assert warm.value(0.99) == 0.0 and warm.value(2.0) == pytest.approx(0.25) and warm.value(7.0) == 0.5
    assert LogQWarmup(target=2.0, warmup_epochs=0, ramp_epochs=0).value(0.0) == 2.0


@pytest.mark.parametrize(
    "callback, loss, named",
    [
        (TemperatureAnnealing(), BPR(), ["BPR", "'temperature'", "none", "loss=infonce"]),
        (LogQWarmup(), InfoNCE(), ["InfoNCE", "'logq_lambda'", "temperature", "loss=ssm"]),
    ],
)
def test_loss_without_the_scheduled_attribute_is_a_config_error(callback, loss, named):
    module = Tiny()
    module.loss = loss
    with pytest.raises(ConfigError) as info:
        fit(module, [callback], epochs=1)
    message = one_line(info)
    assert all(word in message for word in named), message


def test_gbce_t_warmup_end_outside_0_1_fails_at_fit_start():
    """The warm-up's owner (gBCE) refuses t = 1.5 when the schedule tries it at fit start."""
    from recsys.callbacks.schedule import Schedule
    from recsys.losses.gbce import GBCE

    module, rec = Tiny(), Recorder()
    module.loss = GBCE()
    warmup = Schedule(start=0.0, end=1.5, attribute="t", owner="loss", name="gbce_t_warmup")
    with pytest.raises(ConfigError) as info:
        fit(module, [warmup, rec], epochs=1)
    assert one_line(info) == "callbacks.gbce_t_warmup.end is 1.5, but loss.t must be a number in [0, 1], got 1.5"
    assert rec.rows == {} and module.loss.t == 0.75


@pytest.mark.parametrize(
    "make, bad",
    [
        (lambda: TemperatureAnnealing(schedule="cosin"), "'cosin'"),
        (lambda: TemperatureAnnealing(start=0.0), "0.0"),
        (lambda: TemperatureAnnealing(end=-0.1), "-0.1"),
        (lambda: TemperatureAnnealing(interval="batch"), "'batch'"),
        (lambda: TemperatureAnnealing(duration=0), "0"),
        (lambda: TemperatureAnnealing(schedule="exponential", start=0.2, end=0.0), "0.0"),
        (lambda: LogQWarmup(target=-1.0), "-1.0"),
        (lambda: LogQWarmup(warmup_epochs=-1), "-1"),
        (lambda: LogQWarmup(ramp_epochs=1.5), "1.5"),
        (lambda: FreezeCurriculum(["graph"], ["graph"]), "switch condition"),
        (lambda: FreezeCurriculum(["graph"], ["graph"], after_epoch=-1), "-1"),
        (lambda: FreezeCurriculum(["graph"], ["graph"], after_epoch=0, lr_factor=0.0), "0.0"),
        (lambda: FreezeCurriculum([], ["graph"], after_epoch=0), "[]"),
        (lambda: FreezeCurriculum("graph", ["graph"], after_epoch=0), "'graph'"),
        (lambda: FreezeCurriculum(["graph"], ["graph"], after_epoch=0, later_unfreeze=["graph"]), "later_epochs"),
    ],
)
def test_bad_arguments_are_one_line_config_errors_with_the_value(make, bad):
    with pytest.raises(ConfigError) as info:
        make()
    assert bad in one_line(info)


def test_schedule_function_rejects_bad_inputs():
    with pytest.raises(ConfigError):
        value_at("step", 1.0, 2.0, 0.5)
    with pytest.raises(ConfigError):
        value_at("exponential", -1.0, 2.0, 0.5)


# ---- freeze curriculum ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "freeze, unfreeze, named",
    [
        (["item_tower.nope"], ["item_tower.nope"], ["'item_tower.nope'", "user_tower, item_tower, graph"]),
        (["item_tower"], ["user_tower"], ["'user_tower'", "nothing to unfreeze"]),
    ],
)
def test_bad_module_paths_are_config_errors(freeze, unfreeze, named):
    with pytest.raises(ConfigError) as info:
        fit(Tiny(), [FreezeCurriculum(freeze, unfreeze, after_epoch=0)], epochs=1)
    message = one_line(info)
    assert all(word in message for word in named), message


class ParamSpy(pl.Callback):
    """Snapshots of the parameters at every epoch start and which ones got gradients."""

    def __init__(self) -> None:
        self.snapshots, self.with_grad = [], {}

    def on_train_epoch_start(self, trainer, pl_module):
        self.snapshots.append({n: p.detach().clone() for n, p in pl_module.model.named_parameters()})

    def on_train_end(self, trainer, pl_module):
        self.on_train_epoch_start(trainer, pl_module)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        names = {n for n, p in pl_module.model.named_parameters() if p.grad is not None}
        self.with_grad.setdefault(trainer.current_epoch, names)


def test_frozen_parameters_do_not_change_until_unfrozen_and_get_a_new_group():
    curriculum = FreezeCurriculum(["item_tower", "graph"], ["item_tower.head"], after_epoch=1)
    spy, rec = ParamSpy(), Recorder()
    trainer = fit(Tiny(), [curriculum, spy, rec], epochs=3)

    def changed(epoch: int) -> set[str]:  # parameters that moved during `epoch`
        before, after = spy.snapshots[epoch], spy.snapshots[epoch + 1]
        return {n.rsplit(".", 1)[0] for n in before if not torch.equal(before[n], after[n])}

    assert changed(0) == changed(1) == {"user_tower"}
    assert changed(2) == {"user_tower", "item_tower.head"}  # body and graph stay frozen
    assert spy.with_grad[0] == spy.with_grad[1] == {"user_tower.weight", "user_tower.bias"}
    assert spy.with_grad[2] == spy.with_grad[1] | {"item_tower.head.weight", "item_tower.head.bias"}
    assert rec.column("stage") == [1.0] * (2 * BATCHES) + [2.0] * BATCHES
    groups = trainer.optimizers[0].param_groups
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(0.1 * 0.01)
    head = trainer.lightning_module.model.item_tower.head
    assert [id(p) for p in groups[1]["params"]] == [id(p) for p in head.parameters()]
    assert rec.column("lrs")[: 2 * BATCHES] == [[0.1]] * (2 * BATCHES)


def test_later_unfreeze_adds_a_third_group_later_epochs_after_the_switch():
    curriculum = FreezeCurriculum(["item_tower"], ["item_tower.head"], after_epoch=0, lr_factor=0.5,
                                  later_unfreeze=["item_tower.body"], later_epochs=2)
    rec = Recorder()
    fit(Tiny(), [curriculum, rec], epochs=4)
    groups_per_epoch = [len(rec.rows[(e, 0)]["lrs"]) for e in range(4)]
    assert groups_per_epoch == [1, 2, 2, 3]  # switch after epoch 0; body 2 epochs later
    assert rec.rows[(3, 0)]["lrs"] == pytest.approx([0.1, 0.05, 0.05])


@pytest.mark.parametrize(
    "kwargs, module_kwargs, first_stage2_epoch",
    [
        (dict(after_epoch=1), {}, 2),
        (dict(after_epoch=0), {}, 1),
        (dict(max_train_loss=6.0), dict(train_loss={0: 9.0, 1: 6.5, 2: 6.0, 3: 5.0}), 3),
        (dict(min_val_metric=0.05), dict(val={0: 0.01, 1: 0.049, 2: 0.05, 3: 0.2}), 3),  # sanity check logs 1.0
        (dict(max_train_loss=1.0, min_val_metric=0.5), dict(train_loss={0: 3.0, 1: 2.0}, val={1: 0.6}), 2),
        (dict(max_train_loss=0.0, min_val_metric=0.9), dict(train_loss={e: 1.0 for e in range(4)}), None),
    ],
)
def test_stage_switch_happens_exactly_when_a_condition_first_holds(kwargs, module_kwargs, first_stage2_epoch):
    curriculum, rec = FreezeCurriculum(["item_tower"], ["item_tower.head"], **kwargs), Recorder()
    fit(Tiny(**module_kwargs), [curriculum, rec], epochs=4, val=True)
    stages = [rec.rows[(e, b)]["stage"] for e in range(4) for b in range(BATCHES)]
    switch = 4 if first_stage2_epoch is None else first_stage2_epoch
    assert stages == [1.0] * (switch * BATCHES) + [2.0] * ((4 - switch) * BATCHES)
    assert curriculum.switch_epoch == first_stage2_epoch


def test_a_validation_after_the_epoch_end_still_counts_for_that_epoch():
    """Lightning 2.x validates before ``on_train_epoch_end``; were it to validate after,
    the value would still decide the switch at the next epoch start."""
    curriculum = FreezeCurriculum(["graph"], ["graph"], min_val_metric=0.5)
    trainer = SimpleNamespace(current_epoch=3, sanity_checking=False, state=SimpleNamespace(fn=TrainerFn.FITTING),
                              callback_metrics={"val/recall@100": torch.tensor(0.7)})
    curriculum.on_train_epoch_end(trainer, None)
    assert curriculum.switch_epoch is None  # no validation yet in epoch 3
    curriculum.on_validation_end(trainer, None)
    assert curriculum.switch_epoch == 4


def test_switch_condition_waits_for_stage_1_and_its_state_round_trips():
    """The pure decision alone: epochs of stage 0 never switch; the epoch's mean step loss
    and last validation decide; the running state resumes the same decision."""
    from recsys.callbacks.curriculum_switch import SwitchCondition

    cond = SwitchCondition(after_epoch=None, max_train_loss=1.0, min_val_metric=None, first_epoch=2)
    for epoch in range(2):  # stage 0: the loss already qualifies, nothing switches
        cond.start_epoch()
        cond.add_step_loss(torch.tensor(0.5))
        cond.end_epoch(epoch)
    assert cond.switch_epoch is None
    cond.start_epoch()
    cond.add_step_loss(torch.tensor(0.5))
    resumed = SwitchCondition(after_epoch=None, max_train_loss=1.0, min_val_metric=None, first_epoch=2)
    resumed.load_state_dict(cond.state_dict())  # mid-epoch 2: one step of loss 0.5 so far
    for c in (cond, resumed):
        c.add_step_loss(torch.tensor(2.0))  # mean 1.25 > 1.0
        c.end_epoch(2)
    assert cond.switch_epoch is None and resumed.switch_epoch is None
    assert cond.state_dict() == resumed.state_dict() == {"switch_epoch": None, "val": None, "loss_sum": 2.5,
                                                         "loss_steps": 2}
    assert cond.holds(3, 1.0, None) and not cond.holds(3, None, 0.9)


def test_missing_validation_metric_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        fit(Tiny(), [FreezeCurriculum(["graph"], ["graph"], min_val_metric=0.1, val_metric="val/ndcg@7")], 1, val=True)
    assert "'val/ndcg@7'" in one_line(info) and "val/recall@100" in one_line(info)


def test_optimizer_holding_frozen_parameters_is_a_config_error():
    module = Tiny()
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.1)
    with pytest.raises(ConfigError) as info:
        fit(module, [FreezeCurriculum(["graph"], ["graph"], after_epoch=0)], epochs=1)
    assert "requires_grad" in one_line(info)


class KeepGrads(Tiny):
    """Zeroes gradients instead of dropping them: a frozen parameter left in the optimizer
    then gets a zero gradient, which Adam's momentum or weight decay turn into a move."""

    def optimizer_zero_grad(self, epoch, batch_idx, optimizer):
        optimizer.zero_grad(set_to_none=False)


@pytest.mark.parametrize("module_cls", [Tiny, KeepGrads])
@pytest.mark.parametrize(
    "optimizer",
    [
        functools.partial(torch.optim.Adam, weight_decay=0.1),
        functools.partial(torch.optim.AdamW, weight_decay=0.1),
        functools.partial(torch.optim.SGD, momentum=0.9, weight_decay=0.1),
    ],
    ids=["adam", "adamw", "sgd"],
)
def test_pretraining_trains_everything_then_frozen_parts_stay_exactly_still(module_cls, optimizer):
    """Stage 0 trains the parts stage 1 freezes; once frozen, neither momentum nor weight
    decay moves them (they leave the optimizer with their state); the head comes back at
    ``lr_factor`` in stage 2."""
    curriculum = FreezeCurriculum(["item_tower", "graph"], ["item_tower.head"], after_epoch=2, pretrain_epochs=1)
    spy, rec = ParamSpy(), Recorder()
    trainer = fit(module_cls(optimizer=optimizer), [curriculum, spy, rec], epochs=4)

    def changed(epoch: int) -> set[str]:
        before, after = spy.snapshots[epoch], spy.snapshots[epoch + 1]
        return {n.rsplit(".", 1)[0] for n in before if not torch.equal(before[n], after[n])}

    assert changed(0) == {"user_tower", "item_tower.body", "item_tower.head", "graph"}  # pretraining
    assert changed(1) == changed(2) == {"user_tower"}
    assert changed(3) == {"user_tower", "item_tower.head"}
    assert rec.column("stage") == [0.0] * BATCHES + [1.0] * (2 * BATCHES) + [2.0] * BATCHES
    model, opt = trainer.lightning_module.model, trainer.optimizers[0]
    groups = [[id(p) for p in g["params"]] for g in opt.param_groups]
    assert groups == [[id(p) for p in model.user_tower.parameters()], [id(p) for p in model.item_tower.head.parameters()]]
    assert opt.param_groups[1]["lr"] == pytest.approx(0.1 * 0.01)
    still_frozen = [*model.item_tower.body.parameters(), *model.graph.parameters()]
    assert not any(p in opt.state or p.requires_grad or p.grad is not None for p in still_frozen)
    assert curriculum.never_trained() == []  # everything trained in stage 0


# ---- resume ---------------------------------------------------------------------------------
def all_callbacks(pretrain_epochs: int = 0):
    return [
        TemperatureAnnealing(start=0.5, end=0.1, schedule="cosine"),
        LogQWarmup(target=1.0, warmup_epochs=1, ramp_epochs=2),
        FreezeCurriculum(["item_tower", "graph"], ["item_tower.head"], max_train_loss=6.0, lr_factor=0.1,
                         later_unfreeze=["graph"], later_epochs=1, pretrain_epochs=pretrain_epochs),
        Recorder(),
    ]


@pytest.mark.parametrize(
    "checkpoint, name, resume_from",
    [
        (dict(every_n_epochs=1), "{epoch}", "epoch=0"),  # saved at epoch end, stage 1
        (dict(every_n_epochs=1), "{epoch}", "epoch=2"),  # saved in stage 2, before the later group
        # saved after validation, before on_train_epoch_end decides the switch: Lightning reruns that hook
        (dict(every_n_epochs=1, save_on_train_epoch_end=False), "{epoch}", "epoch=1"),
        (dict(every_n_train_steps=6), "{step}", "step=6"),  # mid-epoch
        (dict(every_n_train_steps=14), "{step}", "step=14"),  # mid-epoch in stage 2
    ],
)
@pytest.mark.parametrize("pretrain_epochs", [0, 1], ids=["no_pretraining", "pretraining"])
def test_resumed_run_continues_the_same_schedules_and_stages(tmp_path, checkpoint, name, resume_from, pretrain_epochs):
    """With ``pretrain_epochs=1`` the checkpoints cover the end of stage 0 (``epoch=0``:
    the freeze happens after the resume), stage 1 mid-epoch (``step=6``) and after
    validation (``epoch=1``), and stage 2."""
    losses = {0: 9.0, 1: 5.0, 2: 4.0, 3: 3.0, 4: 2.0}  # the switch condition holds at the end of epoch 1
    full = all_callbacks(pretrain_epochs)
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, filename=name, save_top_k=-1, **checkpoint)
    first = fit(Tiny(train_loss=losses), full + [ckpt], epochs=5, val=True)
    resumed = all_callbacks(pretrain_epochs)
    second = fit(Tiny(train_loss=losses), resumed, epochs=5, val=True, ckpt_path=tmp_path / f"{resume_from}.ckpt")

    done, rest = full[-1].rows, resumed[-1].rows
    assert rest and set(rest) < set(done)
    for key in ("step", "temperature", "logq_lambda", "sched/temperature", "stage", "lrs"):
        assert [rest[k][key] for k in sorted(rest)] == [done[k][key] for k in sorted(rest)], key
    first_stages = [0.0] * BATCHES + [1.0] * BATCHES if pretrain_epochs else [1.0] * 2 * BATCHES
    assert [r["stage"] for _, r in sorted(done.items())] == first_stages + [2.0] * 3 * BATCHES
    assert len(done[(4, 0)]["lrs"]) == 3
    for (n, p), q in zip(first.lightning_module.named_parameters(), second.lightning_module.parameters()):
        assert torch.allclose(p, q, atol=1e-6), n
    groups = [[[id(p) for p in g["params"]] for g in t.optimizers[0].param_groups] for t in (first, second)]
    names = [{id(p): n for n, p in t.lightning_module.named_parameters()} for t in (first, second)]
    assert [[names[0][i] for i in g] for g in groups[0]] == [[names[1][i] for i in g] for g in groups[1]]


def test_never_trained_lists_frozen_parts_neither_unfrozen_nor_loaded():
    from recsys.callbacks.freeze_curriculum import FreezeCurriculum

    cb = FreezeCurriculum(freeze=["item_tower", "graph"], unfreeze=["item_tower.head"], after_epoch=0)
    assert cb.never_trained() == ["item_tower", "graph"]  # only the head of item_tower is released
    assert cb.never_trained(["graph"]) == ["item_tower"]
    assert cb.never_trained(["item_tower", "graph"]) == [] and cb.never_trained([""]) == []
    released = FreezeCurriculum(freeze=["item_tower.head", "graph"], unfreeze=["item_tower"], after_epoch=0,
                                later_unfreeze=["graph"], later_epochs=1)
    assert released.never_trained() == []


def test_curriculum_warns_once_about_frozen_parts_that_never_train(capsys):
    from recsys.callbacks.freeze_curriculum import FreezeCurriculum

    cb = FreezeCurriculum(freeze=["item_tower", "graph"], unfreeze=["item_tower.head"], after_epoch=0)
    cb.warn_if_never_trained([])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "item_tower, graph" in err[0] and "init_from" in err[0]
    assert "callbacks.freeze_curriculum.pretrain_epochs=" in err[0]
    cb.warn_if_never_trained(["item_tower", "graph"])
    assert capsys.readouterr().err == ""
    pretrained = FreezeCurriculum(freeze=["item_tower", "graph"], unfreeze=["item_tower.head"], after_epoch=0,
                                  pretrain_epochs=1)
    pretrained.warn_if_never_trained([])  # pretraining trains everything first: nothing to warn about
    assert capsys.readouterr().err == ""


def test_param_group_surgery_goes_by_identity_and_drops_optimizer_state():
    """callbacks/param_groups.py: two LayerNorms have equal weights (all ones) at init; the
    one outside the optimizer still gets its own group (BaseFinetuning compares values and
    would drop it), and a removed parameter loses its Adam state and leaves every group."""
    from recsys.callbacks.param_groups import add_param_group, parameters_at, remove_from_optimizer

    model = nn.ModuleDict({"a": nn.LayerNorm(3), "b": nn.LayerNorm(3)})
    a_params, b_params = parameters_at(model, ["a"]), parameters_at(model, ["b", "b"])  # each parameter once
    assert len(b_params) == 2 and torch.equal(a_params[0], b_params[0])  # equal values, distinct tensors
    optimizer = torch.optim.Adam(a_params, lr=0.1)
    add_param_group(optimizer, [*a_params, *b_params], lr_factor=0.5)
    assert [len(g["params"]) for g in optimizer.param_groups] == [2, 2]
    assert optimizer.param_groups[1]["lr"] == pytest.approx(0.05)
    assert all(p.requires_grad for p in model.parameters())
    (model["a"](torch.randn(2, 3)) * model["b"](torch.randn(2, 3))).sum().backward()
    optimizer.step()
    assert all(p in optimizer.state for p in a_params)
    remove_from_optimizer(optimizer, a_params)
    assert [len(g["params"]) for g in optimizer.param_groups] == [0, 2]
    assert not any(p in optimizer.state for p in a_params)
    assert not any(p.requires_grad or p.grad is not None for p in a_params)
