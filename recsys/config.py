"""Config checks that run before any data is loaded.

* :func:`check_choices` - every ``group=option`` on the command line names an existing
  option (one line listing the available ones otherwise); :func:`check_launcher` - a
  ``hydra/launcher=`` whose plugin is not installed is one line naming the package.
* :func:`check_composes` - overrides Hydra cannot apply (a key the config lacks) fail
  with one line that names the options having the key.
* :func:`short_dirname` (resolver ``${short_dirname:...}``) - run folder names built from
  the overrides stay one level deep and below the file system's 255-byte limit.
* :func:`validate` - every node with a ``_target_`` is checked against the target's
  typed signature: unknown keys and values of the wrong type fail, naming the key. The
  constructor signatures are the typed schemas of the groups; :class:`RunSchema` types the
  top-level keys. A run that would never validate (validation picks the reported
  checkpoint) is refused too: ``trainer.limit_val_batches`` 0, or a fit of no epoch or of
  fewer epochs than ``trainer.check_val_every_n_epoch``.
"""

from __future__ import annotations

import collections.abc
import hashlib
import inspect
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Optional

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from recsys.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
_PLURAL = {"data": "datasets", "loss": "losses", "callbacks": "callback sets", "hparams_search": "searches", "index": "indexes"}


# In conf/loss/<name>.yaml: the loss's own search space for `python -m recsys.compare`
# (recsys/compare/space.py). Reserved like _target_: validation skips it, and the loss's
# constructor never receives it (recsys.wiring.build).
SEARCH_SPACE_KEY = "_search_space_"

MAX_DIRNAME = 180  # characters of the overrides kept in a run folder's name


def short_dirname(name: str, limit: int = MAX_DIRNAME) -> str:
    """A one-level folder name for ``name`` (the overrides): ``/`` becomes ``_`` (a path
    in an override, e.g. ``init_from=[{ckpt: /runs/x.ckpt ...}]``, used to nest the run
    folder in directories named after the path); when longer than ``limit`` characters,
    its first ``limit - 12`` characters + ``__`` + 10 hex digits of its SHA-1 (distinct
    overrides keep distinct folders). The full overrides are always in the run's
    ``.hydra/overrides.yaml``."""
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    name = name.replace("/", "_")
    if len(name) <= limit:
        return name
    return f"{name[: limit - 12]}__{digest}"


OmegaConf.register_new_resolver("short_dirname", short_dirname, replace=True)


@dataclass
class EvalSchema:
    ks: list[int] = field(default_factory=lambda: [10, 20])
    monitor: str = "val/ndcg@10"
    patience: int = 10
    short_head_share: float = 0.2
    item_chunk: Optional[int] = None


@dataclass
class RunSchema:
    """Types of the top-level keys that are not built from a ``_target_``."""

    seed: int = 42
    task_name: str = "train"
    tags: list[str] = field(default_factory=list)
    eval: EvalSchema = field(default_factory=EvalSchema)
    test_after_fit: bool = True
    fit: bool = True
    ckpt_path: Optional[str] = None
    init_from: list[Any] = field(default_factory=list)


