"""The freeze curriculum's checks of its arguments and of the model it freezes parts of:
each failure is one line naming the ``callbacks.freeze_curriculum.<key>`` to set."""

from __future__ import annotations

import math
import sys

from torch import nn

from recsys.errors import ConfigError, check_number

NAME = "freeze_curriculum"


def paths(name: str, value, allow_empty: bool) -> list[str]:
    """``value`` as a list of dotted submodule paths (``freeze``, ``unfreeze``, ...)."""
    if isinstance(value, str) or value is None:
        raise ConfigError(f"callbacks.{NAME}.{name} must be a list of submodule paths, got {value!r}")
    found = list(value)
    if not allow_empty and not found:
        raise ConfigError(f"callbacks.{NAME}.{name} must name at least one submodule path, got []")
    for path in found:
        if not isinstance(path, str) or not path:
            raise ConfigError(f"callbacks.{NAME}.{name} must hold dotted submodule paths, got {path!r}")
    return found


def check_arguments(after_epoch, max_train_loss, min_val_metric, val_metric, lr_factor, later_epochs,
                    pretrain_epochs, has_later: bool) -> None:
    """The switch conditions, epochs and learning-rate factor the constructor was given."""
    if after_epoch is None and max_train_loss is None and min_val_metric is None:
        raise ConfigError(
            f"callbacks.{NAME} needs a switch condition: set callbacks.{NAME}.after_epoch, "
            f"callbacks.{NAME}.max_train_loss or callbacks.{NAME}.min_val_metric"
        )
    if after_epoch is not None:
        _check_int("after_epoch", after_epoch, 0)
    _check_int("pretrain_epochs", pretrain_epochs, 0)
    _check_int("later_epochs" + (" (with later_unfreeze)" if has_later else ""), later_epochs, 1 if has_later else 0)
    for name, value in (("max_train_loss", max_train_loss), ("min_val_metric", min_val_metric)):
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is not None and (not is_number or math.isnan(value)):
            raise ConfigError(f"callbacks.{NAME}.{name} must be a number or null, got {value!r}")
    check_number(f"callbacks.{NAME}.lr_factor", lr_factor, 0, low_open=True)
    if min_val_metric is not None and not (isinstance(val_metric, str) and val_metric):
        raise ConfigError(f"callbacks.{NAME}.val_metric must name a logged metric, got {val_metric!r}")


def check_model_paths(model, frozen: list[str], released: dict[str, list[str]]) -> None:
    """Every path names a submodule of ``model``; every released path (``unfreeze``,
    ``later_unfreeze``) is inside, or contains, a frozen one."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"callbacks.{NAME} needs pl_module.model (an nn.Module) to freeze parts of")
    top = ", ".join(name for name, _ in model.named_children()) or "none"
    for kind, kind_paths in (("freeze", frozen), *released.items()):
        for path in kind_paths:
            try:
                model.get_submodule(path)
            except AttributeError:
                raise ConfigError(
                    f"callbacks.{NAME}.{kind}: model {type(model).__name__} has no submodule {path!r} "
                    f"(its top-level submodules: {top})"
                ) from None
    for kind, kind_paths in released.items():
        for path in kind_paths:
            if not any(overlap(path, f) for f in frozen):
                raise ConfigError(
                    f"callbacks.{NAME}.{kind}: {path!r} is not inside (nor contains) a frozen path "
                    f"({', '.join(frozen)}), so there is nothing to unfreeze"
                )


def check_optimizers_hold_no_frozen(optimizers, frozen_ids: set[int]) -> None:
    """No optimizer holds a frozen parameter (``configure_optimizers`` must filter them)."""
    for optimizer in optimizers:
        if any(id(p) in frozen_ids for group in optimizer.param_groups for p in group["params"]):
            raise ConfigError(
                f"callbacks.{NAME}: the optimizer holds frozen parameters; configure_optimizers must pass only "
                f"parameters with requires_grad (e.g. [p for p in self.parameters() if p.requires_grad])"
            )


def check_metric_is_computed(val_metric: str, ks) -> None:
    """Fail before training when ``val_metric`` needs a cut-off that ``eval.ks`` lacks."""
    if ks is None or "@" not in val_metric:
        return
    k = val_metric.rsplit("@", 1)[1]
    if k.isdigit() and int(k) not in ks:
        raise ConfigError(
            f"callbacks.{NAME}.val_metric={val_metric} needs K={k} in eval.ks (now {list(ks)}); "
            f"add it, e.g. eval.ks=[10,20,{k}]"
        )


def logged_value(val_metric: str, callback_metrics) -> float:
    """The validation value the ``min_val_metric`` condition compares, or one line naming
    the metrics validation did log."""
    value = callback_metrics.get(val_metric)
    if value is None:
        logged = sorted(k for k in callback_metrics if k.startswith("val"))
        raise ConfigError(
            f"callbacks.{NAME}.val_metric={val_metric!r} is not logged by validation "
            f"(logged: {', '.join(logged) or 'none'}); set callbacks.{NAME}.val_metric"
        )
    return float(value)


def never_trained(frozen: list[str], released: list[str], loaded: list[str]) -> list[str]:
    """The ``frozen`` paths neither inside a ``released`` (unfrozen) path nor inside a part
    loaded with ``init_from`` (``loaded``; ``""`` = the whole model): without pretraining,
    they keep (part of) their initial values for the whole run."""

    def inside(path: str, parts) -> bool:
        return any(part == "" or path == part or path.startswith(part + ".") for part in parts)

    return [p for p in frozen if not inside(p, released) and not inside(p, loaded)]


def warn_never_trained(stuck: list[str]) -> None:
    """One warning line on stderr naming the :func:`never_trained` paths, if any (on ml1m
    such a run lost 3-4x in NDCG@10: README, two-tower table)."""
    if stuck:
        print(f"warning: {NAME} keeps {', '.join(stuck)} frozen at their initial (random) values for the "
              f"whole run; train them first with callbacks.{NAME}.pretrain_epochs=3, start them from a checkpoint "
              f"with init_from=[{{ckpt: ..., source: ..., target: {stuck[0]}}}] "
              f"or add them to callbacks.{NAME}.later_unfreeze", file=sys.stderr)


def overlap(a: str, b: str) -> bool:
    """Whether one dotted path is the other or inside it."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"callbacks.{NAME}.{name} must be an integer >= {minimum}, got {value!r}")
