"""Schedules as pure functions of training progress, and the check shared by the
callbacks that apply them to a loss's scheduled attributes.

``value_at(kind, start, end, progress)`` goes from ``start`` (``progress <= 0``) to
``end`` (``progress >= 1``), exactly at both ends and monotonically in between, whichever
of ``start`` and ``end`` is larger.
"""

from __future__ import annotations

import math

from recsys.errors import ConfigError

KINDS = ("constant", "linear", "cosine", "exponential")


def check_schedule(kind: str, start: float, end: float, where: str = "schedule") -> None:
    """Raise a one-line :class:`ConfigError` (prefixed by ``where``) for a bad schedule."""
    if kind not in KINDS:
        raise ConfigError(f"{where}.schedule must be one of {', '.join(KINDS)}, got {kind!r}")
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where}.{name} must be a finite number, got {value!r}")
        if kind == "exponential" and value <= 0:
            raise ConfigError(f"{where}.{name} must be > 0 for an exponential schedule, got {value!r}")


def value_at(kind: str, start: float, end: float, progress: float) -> float:
    """The scheduled value at ``progress`` (clipped to ``[0, 1]``).

    Args:
        kind: ``constant`` (always ``start``), ``linear``, ``cosine`` (half a cosine wave,
            flat at both ends) or ``exponential`` (geometric: ``start * (end/start)**p``;
            needs ``start, end > 0``).
        start: the value at progress 0.
        end: the value at progress 1.
        progress: the fraction of the schedule done.

    Returns:
        A float between ``start`` and ``end``.
    """
    check_schedule(kind, start, end)
    p = min(max(float(progress), 0.0), 1.0)
    if kind == "constant" or p == 0.0:
        return float(start)
    if p == 1.0:
        return float(end)
    if kind == "linear":
        value = start + (end - start) * p
    elif kind == "cosine":
        value = start + (end - start) * 0.5 * (1.0 - math.cos(math.pi * p))
    else:  # exponential
        value = start * (end / start) ** p
    low, high = min(start, end), max(start, end)
    return float(min(max(value, low), high))  # rounding never steps past an endpoint


def require_scheduled(pl_module, attribute: str, callback: str, hint: str, owner: str = "loss") -> None:
    """Check that ``pl_module.<owner>`` (the loss or the model) schedules ``attribute``,
    i.e. lists it in its ``scheduled`` names.

    Args:
        pl_module: the LightningModule; the owner is ``pl_module.loss`` or ``pl_module.model``.
        attribute: the attribute the callback sets.
        callback: the callback's config name (``temperature_annealing``).
        hint: how to fix it (``use loss=infonce ...``).
        owner: ``"loss"`` or ``"model"``.
    """
    target = getattr(pl_module, owner, None)
    if target is None:
        raise ConfigError(
            f"callbacks.{callback} controls {owner}.{attribute}, but {type(pl_module).__name__} has no `{owner}`; {hint}"
        )
    scheduled = tuple(getattr(target, "scheduled", ()))
    if attribute not in scheduled or not hasattr(target, attribute):
        raise ConfigError(
            f"callbacks.{callback} controls {owner}.{attribute}, but {owner} {type(target).__name__} has no scheduled "
            f"{attribute!r} (it schedules: {', '.join(scheduled) or 'none'}); {hint}"
        )