def available(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


# hydra/launcher=<option> -> (plugin module under hydra_plugins, its PyPI package); the
# options of conf/hydra/launcher/ extend the plugins' own (README "Scaling out")
LAUNCHER_PLUGINS = {
    "joblib": ("hydra_joblib_launcher", "hydra-joblib-launcher"),
    "submitit_local": ("hydra_submitit_launcher", "hydra-submitit-launcher"),
    "submitit_slurm": ("hydra_submitit_launcher", "hydra-submitit-launcher"),
    "slurm": ("hydra_submitit_launcher", "hydra-submitit-launcher"),
    "ray": ("hydra_ray_launcher", "hydra-ray-launcher"),
    "ray_cluster": ("hydra_ray_launcher", "hydra-ray-launcher"),
    "ray_aws": ("hydra_ray_launcher", "hydra-ray-launcher"),
}


def check_launcher(option: str) -> None:
    """Fail with one line on ``hydra/launcher=<option>`` when its plugin is not installed
    (the ``cluster`` extra); other names are left to Hydra."""
    import importlib.util

    module, package = LAUNCHER_PLUGINS.get(option, (None, None))
    if module is None:
        return
    try:
        found = importlib.util.find_spec(f"hydra_plugins.{module}") is not None
    except ModuleNotFoundError:  # no hydra_plugins package at all
        found = False
    if not found:
        raise ConfigError(
            f"hydra/launcher={option} needs the {package} plugin, which is not installed: "
            f"pip install -e '.[cluster]' (make install installs it)"
        )


def check_choices(overrides: list[str], conf_dir: Path = CONF_DIR) -> None:
    """Fail on ``group=option`` overrides whose option file does not exist, and on a
    ``hydra/launcher=`` whose plugin is not installed."""
    groups = {p.name for p in conf_dir.iterdir() if p.is_dir()}
    for override in overrides:
        if "=" not in override or override.startswith("hydra."):
            continue
        key, value = override.split("=", 1)
        key = key.lstrip("+~")
        if key == "hydra/launcher":
            check_launcher(value)
            continue
        if key not in groups or value in ("", "null"):
            continue
        options = available(key, conf_dir)
        for choice in value.strip("[]").split(","):  # multirun loss=bpr,ce; lists aux=[a,b]
            if not choice:
                continue
            if choice not in options:
                noun = _PLURAL.get(key, key + "s")
                where = conf_dir.relative_to(CONF_DIR.parent) if conf_dir.is_relative_to(CONF_DIR.parent) else conf_dir
                raise ConfigError(
                    f"unknown {key} '{choice}': available {noun} are {', '.join(options)} ({where}/{key}/)"
                )


def check_command_line(argv: list[str], conf_dir: Path = CONF_DIR, config_name: str = "train") -> None:
    """The checks an entry point runs before Hydra: option names, then (for a plain run, no
    ``-m`` or other Hydra flag) that the overrides compose. A problem is printed as one
    ``error:`` line and the process exits with status 2."""
    overrides = [a for a in argv if not a.startswith("-")]
    try:
        check_choices(overrides, conf_dir)
        if len(overrides) == len(argv):  # Hydra's flags stay Hydra's
            check_composes(overrides, conf_dir, config_name)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def check_composes(overrides: list[str], conf_dir: Path = CONF_DIR, config_name: str = "train") -> None:
    """Compose the config as a run will, so that an override Hydra cannot apply (a key the
    config lacks, ``+`` on a key it has, a syntax error) fails with one line naming the fix
    instead of Hydra's multi-line report with exit status 1. Other problems are left to
    Hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException, OverrideParseException

    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            compose(config_name, overrides=overrides)
    except OverrideParseException as exc:
        raise ConfigError(f"cannot parse an override: {_one_line(exc).split(' See https')[0]}") from None
    except ConfigCompositionException as exc:
        message = _composition_message(str(exc), overrides, conf_dir)
        if message:
            raise ConfigError(message) from None
    finally:
        GlobalHydra.instance().clear()


def _composition_message(text: str, overrides: list[str], conf_dir: Path) -> str | None:
    if m := re.match(r"Could not override '([^']+)'", text):
        key = m[1]
        value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == key), "...")
        group, _, rest = key.partition(".")
        having = [o for o in available(group, conf_dir) if rest and _sets(conf_dir / group / f"{o}.yaml", rest)]
        having = [f"{group}=[{o}]" if group == "aux" else f"{group}={o}" for o in having]
        choose = f" (the options that have it: {', '.join(having)})" if having else ""
        return f"{key} is not in the config{choose}; check the spelling, or add it with +{key}={value}"
    if m := re.match(r"Could not append to config. An item is already at '([^']+)'", text):
        return f"+{m[1]} adds a key, but {m[1]} is already in the config; drop the +"
    if m := re.match(r"Could not delete from config. '([^']+)' does not exist", text):
        return f"~{m[1]} removes a key, but {m[1]} is not in the config; check the spelling"
    return None


def _sets(path: Path, dotted: str) -> bool:
    """Whether the option file ``path`` sets the key ``dotted`` (relative to its group)."""
    node: Any = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def validate(cfg: DictConfig) -> None:
    """Check the whole config against the schemas; raises :class:`ConfigError`."""
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config error: {_one_line(exc)}") from None
    top = {k: container[k] for k in ("seed", "task_name", "tags", "eval", "test_after_fit", "fit", "ckpt_path", "init_from") if k in container}
    try:
        OmegaConf.merge(OmegaConf.structured(RunSchema), top)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config error: {_one_line(exc)}") from None
    for key, value in container.items():
        _walk(value, key)
    _check_validation_kept(container.get("trainer") or {})
    if container.get("fit", True) and _trainable(container.get("model")):
        _check_a_validation_runs(container.get("trainer") or {})


def _check_validation_kept(trainer: dict) -> None:
    """Validation picks the best checkpoint and gives the reported val/ metrics: a run
    must not switch it off."""
    limit = trainer.get("limit_val_batches")
    if isinstance(limit, (int, float)) and not isinstance(limit, bool) and limit <= 0:
        raise ConfigError(
            f"trainer.limit_val_batches is {limit}, which switches validation off, but validation picks the best checkpoint "
            f"and the reported val/ metrics; use a positive number of batches (or a fraction in (0, 1])"
        )


def _trainable(model: Any) -> bool:
    """``RecModel.trainable`` of the configured model class (False: nothing to fit, e.g. ``model=pop``)."""
    if not isinstance(model, dict) or "_target_" not in model:
        return True
    return bool(getattr(get_object(model["_target_"]), "trainable", True))


def _check_a_validation_runs(trainer: dict) -> None:
    """Fitting must reach a validation: it picks the checkpoint that ``metrics.json``
    reports. Refused: no epoch at all, or fewer epochs than ``check_val_every_n_epoch``
    (``-1``, unlimited epochs, is Lightning's own and left to ``max_steps``)."""
    epochs, every = trainer.get("max_epochs"), trainer.get("check_val_every_n_epoch")
    if not _is_int(epochs) or epochs == -1:
        return
    if epochs <= 0:
        raise ConfigError(
            f"trainer.max_epochs={epochs} trains nothing, so metrics.json would report untrained weights; "
            f"set trainer.max_epochs=1 or more (fit=false ckpt_path=... evaluates a saved checkpoint)"
        )
    if _is_int(every) and epochs < every:
        raise ConfigError(
            f"trainer.max_epochs={epochs} ends before the first validation (trainer.check_val_every_n_epoch={every}), "
            f"so no checkpoint is ever selected; set trainer.max_epochs={every} or more, or lower "
            f"trainer.check_val_every_n_epoch"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _walk(node: Any, path: str) -> None:
    if isinstance(node, dict):
        if "_target_" in node:
            _check_target(node, path)
        for key, value in node.items():
            _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _walk(value, f"{path}[{i}]")


def _check_target(node: dict, path: str) -> None:
    target = node["_target_"]
    try:
        obj = get_object(target)
    except Exception:
        raise ConfigError(f"{path}._target_ '{target}' cannot be imported; check the spelling") from None
    func = obj.__init__ if inspect.isclass(obj) else obj
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return
    try:
        hints = typing.get_type_hints(func)
    except Exception:
        hints = {}
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    names = [n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    for key, value in node.items():
        if key.startswith("_"):
            continue
        if key not in params:
            if takes_kwargs:
                continue
            raise ConfigError(
                f"unknown key {path}.{key} for {target}; valid keys: {', '.join(names)}"
            )
        hint = hints.get(key, params[key].annotation)
        if hint is not inspect.Parameter.empty and not _matches(value, hint):
            raise ConfigError(
                f"{path}.{key} must be {_type_name(hint)}, got {value!r} ({type(value).__name__})"
            )


def _matches(value: Any, hint: Any) -> bool:
    """Whether a plain config value fits a type annotation (unknown annotations pass)."""
    if hint is Any or isinstance(hint, (str, typing.TypeVar)):
        return True
    if isinstance(value, dict) and "_target_" in value:
        return True  # built object: checked on its own
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        inner = [a for a in args if a is not Ellipsis]
        return len(inner) != 1 or all(_matches(v, inner[0]) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type) and isinstance(value, (str, int, float, bool, list)):
        return isinstance(value, hint) or (isinstance(value, str) and issubclass(hint, PurePath))
    return True


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}.get(
            hint.__name__, hint.__name__
        )
    return str(hint).replace("typing.", "")


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def check_ks(ks: list[int] | ListConfig, n_items: int) -> None:
    """Cut-offs must be positive and at most the number of items."""
    for k in ks:
        if k < 1 or k > n_items:
            raise ConfigError(
                f"eval.ks contains {k}, but K must be between 1 and the number of items ({n_items}); "
                f"lower eval.ks"
            )
