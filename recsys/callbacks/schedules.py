"""Schedules as pure functions of training progress, and the check shared by the
callbacks that apply them to the scheduled attributes of a loss, a model or an aux term.

``value_at(kind, start, end, progress)`` goes from ``start`` (``progress <= 0``) to
``end`` (``progress >= 1``), exactly at both ends and monotonically in between, whichever
of ``start`` and ``end`` is larger.
"""

from __future__ import annotations

import math

from recsys.errors import ConfigError, check_number

KINDS = ("constant", "linear", "cosine", "exponential")


def check_schedule(kind: str, start: float, end: float, where: str = "schedule") -> None:
    """Raise a one-line :class:`ConfigError` (prefixed by ``where``) for a bad schedule."""
    if kind not in KINDS:
        raise ConfigError(f"{where}.schedule must be one of {', '.join(KINDS)}, got {kind!r}")
    for name, value in (("start", start), ("end", end)):
        check_number(f"{where}.{name}", value)
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


def schedule_owner(pl_module, owner: str, attribute: str, callback: str, hint: str):
    """The object ``owner`` names: ``pl_module.loss``, ``pl_module.model`` or, for
    ``aux.<name>``, the auxiliary term ``pl_module.aux[name]``; a one-line
    :class:`ConfigError` when the run has none."""
    if owner.startswith("aux."):
        name, terms = owner[len("aux."):], getattr(pl_module, "aux", None) or {}
        if name not in terms:
            raise ConfigError(
                f"callbacks.{callback} controls {owner}.{attribute}, but the run has no aux term {name!r} "
                f"(its aux terms: {', '.join(terms) or 'none'}); add {name} to the run's aux list or change "
                f"callbacks.{callback}.owner"
            )
        return terms[name]
    target = getattr(pl_module, owner, None)
    if target is None:
        raise ConfigError(
            f"callbacks.{callback} controls {owner}.{attribute}, but {type(pl_module).__name__} has no `{owner}`; {hint}"
        )
    return target


def require_scheduled(pl_module, attribute: str, callback: str, hint: str, owner: str = "loss"):
    """Check that ``pl_module``'s ``owner`` (the loss, the model or an aux term) schedules
    ``attribute``, i.e. lists it in its ``scheduled`` names; returns the owner.

    Args:
        pl_module: the LightningModule; the owner is ``pl_module.loss``,
            ``pl_module.model`` or ``pl_module.aux[<name>]``.
        attribute: the attribute the callback sets.
        callback: the callback's config name (``temperature_annealing``).
        hint: how to fix it (``use loss=infonce ...``).
        owner: ``"loss"``, ``"model"`` or ``"aux.<name>"``.
    """
    target = schedule_owner(pl_module, owner, attribute, callback, hint)
    scheduled = tuple(getattr(target, "scheduled", ()))
    if attribute not in scheduled or not hasattr(target, attribute):
        raise ConfigError(
            f"callbacks.{callback} controls {owner}.{attribute}, but {owner} {type(target).__name__} has no scheduled "
            f"{attribute!r} (it schedules: {', '.join(scheduled) or 'none'}); {hint}"
        )
    return target
