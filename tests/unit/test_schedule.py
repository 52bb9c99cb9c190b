"""The generic Schedule callback on aux terms (``owner: aux.<name>``): the weight warm-up
and the contrastive temperature applied and logged every step, owner errors, and resume."""

from __future__ import annotations

import warnings

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from recsys.auxiliary.contrastive import Contrastive
from recsys.auxiliary.orthogonal import Orthogonal
from recsys.callbacks.schedule import Schedule
from recsys.callbacks.temperature_annealing import TemperatureAnnealing
from recsys.errors import ConfigError
from recsys.losses.ce import CE
from recsys.models.sasrec import SASRec
from recsys.module import RecModule
from recsys.samplers.full import FullSampler

BATCHES = 4  # training batches per epoch
PAD = 12


def module(aux: tuple[str, ...] = ("contrastive",)) -> RecModule:
    torch.manual_seed(0)
    model = SASRec(PAD, 8, num_heads=2, max_len=4)
    terms = {"contrastive": Contrastive(weight=0.1, temperature=0.5, proj_dim=6, positives="dropout"),
             "orthogonal": Orthogonal(weight=0.01)}
    terms = {name: terms[name] for name in aux}
    for term in terms.values():
        term.check(model)
    return RecModule(model, CE(), FullSampler(), torch.optim.Adam, n_items=PAD, aux=terms, loss_name="ce")


def batches() -> DataLoader:
    """``BATCHES`` identical SASRec batches of four users (a resume restarts the loader)."""
    batch = {
        "user": torch.arange(4),
        "input": torch.tensor([[PAD, 1, 2, 3], [4, 5, 6, 7], [PAD, PAD, 8, 1], [PAD, PAD, PAD, 2]]),
        "target": torch.tensor([[PAD, 2, 3, 9], [5, 6, 7, 10], [PAD, PAD, 1, 9], [PAD, PAD, PAD, 11]]),
    }
    return DataLoader([batch] * BATCHES, batch_size=None)


