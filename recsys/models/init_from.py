"""Start parts of a model from earlier runs' checkpoints (``init_from`` in the config).

Each entry copies the tensors under ``source`` (a prefix of the checkpoint's state dict,
``model`` for a whole model, ``model.item_tower`` for a part) into the submodule
``target`` of the new model (``graph``, ``item_tower``...; empty for the whole model)::

    init_from:
      - {ckpt: logs/lightgcn/runs/<run>/checkpoints/best.ckpt, source: model, target: graph}

The copy is strict: every tensor of the target must be in the source with the same shape,
and nothing may be left over, so a wrong pairing fails before training with the names of
the mismatched tensors. What was loaded is returned (and written by the run to
``loaded_components.json``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from recsys.data.files import sha256_of
from recsys.errors import ConfigError, DataError


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DataError(f"init_from: checkpoint {path} does not exist; point ckpt at a run's checkpoints/best.ckpt")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file
        raise DataError(f"init_from: cannot read checkpoint {path} ({type(exc).__name__}: {exc}); is it a Lightning .ckpt?") from None
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise DataError(f"init_from: {path} holds no state dict")
    return state


def load_component(model: nn.Module, ckpt: str, source: str = "model", target: str = "") -> dict:
    """Copy ``source.*`` tensors of ``ckpt`` into ``model.<target>``; returns a record."""
    path = Path(ckpt).expanduser()
    state = _state_dict(path)
    try:
        module = model.get_submodule(target) if target else model
    except AttributeError:
        names = sorted(name for name, _ in model.named_children())
        raise ConfigError(f"init_from: the model has no part {target!r}; its parts are {', '.join(names)}") from None
    prefix = f"{source}." if source else ""
    picked = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not picked:
        roots = sorted({".".join(k.split(".")[: 2 if k.count(".") > 1 else 1]) for k in state})
        raise ConfigError(f"init_from: no tensor of {path} starts with {prefix!r}; its prefixes include {', '.join(roots[:12])}")
    own = module.state_dict()
    missing = sorted(set(own) - set(picked))
    extra = sorted(set(picked) - set(own))
    if missing or extra:
        raise ConfigError(
            f"init_from: {source or 'the checkpoint'} does not match model part {target or '(whole model)'}: "
            f"missing {missing[:6]}, unexpected {extra[:6]}"
        )
    for key, value in picked.items():
        if own[key].shape != value.shape:
            raise ConfigError(
                f"init_from: {source}.{key} has shape {tuple(value.shape)} but {target or 'model'}.{key} has "
                f"{tuple(own[key].shape)} (different data or embedding size?)"
            )
    module.load_state_dict(picked, strict=True)
    return {
        "ckpt": str(path),
        "sha256": sha256_of(path),
        "source": source,
        "target": target or "(whole model)",
        "tensors": len(picked),
        "parameters": int(sum(v.numel() for v in picked.values())),
    }


def load_components(model: nn.Module, entries) -> list[dict]:
    """Apply every ``init_from`` entry in order; returns their records."""
    records = []
    for i, entry in enumerate(entries or []):
        if not hasattr(entry, "get") or not entry.get("ckpt"):
            raise ConfigError(f"init_from[{i}] must be a mapping with ckpt (and source, target), got {entry!r}")
        unknown = set(entry) - {"ckpt", "source", "target"}
        if unknown:
            raise ConfigError(f"init_from[{i}] has unknown keys {sorted(unknown)}; valid keys: ckpt, source, target")
        records.append(load_component(model, str(entry["ckpt"]), str(entry.get("source", "model")), str(entry.get("target", "") or "")))
    return records
