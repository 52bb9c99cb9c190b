"""Warm up the logQ correction of sampled softmax (config ``callbacks=[...,logq_warmup]``)."""

from __future__ import annotations

import math

import pytorch_lightning as pl

from recsys.callbacks.schedules import require_scheduled, value_at
from recsys.errors import ConfigError, check_number

NAME = "logq_warmup"


class LogQWarmup(pl.Callback):
    """Sets ``loss.<attribute>`` (the logQ weight lambda) before every training batch:
    0 during the first ``warmup_epochs`` epochs, then a linear ramp to ``target`` over
    ``ramp_epochs`` epochs, then ``target``. Progress is the fractional epoch
    ``current_epoch + batch_idx / num_training_batches``, so lambda moves every step; the
    value is a pure function of it (:meth:`value`), so a resumed run continues the same
    schedule and the logged ``sched/<attribute>`` is the value the step used.

    Args:
        target: lambda after the ramp; >= 0.
        warmup_epochs: epochs with lambda = 0; >= 0.
        ramp_epochs: epochs of the linear ramp; >= 0 (0: jump to ``target``).
        attribute: the loss attribute to set (must be in ``loss.scheduled``).
    """

    def __init__(
        self, target: float = 1.0, warmup_epochs: int = 1, ramp_epochs: int = 2, attribute: str = "logq_lambda"
    ) -> None:
        check_number(f"callbacks.{NAME}.target", target, 0)
        for name, value in (("warmup_epochs", warmup_epochs), ("ramp_epochs", ramp_epochs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"callbacks.{NAME}.{name} must be an integer >= 0, got {value!r}")
        self.target, self.warmup_epochs, self.ramp_epochs = float(target), warmup_epochs, ramp_epochs
        self.attribute = attribute

    def value(self, epoch_float: float) -> float:
        """Lambda at fractional epoch ``epoch_float`` (pure)."""
        if epoch_float < self.warmup_epochs:
            return 0.0
        if self.ramp_epochs == 0:
            return self.target
        return value_at("linear", 0.0, self.target, (epoch_float - self.warmup_epochs) / self.ramp_epochs)

    @staticmethod
    def epoch_float(trainer: pl.Trainer, batch_idx: int) -> float:
        """``current_epoch + batch_idx / num_training_batches`` (whole epochs when the
        number of batches is unknown)."""
        batches = trainer.num_training_batches
        fraction = batch_idx / batches if math.isfinite(batches) and batches > 0 else 0.0
        return trainer.current_epoch + fraction

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        require_scheduled(pl_module, self.attribute, NAME, f"use loss=ssm (or another loss with a {self.attribute})")

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        setattr(pl_module.loss, self.attribute, self.value(self.epoch_float(trainer, batch_idx)))
