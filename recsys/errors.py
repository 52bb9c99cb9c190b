"""User-facing errors.

Every problem a user can cause (a bad name, a wrong type, a missing or corrupt file, an
empty dataset) raises a :class:`RecsysError` whose message is one line that says what is
wrong and how to fix it. ``recsys.run`` prints that line and exits with status 2 instead of
a traceback.
"""

import math


class RecsysError(Exception):
    """An error caused by user input; its message is a single actionable line."""


class ConfigError(RecsysError):
    """A configuration value is unknown, of the wrong type, or out of range."""


class DataError(RecsysError):
    """A dataset file is missing, corrupt or malformed, or a dataset is empty."""


class TrainingError(RecsysError):
    """Training cannot go on (for example the loss became NaN or infinite)."""


def is_number(value: object) -> bool:
    """A finite int or float; a bool (which Python counts as an int) is not a number here."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_positive(key: str, value: object) -> None:
    """A one-line :class:`ConfigError` unless ``value`` is a positive number (not a bool);
    ``key`` is the option's full name, e.g. ``loss.temperature``."""
    if not is_number(value) or value <= 0:
        raise ConfigError(f"{key} must be a positive number, got {value!r}")


def check_number(
    key: str, value: object, low: float | None = None, high: float | None = None, *,
    low_open: bool = False, high_open: bool = False, note: str = "",
) -> float:
    """``value`` as a float, or a one-line :class:`ConfigError` unless it is a finite number
    (not a bool) in the interval from ``low`` to ``high`` (``None``: unbounded; ``*_open``:
    the bound itself excluded). ``key`` is the option's full name and ``note`` an optional
    hint placed before the value, e.g. ``check_number("loss.t", t, 0, 1)`` refuses 1.5 with
    ``loss.t must be a number in [0, 1], got 1.5``."""
    inside = is_number(value)
    if inside and low is not None:
        inside = value > low if low_open else value >= low
    if inside and high is not None:
        inside = value < high if high_open else value <= high
    if not inside:
        if low is not None and high is not None:
            bounds = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            bounds = f"{'>' if low_open else '>='} {low:g}"
        elif high is not None:
            bounds = f"{'<' if high_open else '<='} {high:g}"
        else:
            raise ConfigError(f"{key} must be a finite number{note}, got {value!r}")
        raise ConfigError(f"{key} must be a number {bounds}{note}, got {value!r}")
    return float(value)
