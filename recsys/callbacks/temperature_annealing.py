"""Anneal the loss temperature over training (config ``callbacks=[...,temperature_annealing]``)."""

from __future__ import annotations

import math

import pytorch_lightning as pl

from recsys.callbacks.schedules import check_schedule, require_scheduled, value_at
from recsys.errors import ConfigError

NAME = "temperature_annealing"


class TemperatureAnnealing(pl.Callback):
    """Sets ``loss.<attribute>`` before every training batch to
    ``value_at(schedule, start, end, t / duration)``, where ``t`` is the global step
    (``interval="step"``) or the epoch (``interval="epoch"``). The value is a pure function
    of ``trainer.global_step`` / ``trainer.current_epoch`` (:meth:`value`), so the
    ``sched/<attribute>`` logged by the step is the value it used, and a resumed run
    continues the same schedule.

    Args:
        start: value at step (epoch) 0; > 0.
        end: value from step (epoch) ``duration`` on; > 0.
        schedule: ``constant``, ``linear``, ``cosine`` or ``exponential``.
        interval: ``step`` (moves every optimizer step) or ``epoch``.
        duration: steps (epochs) over which to anneal; ``None``: the whole run, so that
            the last step (epoch) uses ``end`` (``trainer.estimated_stepping_batches - 1``
            or ``max_epochs - 1``). The resolved value is saved in the checkpoint, so a
            resumed run with a larger ``max_epochs`` keeps the original schedule.
        attribute: the attribute to set (must be in the owner's ``scheduled`` names).
        owner: ``"loss"`` (e.g. InfoNCE's ``temperature``) or ``"model"`` (e.g. the
            two-tower's cosine ``score_temperature``).
    """

    def __init__(
        self,
        start: float = 0.2,
        end: float = 0.07,
        schedule: str = "cosine",
        interval: str = "step",
        duration: int | None = None,
        attribute: str = "temperature",
        owner: str = "loss",
    ) -> None:
        if owner not in ("loss", "model"):
            raise ConfigError(f"callbacks.{NAME}.owner must be 'loss' or 'model', got {owner!r}")
        self.owner = owner
        check_schedule(schedule, start, end, where=f"callbacks.{NAME}")
        for name, value in (("start", start), ("end", end)):
            if value <= 0:
                raise ConfigError(f"callbacks.{NAME}.{name} must be > 0 (a temperature), got {value!r}")
        if interval not in ("step", "epoch"):
            raise ConfigError(f"callbacks.{NAME}.interval must be 'step' or 'epoch', got {interval!r}")
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int) or duration < 1):
            raise ConfigError(f"callbacks.{NAME}.duration must be null or an integer >= 1, got {duration!r}")
        self.start, self.end, self.schedule = float(start), float(end), schedule
        self.interval, self.duration, self.attribute = interval, duration, attribute
        self._duration: int | None = duration  # resolved at fit start
        self._restored_duration: int | None = None

    def value(self, step: int, epoch: int) -> float:
        """The scheduled value at ``step`` / ``epoch`` (pure; needs the resolved duration)."""
        if self._duration is None:
            raise RuntimeError("TemperatureAnnealing.value needs the duration, resolved at fit start")
        t = step if self.interval == "step" else epoch
        return value_at(self.schedule, self.start, self.end, t / self._duration)

    def _whole_run(self, trainer: pl.Trainer) -> int:
        if self.interval == "step":
            total = trainer.estimated_stepping_batches
        else:
            total = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs >= 0 else math.inf
        if not math.isfinite(total):
            raise ConfigError(
                f"callbacks.{NAME}.duration is null but the run length is unknown "
                f"(trainer max_epochs {trainer.max_epochs}, max_steps {trainer.max_steps}); set callbacks.{NAME}.duration"
            )
        return max(int(total) - 1, 1)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        hint = (f"use loss=infonce (or another loss with a {self.attribute})" if self.owner == "loss"
                else f"use a model with a scheduled {self.attribute} (model=two_tower model.score=cosine)")
        require_scheduled(pl_module, self.attribute, NAME, hint, owner=self.owner)
        if self.duration is not None:
            self._duration = self.duration
        elif self._restored_duration is not None:
            self._duration = self._restored_duration
        else:
            self._duration = self._whole_run(trainer)
        self._restored_duration = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        setattr(getattr(pl_module, self.owner), self.attribute, self.value(trainer.global_step, trainer.current_epoch))

    @property
    def state_key(self) -> str:  # one annealer per attribute may run side by side
        return self._generate_state_key(owner=self.owner, attribute=self.attribute)

    def state_dict(self) -> dict:
        return {"duration": self._duration}

    def load_state_dict(self, state_dict: dict) -> None:
        self._restored_duration = state_dict.get("duration")
