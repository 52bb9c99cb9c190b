"""Anneal a temperature over training (config ``callbacks=[...,temperature_annealing]``)."""

from __future__ import annotations

from recsys.callbacks.schedule import Schedule
from recsys.errors import ConfigError

NAME = "temperature_annealing"


class TemperatureAnnealing(Schedule):
    """A :class:`~recsys.callbacks.schedule.Schedule` of a temperature: by default the
    loss's ``temperature``, cosine from 0.2 to 0.07 over the whole run; both ends must be
    > 0. Sets ``<owner>.<attribute>`` before every training batch to
    ``value_at(schedule, start, end, t / duration)`` (``t`` the global step or the epoch),
    a pure function of the trainer's progress, so the logged ``sched/...`` value is the
    one the step used and a resumed run continues the same schedule.

    Args:
        start: value at step (epoch) 0; > 0.
        end: value from step (epoch) ``duration`` on; > 0.
        schedule: ``constant``, ``linear``, ``cosine`` or ``exponential``.
        interval: ``step`` (moves every optimizer step) or ``epoch``.
        duration: steps (epochs) over which to anneal; ``None``: the whole run (resolved
            at fit start and kept on resume).
        attribute: the attribute to set (must be in the owner's ``scheduled`` names).
        owner: ``"loss"`` (e.g. InfoNCE's ``temperature``), ``"model"`` (e.g. the
            two-tower's cosine ``score_temperature``) or ``"aux.<name>"`` (e.g. the
            contrastive term's ``temperature``).
        name: the callback's config key, for messages.
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
        name: str = NAME,
    ) -> None:
        super().__init__(start, end, schedule, interval, duration, attribute, owner, name)
        for key, value in (("start", start), ("end", end)):
            if value <= 0:
                raise ConfigError(f"callbacks.{name}.{key} must be > 0 (a temperature), got {value!r}")

    def hint(self) -> str:
        if self.owner == "loss":
            return f"use loss=infonce (or another loss with a {self.attribute})"
        return super().hint()