class Recorder(pl.Callback):
    """Per step: the weight and temperature the contrastive term used, and the logged values."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, int], dict] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        term, metrics = pl_module.aux["contrastive"], trainer.callback_metrics
        self.rows[(trainer.current_epoch, batch_idx)] = {
            "weight": term.weight,
            "temperature": term.temperature,
            "sched/weight": float(metrics["sched/aux.contrastive.weight"]),
            "sched/temperature": float(metrics["sched/aux.contrastive.temperature"]),
        }

    def column(self, key: str) -> list:
        return [row[key] for _, row in sorted(self.rows.items())]


def fit(pl_module, callbacks, epochs: int, ckpt_path=None) -> pl.Trainer:
    trainer = pl.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, callbacks=callbacks,
                         enable_checkpointing=any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(pl_module, batches(), ckpt_path=ckpt_path)
    return trainer


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message, message
    return message


def test_weight_warmup_and_temperature_are_applied_and_logged_every_step():
    warmup = Schedule(start=0.0, end=0.1, schedule="linear", duration=4, attribute="weight", owner="aux.contrastive")
    anneal = TemperatureAnnealing(start=0.4, end=0.1, schedule="linear", interval="epoch", owner="aux.contrastive")
    rec = Recorder()
    fit(module(), [warmup, anneal, rec], epochs=3)
    weights = [0.0, 0.025, 0.05, 0.075] + [0.1] * 8  # linear over 4 steps, then held
    assert rec.column("weight") == pytest.approx(weights) and rec.column("weight")[0] == 0.0
    assert rec.column("sched/weight") == pytest.approx(weights)  # the logged value is the applied one
    temperatures = [t for t in (0.4, 0.25, 0.1) for _ in range(BATCHES)]  # per epoch, the whole run (2 epochs)
    assert rec.column("temperature") == pytest.approx(temperatures)
    assert rec.column("sched/temperature") == pytest.approx(temperatures)
    assert warmup.state_key != anneal.state_key
    assert warmup.state_key != Schedule(attribute="temperature", owner="aux.contrastive").state_key


def test_a_weight_of_zero_removes_the_term_from_the_objective():
    pl_module = module()
    pl_module.aux["contrastive"].weight = 0.0
    torch.manual_seed(1)
    step = pl_module.objective(next(iter(batches())))
    assert float(step.total) == float(step.terms["ce"]) and float(step.terms["contrastive"]) > 0


@pytest.mark.parametrize(
    "callback, aux, named",
    [
        (Schedule(owner="aux.orthogonal"), ("contrastive",), ["'orthogonal'", "its aux terms: contrastive", "owner"]),
        (Schedule(owner="aux.contrastive"), (), ["'contrastive'", "its aux terms: none"]),
        (Schedule(owner="aux.orthogonal", attribute="temperature"), ("contrastive", "orthogonal"),
         ["Orthogonal", "'temperature'", "it schedules: weight", "callbacks.schedule.attribute"]),
        (Schedule(owner="aux.contrastive", attribute="proj_dim", name="warm"), ("contrastive",),
         ["'proj_dim'", "weight, temperature", "callbacks.warm.attribute"]),
    ],
)
def test_an_owner_without_the_attribute_is_a_one_line_error_before_training(callback, aux, named):
    rec = Recorder()
    with pytest.raises(ConfigError) as info:
        fit(module(aux), [callback, rec], epochs=1)
    message = one_line(info)
    assert all(word in message for word in named), message
    assert rec.rows == {}


@pytest.mark.parametrize(
    "callback, named",
    [
        (Schedule(start=-1.0, end=0.1, owner="aux.contrastive", name="aux_weight_warmup"),
         ["callbacks.aux_weight_warmup.start is -1.0", "aux.contrastive.weight must be a number >= 0"]),
        (Schedule(start=1.0, end=0.0, attribute="temperature", owner="aux.contrastive"),
         ["callbacks.schedule.end is 0.0", "aux.contrastive.temperature must be a number > 0"]),
    ],
)
def test_a_value_the_owner_refuses_fails_at_fit_start(callback, named):
    rec = Recorder()
    with pytest.raises(ConfigError) as info:
        fit(module(), [callback, rec], epochs=1)
    assert all(word in one_line(info) for word in named) and rec.rows == {}


@pytest.mark.parametrize(
    "make, bad",
    [
        (lambda: Schedule(owner="aux"), "'aux'"),
        (lambda: Schedule(owner="optimizer"), "'optimizer'"),
        (lambda: Schedule(schedule="step"), "'step'"),
        (lambda: Schedule(interval="batch"), "'batch'"),
        (lambda: Schedule(duration=0), "0"),
        (lambda: TemperatureAnnealing(start=0.0, owner="aux.contrastive", name="contrastive_temperature"),
         "callbacks.contrastive_temperature.start must be > 0"),
    ],
)
def test_bad_arguments_are_one_line_config_errors(make, bad):
    with pytest.raises(ConfigError) as info:
        make()
    assert bad in one_line(info)


def test_resumed_run_keeps_the_schedule_sized_by_the_first_run(tmp_path):
    """``duration: null`` is resolved from the first run's length (3 epochs: 11 steps) and
    saved; the resumed run, given 5 epochs, continues that schedule."""
    def callbacks():
        return [Schedule(start=0.0, end=0.11, schedule="linear", owner="aux.contrastive"), Recorder()]

    full = callbacks()
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1, every_n_epochs=1)
    fit(module(), [*full, ckpt], epochs=3)
    resumed = callbacks()
    fit(module(), resumed, epochs=5, ckpt_path=tmp_path / "epoch=0.ckpt")
    assert full[-1].column("weight") == pytest.approx([0.01 * s for s in range(12)])
    done, rest = full[-1].rows, resumed[-1].rows
    assert [rest[k]["weight"] for k in sorted(rest) if k in done] == [done[k]["weight"] for k in sorted(done) if k in rest]
    assert [row["weight"] for _, row in sorted(rest.items())][-1] == pytest.approx(0.11)
    assert resumed[0].state_dict() == {"duration": 11}
