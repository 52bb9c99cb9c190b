"""Every override an error message names is one that composes (issue 12, item 6).

The messages are read from the source: every string and f-string in ``recsys/`` and
``experiments/`` (docstrings aside). In them, a token that looks like a config reference
(``group=option``, ``group.key=value``, ``+group.key=value`` or a bare ``group.key``
whose first part is a config group or a key of some config file) must work when a user
types it:

* ``key=value`` composes like the command line (in the default config or with one option
  of the key's own group chosen, e.g. ``data=custom`` for ``data.dataset.user_col=x``)
  and passes :func:`recsys.config.validate`; a key the config lacks counts only as
  ``+key=value`` under a ``_target_`` whose constructor takes it (``+trainer.max_steps=5``);
* an f-string hole (``{value}``) stands for some value: one of a few sample values must
  compose;
* a bare ``group.key`` exists in such a config, not reached through an interpolation
  (``data.split`` is ``${split}``: its keys are overridden as ``split.valid_ratio``).
"""

from __future__ import annotations

import ast
import copy
import inspect
import re
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf, open_dict

from recsys.config import CONF_DIR, available, validate

REPO = Path(__file__).resolve().parents[2]
HOLE = "\x00"  # an f-string placeholder whose value is only known at run time
FILE_SUFFIXES = {"json", "csv", "yaml", "txt", "dat", "png", "md", "ckpt", "parquet", "tsv", "wandb", "py",
                 "com", "org", "io", "ai"}
SAMPLE_VALUES = ("1", "x", "0.5", "true")  # a hole stands for one scalar value
# group.key, +group.key=value, group=option, group=[a,b], group.key=<hole>; a value ends at a
# space, ';', ',' or ')' unless it is a bracketed list
TOKEN = re.compile(
    r"(?<![\w.$~\-])(?P<plus>\+)?(?P<key>(?:[a-z_][a-z0-9_]*|\x00)(?:\.(?:[a-z_][a-z0-9_]*|\x00))*)"
    r"(?P<eq>=(?!=)(?P<value>\[[^\]]*\]|[^\s;,)]*))?(?![\w(])"
)


# ---------------------------------------------------------------- extraction from the source
def _rendered_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal and f-string of ``path`` except docstrings; an
    f-string hole is :data:`HOLE` unless it names a module-level string constant (``NAME``)."""
    tree = ast.parse(path.read_text())
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        if isinstance(node, ast.JoinedStr):
            skip.update(id(part) for part in node.values)  # rendered with their f-string
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            text = "".join(
                part.value if isinstance(part, ast.Constant)
                else constants.get(part.value.id, HOLE) if isinstance(part.value, ast.Name)
                else HOLE
                for part in node.values
            )
            out.append((node.lineno, text))
    return out


@lru_cache(maxsize=1)
def config_names() -> frozenset[str]:
    """Config group names and every key that some file under ``conf/`` sets, at any depth."""
    names = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                names.add(str(key))
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in CONF_DIR.rglob("*.yaml"):
        walk(OmegaConf.to_container(OmegaConf.load(path), resolve=False))
    names.discard("defaults")
    return frozenset(names)


def find_hints(text: str) -> list[str]:
    """The config references in one message (see the module docstring)."""
    hints = []
    for m in TOKEN.finditer(text):
        first, *rest = m["key"].split(".")
        if first == HOLE or first not in config_names():
            continue  # not a config reference (a Python name, a hole we cannot check)
        if first == "hydra":
            continue  # Hydra's own settings (hydra.run.dir=... in experiments/bench.py), not the run's config
        if not rest and not m["eq"]:
            continue  # a lone word: "loss", "model"
        if rest and rest[-1] in FILE_SUFFIXES:
            continue  # a file name: metrics.json
        hints.append(m[0])
    return hints


SERVE_SOURCES = ("recsys/serve.py", "recsys/retrieval/service.py", "recsys/retrieval/rewards.py")  # name recsys.serve keys


def serves(where: str) -> bool:
    """Whether a message belongs to the reward service's app (its own config root)."""
    return where.startswith(SERVE_SOURCES)


