"""Schedule any scheduled attribute of the loss, the model or an aux term over training
(e.g. ``callbacks=[default,aux_weight_warmup]``)."""

from __future__ import annotations

import math
import re

import pytorch_lightning as pl

from recsys.callbacks.schedules import check_schedule, require_scheduled, schedule_owner, value_at
from recsys.errors import ConfigError

HINTS = {  # how to fix an owner that does not schedule the attribute
    "loss": "use a loss that lists it in its `scheduled` names (loss=infonce schedules temperature)",
    "model": "use a model that lists it in its `scheduled` names (model=two_tower model.score=cosine schedules score_temperature)",
    "aux": "every aux term schedules weight; contrastive also schedules temperature",
}


class Schedule(pl.Callback):
    """Sets ``<owner>.<attribute>`` before every training batch to
    ``value_at(schedule, start, end, t / duration)``, where ``t`` is the global step
    (``interval="step"``) or the epoch (``interval="epoch"``). The value is a pure function
    of ``trainer.global_step`` / ``trainer.current_epoch`` (:meth:`value`), so the
    ``sched/...`` value the module logs is the one the step used, and a resumed run
    continues the same schedule.

    At fit start the owner is checked (it must list ``attribute`` in its ``scheduled``
    names) and tried with both end values (then given back its own), so that an owner
    refusing a value (an aux weight below 0, a temperature of 0) fails then, with one
    line; the schedule is monotone, so every value in between is accepted too.

    Args:
        start: value at step (epoch) 0.
        end: value from step (epoch) ``duration`` on.
        schedule: ``constant``, ``linear``, ``cosine`` or ``exponential``.
        interval: ``step`` (moves every optimizer step) or ``epoch``.
        duration: steps (epochs) over which the value moves; ``None``: the whole run, so
            that the last step (epoch) uses ``end`` (``trainer.estimated_stepping_batches -
            1`` or ``max_epochs - 1``). The resolved value is saved in the checkpoint, so a
            resumed run with a larger ``max_epochs`` keeps the original schedule.
        attribute: the attribute to set (must be in the owner's ``scheduled`` names).
        owner: ``"loss"`` (e.g. InfoNCE's ``temperature``), ``"model"`` (e.g. the
            two-tower's cosine ``score_temperature``) or ``"aux.<name>"`` (the aux term
            ``<name>``: its ``weight``, the contrastive ``temperature``).
        name: the callback's config key, for messages.
    """

    def __init__(
        self,
        start: float = 0.0,
        end: float = 1.0,
        schedule: str = "linear",
        interval: str = "step",
        duration: int | None = None,
        attribute: str = "weight",
        owner: str = "loss",
        name: str = "schedule",
    ) -> None:
        self.name = name
        if not isinstance(owner, str) or not (owner in ("loss", "model") or re.fullmatch(r"aux\.\w+", owner)):
            raise ConfigError(f"callbacks.{name}.owner must be loss, model or aux.<term>, got {owner!r}")
        check_schedule(schedule, start, end, where=f"callbacks.{name}")
        if interval not in ("step", "epoch"):
            raise ConfigError(f"callbacks.{name}.interval must be 'step' or 'epoch', got {interval!r}")
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int) or duration < 1):
            raise ConfigError(f"callbacks.{name}.duration must be null or an integer >= 1, got {duration!r}")
        self.start, self.end, self.schedule = float(start), float(end), schedule
        self.interval, self.duration, self.attribute, self.owner = interval, duration, attribute, owner
        self._duration: int | None = duration  # resolved at fit start
        self._restored_duration: int | None = None

    def value(self, step: int, epoch: int) -> float:
        """The scheduled value at ``step`` / ``epoch`` (pure; needs the resolved duration)."""
        if self._duration is None:
            raise RuntimeError(f"{type(self).__name__}.value needs the duration, resolved at fit start")
        t = step if self.interval == "step" else epoch
        return value_at(self.schedule, self.start, self.end, t / self._duration)

    def hint(self) -> str:
        """How to fix an owner that does not schedule the attribute."""
        return f"{HINTS[self.owner.split('.')[0]]}; or change callbacks.{self.name}.attribute"

    def _whole_run(self, trainer: pl.Trainer) -> int:
        if self.interval == "step":
            total = trainer.estimated_stepping_batches
        else:
            total = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs >= 0 else math.inf
        if not math.isfinite(total):
            raise ConfigError(
                f"callbacks.{self.name}.duration is null but the run length is unknown "
                f"(trainer max_epochs {trainer.max_epochs}, max_steps {trainer.max_steps}); set callbacks.{self.name}.duration"
            )
        return max(int(total) - 1, 1)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        target = require_scheduled(pl_module, self.attribute, self.name, self.hint(), owner=self.owner)
        current = getattr(target, self.attribute)
        try:
            for which, value in (("start", self.start), ("end", self.end)):
                try:
                    setattr(target, self.attribute, value)  # the owner refuses a bad value now, not mid-run
                except ConfigError as exc:
                    raise ConfigError(f"callbacks.{self.name}.{which} is {value}, but {exc}") from None
        finally:
            setattr(target, self.attribute, current)  # the schedule takes over from the first batch
        if self.duration is not None:
            self._duration = self.duration
        elif self._restored_duration is not None:
            self._duration = self._restored_duration
        else:
            self._duration = self._whole_run(trainer)
        self._restored_duration = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        target = schedule_owner(pl_module, self.owner, self.attribute, self.name, self.hint())
        setattr(target, self.attribute, self.value(trainer.global_step, trainer.current_epoch))

    @property
    def state_key(self) -> str:  # one schedule per owner attribute may run side by side
        return self._generate_state_key(owner=self.owner, attribute=self.attribute)

    def state_dict(self) -> dict:
        return {"duration": self._duration}

    def load_state_dict(self, state: dict) -> None:
        self._restored_duration = state.get("duration")
