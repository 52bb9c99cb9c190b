"""Search spaces: the hyperparameters worth tuning, declared beside what they tune.

A loss declares its own under ``_search_space_`` in ``conf/loss/<name>.yaml`` (a reserved
key, like ``_target_``: the loss's constructor never sees it); the hyperparameters every
loss shares (learning rate, weight decay, dropout) are declared once, in
``conf/compare.yaml``'s ``shared_space``. Each entry maps a config key (dotted, from the
run's config root, so ``sampler.num_negatives`` can sit in a loss's space) to a range::

    loss.temperature: {low: 0.02, high: 1.0, log: true}     # float (the default type)
    sampler.num_negatives: {type: int, low: 16, high: 512, log: true}
    loss.energy: {choices: [softplus, identity]}            # categorical

A key that is not in the run's config, or an entry that is not one of the three forms,
stops the protocol before anything runs, with one line naming the entry. A null range
leaves the key out: ``'shared_space={model.dropout: null}'`` for a model without dropout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from recsys.config import SEARCH_SPACE_KEY as SPACE_KEY
from recsys.errors import ConfigError

KINDS = ("float", "int", "categorical")


@dataclass(frozen=True)
class Param:
    """One tuned hyperparameter: a config key and its range."""

    key: str
    kind: str  # float | int | categorical
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """The value an Optuna trial proposes for this key."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_param(key: str, spec: Any, where: str) -> Param:
    """``spec`` (a mapping) -> :class:`Param`; a malformed entry is a one-line ConfigError."""
    spec = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec
    form = "{low: .., high: .., log: true|false, type: float|int} or {choices: [..]}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}.{key} must be a mapping {form}, got {spec!r}")
    unknown = set(spec) - {"type", "low", "high", "log", "choices"}
    if unknown:
        raise ConfigError(f"{where}.{key} has unknown fields {', '.join(sorted(unknown))}; expected {form}")
    kind = spec.get("type", "categorical" if "choices" in spec else "float")
    if kind not in KINDS:
        raise ConfigError(f"{where}.{key}.type must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.{key}.choices must be a non-empty list, got {choices!r}")
        return Param(key, kind, choices=tuple(choices))
    low, high, log = spec.get("low"), spec.get("high"), spec.get("log", False)
    if not (_is_number(low) and _is_number(high) and low < high):
        raise ConfigError(f"{where}.{key} needs numbers low < high, got low {low!r} and high {high!r}")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{where}.{key} is an int range, so low and high must be integers, got {low!r}, {high!r}")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.{key}.log must be true or false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"{where}.{key} is a log range, so low must be > 0, got {low!r}")
    return Param(key, kind, low, high, log)


def parse_space(node: Any, where: str) -> list[Param]:
    """A ``{key: spec}`` mapping (or None) -> its params, in declaration order; a key whose
    spec is null is left out (``'shared_space={model.dropout: null}'`` drops a shared key)."""
    if node is None:
        return []
    if not (isinstance(node, dict) or OmegaConf.is_dict(node)):
        raise ConfigError(f"{where} must be a mapping of config keys to ranges, got {node!r}")
    return [parse_param(str(key), spec, where) for key, spec in node.items() if spec is not None]


def loss_space(cfg: DictConfig, loss: str) -> list[Param]:
    """The search space that ``conf/loss/<loss>.yaml`` declares (empty if none)."""
    return parse_space(cfg.loss.get(SPACE_KEY), f"conf/loss/{loss}.yaml {SPACE_KEY}")


def check_keys(params: list[Param], cfg: DictConfig, loss: str) -> None:
    """Every key of the space must be in the run's composed config (``cfg``)."""
    seen: set[str] = set()
    for p in params:
        if p.key in seen:
            raise ConfigError(f"{p.key} is declared twice in the search space of loss {loss} and shared_space; keep one")
        seen.add(p.key)
        if OmegaConf.select(cfg, p.key, default=_Missing) is _Missing:
            raise ConfigError(
                f"search space key {p.key} is not in the config of loss={loss} (with the protocol's `common` overrides); "
                f"fix the key or drop it from the space"
            )


class _Missing:  # a sentinel that no config value can be
    pass


def as_override(key: str, value: Any) -> str:
    """``key=value`` as a Hydra override (floats in full precision)."""
    text = repr(float(value)) if isinstance(value, float) else str(value)
    return f"{key}={text}"