def source_hints() -> list[tuple[str, str]]:
    """(where, hint) for every config reference in the messages of ``recsys/`` and ``experiments/``."""
    found = []
    for package in ("recsys", "experiments"):
        for path in sorted((REPO / package).rglob("*.py")):
            for line, text in _rendered_strings(path):
                for hint in find_hints(text):
                    found.append((f"{path.relative_to(REPO)}:{line}", hint))
    return found


SERVE_CONF = CONF_DIR / "serve"


@lru_cache(maxsize=None)
def serve_hint_ok(hint: str) -> bool:
    """A hint in the reward service's messages works on ``python -m recsys.serve``: a bare key
    exists in its config, ``key=value`` composes (a hole with some sample value), and
    ``data=[...]`` names training data configs."""
    m = TOKEN.fullmatch(hint)
    key, value = m["key"], m["value"]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(SERVE_CONF), version_base="1.3"):
            if value is None:
                return OmegaConf.select(compose("serve"), key, default=None) is not None
            for v in [value] if HOLE not in value else [value.replace(HOLE, s) for s in SAMPLE_VALUES]:
                try:
                    cfg = compose("serve", overrides=[f"{'+' if m['plus'] else ''}{key}={v}"])
                except Exception:  # noqa: BLE001
                    continue
                names = [cfg.data] if isinstance(cfg.data, str) else list(cfg.data)
                if key != "data" or all(n in available("data") for n in names):
                    return True
            return False
    finally:
        GlobalHydra.instance().clear()


EXPORT_SOURCES = ("recsys/export/",)  # name recsys.export keys (conf/export/)
EXPORT_CONF = CONF_DIR / "export"


def exports(where: str) -> bool:
    """Whether a message belongs to the export's app (its own config root)."""
    return where.startswith(EXPORT_SOURCES)


@lru_cache(maxsize=None)
def export_hint_ok(hint: str) -> bool:
    """A hint in the export's messages works on ``python -m recsys.export``: in its default
    config or with one option of the key's group (``index=ivf`` for ``index.nlist``), a
    bare key exists and ``key=value`` composes and validates (a hole with some sample value)."""
    m = TOKEN.fullmatch(hint)
    key, value = m["key"], m["value"]
    group = key.split(".")[0]
    contexts = [[]] + ([[f"{group}={o}"] for o in available(group, EXPORT_CONF)] if (EXPORT_CONF / group).is_dir() else [])
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(EXPORT_CONF), version_base="1.3"):
            for context in contexts:
                if value is None:
                    tree = OmegaConf.to_container(compose("export", overrides=context), resolve=False)
                    if _exists(tree, key.split(".")):
                        return True
                    continue
                for v in [value] if HOLE not in value else [value.replace(HOLE, s) for s in SAMPLE_VALUES]:
                    try:
                        validate(compose("export", overrides=[*context, f"{'+' if m['plus'] else ''}{key}={v}"]))
                    except Exception:  # noqa: BLE001
                        continue
                    return True
            return False
    finally:
        GlobalHydra.instance().clear()


