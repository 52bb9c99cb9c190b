"""User-facing errors.

Every problem a user can cause (a bad name, a wrong type, a missing or corrupt file, an
empty dataset) raises a :class:`RecsysError` whose message is one line that says what is
wrong and how to fix it. ``recsys.run`` prints that line and exits with status 2 instead of
a traceback.
"""


class RecsysError(Exception):
    """An error caused by user input; its message is a single actionable line."""


class ConfigError(RecsysError):
    """A configuration value is unknown, of the wrong type, or out of range."""


class DataError(RecsysError):
    """A dataset file is missing, corrupt or malformed, or a dataset is empty."""


class TrainingError(RecsysError):
    """Training cannot go on (for example the loss became NaN or infinite)."""


def check_positive(key: str, value: object) -> None:
    """A one-line :class:`ConfigError` unless ``value`` is a positive number (not a bool);
    ``key`` is the option's full name, e.g. ``loss.temperature``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{key} must be a positive number, got {value!r}")