# ---------------------------------------------------------------- composing a hint
def compose_cli(overrides: list[str], output_dir: Path):
    """Compose ``conf/train.yaml`` with ``overrides`` as ``python -m recsys.run`` does."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.log_dir={output_dir}", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


class HintChecker:
    """Decides whether a hint works; caches the composed config of each context."""

    def __init__(self, output_dir: Path):
        self.output_dir = output_dir
        self._configs: dict[tuple[str, ...], tuple | None] = {}
        self._parser = OverridesParser.create()

    def contexts(self, key: str) -> list[list[str]]:
        """The default config, then each option of the key's own group (``aux`` is a list),
        first the options whose file sets the key."""
        group, *rest = key.split(".")
        if not (CONF_DIR / group).is_dir() or group in ("hydra", "paths"):
            return [[]]
        options = sorted(available(group), key=lambda o: not (rest and _exists(_option_file(group, o), rest)))
        return [[]] + [[f"{group}=[{o}]" if group == "aux" else f"{group}={o}"] for o in options]

    def config(self, context: list[str]):
        """``(cfg, plain)``: the context composed, and as containers with interpolations
        unresolved; None when the context itself does not compose."""
        if tuple(context) not in self._configs:
            try:
                cfg = compose_cli(context, self.output_dir)
                self._configs[tuple(context)] = (cfg, OmegaConf.to_container(cfg, resolve=False))
            except Exception:  # noqa: BLE001 - an option that does not compose alone
                self._configs[tuple(context)] = None
        return self._configs[tuple(context)]

    @lru_cache(maxsize=None)  # noqa: B019 - one checker per test module
    def ok(self, hint: str) -> bool:
        m = TOKEN.fullmatch(hint)
        assert m, hint
        key, value, plus = m["key"], m["value"], bool(m["plus"])
        if "." not in key and (CONF_DIR / key).is_dir():  # group=option
            return value in ("", HOLE) or self._validates([f"{key}={value}"])
        return any(self._ok_in(context, key, value, plus) for context in self.contexts(key))

    def _validates(self, overrides: list[str]) -> bool:
        try:
            validate(compose_cli(overrides, self.output_dir))
        except Exception:  # noqa: BLE001 - any failure means the hint does not work
            return False
        return True

    def _ok_in(self, context: list[str], key: str, value: str | None, plus: bool) -> bool:
        composed = self.config(context)
        if composed is None:
            return False
        cfg, tree = composed
        parts = key.split(".")
        if HOLE in key:  # a key named at run time: some key fits
            return _exists(tree, parts)
        if value is None:  # a bare key: it exists, or its node's constructor takes it (+key=...)
            if _exists(tree, parts):
                return not _aliases_a_node(tree, cfg, parts)
            return _takes(tree, parts)
        if not (_takes(tree, parts) and not _exists(tree, parts) if plus else _exists(tree, parts)):
            return False  # key=value needs the key; +key=value a constructor argument not yet set
        values = [value] if HOLE not in value else [value.replace(HOLE, v) for v in SAMPLE_VALUES]
        return any(self._update_validates(cfg, f"{'+' if plus else ''}{key}={v}") for v in values)

    def _update_validates(self, cfg, override: str) -> bool:
        """Apply one ``key=value`` override (parsed by Hydra's own parser) to a copy of the
        composed config, and validate it."""
        try:
            parsed = self._parser.parse_override(override)
            changed = copy.deepcopy(cfg)
            with open_dict(changed) if parsed.is_add() else nullcontext():
                OmegaConf.update(changed, parsed.key_or_group, parsed.value(), merge=False)
            validate(changed)
        except Exception:  # noqa: BLE001
            return False
        return True


@lru_cache(maxsize=None)
def _option_file(group: str, option: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{option}.yaml"), resolve=False)


def _exists(tree, parts: list[str]) -> bool:
    """Whether the path is in ``tree`` without passing through an interpolation (a hole
    matches any key)."""
    if not parts:
        return True
    if not isinstance(tree, dict):
        return False
    head, rest = parts[0], parts[1:]
    keys = [k for k in tree if not str(k).startswith("_")] if head == HOLE else [head] if head in tree else []
    return any(_exists(tree[k], rest) for k in keys)


def _aliases_a_node(tree, cfg, parts: list[str]) -> bool:
    """Whether the key holds an interpolation of a whole node (``data.split: ${split}``):
    naming it points the user at keys that cannot be overridden there."""
    for part in parts:
        tree = tree[part]
    return isinstance(tree, str) and "${" in tree and isinstance(OmegaConf.select(cfg, ".".join(parts)), DictConfig)


def _takes(tree, parts: list[str]) -> bool:
    """Whether the path's parent node is built from a ``_target_`` whose constructor takes
    the last part (a key one adds with ``+``)."""
    parent = tree
    for part in parts[:-1]:
        if not isinstance(parent, dict) or part not in parent:
            return False
        parent = parent[part]
    if not isinstance(parent, dict) or "_target_" not in parent:
        return False
    try:
        obj = get_object(parent["_target_"])
        params = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters
    except Exception:  # noqa: BLE001
        return False
    return parts[-1] in params


@pytest.fixture(scope="module")
def checker(tmp_path_factory):
    yield HintChecker(tmp_path_factory.mktemp("hints"))
    GlobalHydra.instance().clear()


# ---------------------------------------------------------------- the tests
HINTS = source_hints()


def test_the_extraction_finds_the_hints_of_known_messages():
    """The scan sees what a reader sees: overrides, bare keys, holes, files left out."""
    assert find_hints("use split=leave_one_out or temporal") == ["split=leave_one_out"]
    assert find_hints("set dataset.user_col / item_col (time_col: null)") == ["dataset.user_col"]
    assert find_hints(f"callbacks.x.val_metric={HOLE} needs K in eval.ks; e.g. eval.ks=[10,20,{HOLE}]") == [
        f"callbacks.x.val_metric={HOLE}", "eval.ks", f"eval.ks=[10,20,{HOLE}]"]
    assert find_hints("see metrics.json, pl_module.model and model.make_view(split)") == []
    assert find_hints("set fit=false ckpt_path=/a/b.ckpt, or +trainer.max_steps=5") == [
        "fit=false", "ckpt_path=/a/b.ckpt", "+trainer.max_steps=5"]
    assert len(HINTS) > 50  # every message module is read


@pytest.mark.parametrize(
    "hint, works",
    [("data=[ml1m,beauty]", True), ("data=[ml1m,nope]", False), ("encoder=hashing", True), ("encoder=nope", False),
     ("address=auto", True), ("namespace", True), ("adress=auto", False)],
)
def test_the_serve_check_tells_working_hints_from_broken_ones(hint, works):
    assert serve_hint_ok(hint) is works


@pytest.mark.parametrize(
    "hint, works",
    [("index=hnsw", True), ("index=annoy", False), ("index.nlist=8", True), ("index.nlist=many", False),
     (f"index.{HOLE}", True), ("out_dir=/tmp/x", True), ("check.atol", True),
     ("model=mf", False)],
)
def test_the_export_check_tells_working_hints_from_broken_ones(hint, works):
    assert export_hint_ok(hint) is works


@pytest.mark.parametrize(
    "hint, works",
    [
        ("split=fixed", True),
        ("data.split=fixed", False),  # composes, but data.split is then a string, not a split
        ("data.dataset.user_col", True),  # with data=custom
        ("dataset.user_col", False),
        ("data.dataset.user_col=uid", True),
        ("split.valid_ratio=0.1", True),  # with split=fixed
        ("data.split.valid_ratio", False),  # data.split is ${split}
        ("data.split", False),  # ... so it is changed with split=..., never data.split
        ("loss.logq_lambda=0", True),  # with loss=ssm
        ("trainer.max_steps=5", False),  # not in the config: it needs a +
        ("+trainer.max_steps=5", True),
        ("+trainer.max_stepz=5", False),
        (f"callbacks.freeze_curriculum.val_metric={HOLE}", True),
        (f"data.sampled_eval={HOLE}", False),  # a list: the hint must show [n]
        (f"data.sampled_eval=[{HOLE}]", True),
        ("sampler=", True),
        ("model=nope", False),
        ("aux.orthogonal.kind", True),  # with aux=[orthogonal]
    ],
)
def test_the_check_tells_working_hints_from_broken_ones(checker, hint, works):
    assert checker.ok(hint) is works


@pytest.mark.parametrize("where, hint", HINTS, ids=[f"{w}:{h.replace(HOLE, '{}')}" for w, h in HINTS])
def test_every_hint_in_an_error_message_composes(checker, where, hint):
    ok = serve_hint_ok(hint) if serves(where) else export_hint_ok(hint) if exports(where) else checker.ok(hint)
    assert ok, f"{where}: the hint {hint.replace(HOLE, '{...}')!r} does not compose"
