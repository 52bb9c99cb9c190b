"""Export a trained run for serving: item vectors, query encoder, faiss indexes, manifest.

:func:`export` rebuilds the run from its ``config_resolved.yaml`` (data and model, with
:func:`recsys.wiring.build`), loads the checkpoint's weights, and writes into a temporary
folder beside ``out_dir``, renamed to ``out_dir`` only once everything, ``manifest.json``
last, is written: a reader never sees half an export.

Files of an export (``manifest.json`` says the same, with shapes and the measurements):

* ``items.npy`` - float32 ``[I, D]`` item vectors; ``item_ids.npy`` - int64 ``[I]``, the
  framework's 0-based item id of each row.
* ``query_encoder.pt`` - TorchScript: ``torch.jit.load(path)(*inputs)`` -> float32
  ``[B, D]`` queries, ``queries @ items.T`` = the checkpoint's scores.
* ``index_flat.faiss`` (exact inner product) and, with ``index=ivf`` or ``index=hnsw``,
  ``index_<name>.faiss``: row ``r`` of an index is the item ``item_ids[r]``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from recsys.errors import ConfigError, RecsysError
from recsys.export.encoder import exported_items, input_spec, query_keys, trace
from recsys.export.indexes import FlatIndex
from recsys.export.measure import latency, recall_at_k, score_check, threads, topk_check
from recsys.models.base import RecModel
from recsys.outputs import one_line, unwrap

MANIFEST = "manifest.json"
RUN_CONFIG = "config_resolved.yaml"
FORMAT = "recsys-export/1"


class ExportCheckError(RecsysError):
    """The exported files do not reproduce the checkpoint (``check.required``)."""


# ---------------------------------------------------------------- the inputs
def checkpoint(ckpt_path: str | None) -> Path:
    if not ckpt_path:
        raise ConfigError("give the checkpoint to export: ckpt_path=/path/to/run/checkpoints/best.ckpt")
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist; give a run's checkpoint: ckpt_path=/path/to/run/checkpoints/best.ckpt")
    return path


def run_folder(ckpt: Path, run_dir: str | None) -> Path:
    """The run folder: ``run_dir``, else ``<run>`` of ``<run>/checkpoints/<name>.ckpt`` (else
    the checkpoint's own folder); it must hold ``config_resolved.yaml``."""
    if run_dir:
        folder = Path(run_dir).expanduser()
    else:
        folder = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    if not (folder / RUN_CONFIG).is_file():
        raise ConfigError(
            f"{folder} has no {RUN_CONFIG}, so the run's data and model are unknown; export a checkpoint of a "
            f"python -m recsys.run folder, or give that folder as run_dir=/path/to/run"
        )
    return folder


def run_config(folder: Path, data_dir: str | None) -> DictConfig:
    """The run's resolved config, made to rebuild the run: no ``init_from`` (the checkpoint
    holds every weight) and, if given, another dataset folder."""
    try:
        cfg = OmegaConf.load(folder / RUN_CONFIG)
    except Exception as exc:  # noqa: BLE001 - a corrupt file is the user's to fix
        raise ConfigError(f"cannot read {folder / RUN_CONFIG}: {one_line(exc)}") from None
    if not isinstance(cfg, DictConfig) or "model" not in cfg or "data" not in cfg:
        raise ConfigError(f"{folder / RUN_CONFIG} is not a run's config (it lacks model or data)")
    with open_dict(cfg):
        cfg.init_from = []
        if data_dir:
            cfg.data.data_dir = str(Path(data_dir).expanduser())
    return cfg


def check_dot_product(model_cfg: DictConfig) -> type[RecModel]:
    """The model class, refused when its scores are not inner products of a query and an
    item vector (it overrides ``score``): no item-vector index can serve it."""
    cls = get_class(model_cfg._target_)
    if not (isinstance(cls, type) and issubclass(cls, RecModel)):
        raise ConfigError(f"model {model_cfg._target_} is not a recsys model")
    if cls.score is not RecModel.score:
        raise ConfigError(
            f"model {cls.__name__} scores a user and an item with its own function (it overrides score()), not by "
            f"the inner product of a query and an item vector, so an index of item vectors cannot serve it; "
            f"export a dot-product model (mf, lightgcn, sasrec, bert4rec, two_tower, csar, acf)"
        )
    return cls


def check_out_dir(out: Path) -> None:
    """``out`` may be new, empty or an earlier export (replaced); anything else is refused."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise ConfigError(f"{out} exists and is not an export (it has no {MANIFEST}); choose another out_dir=/path/to/export")


def load_weights(module, ckpt: Path, folder: Path) -> int:
    """Load the checkpoint into ``module``; returns the number of finished epochs."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"cannot read checkpoint {ckpt}: {one_line(exc)}") from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise ConfigError(f"{ckpt} is not a checkpoint of a recsys run (it has no state_dict)")
    try:
        module.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ConfigError(f"checkpoint {ckpt} does not fit the model of {folder / RUN_CONFIG}: {detail}") from None
    return int(state.get("epoch", -1)) + 1


# ---------------------------------------------------------------- the export
def export(cfg: DictConfig) -> tuple[Path, dict]:
    """Export ``cfg.ckpt_path`` as configured (``conf/export/export.yaml``).

    Returns:
        ``(out_dir, manifest)``.
    """
    ckpt = checkpoint(cfg.ckpt_path)
    folder = run_folder(ckpt, cfg.run_dir)
    run_cfg = run_config(folder, cfg.data_dir)
    check_dot_product(run_cfg.model)
    try:
        index = instantiate(cfg.index)
    except Exception as exc:  # a setting the index refused: its own one-line error, not Hydra's wrapper
        if isinstance(unwrap(exc), RecsysError):
            raise unwrap(exc) from None
        raise
    out = Path(cfg.out_dir).expanduser() if cfg.out_dir else folder / "export"
    check_out_dir(out)

    from recsys.wiring import build

    torch.manual_seed(int(run_cfg.get("seed", 0)))
    datamodule, module = build(run_cfg)
    epochs = load_weights(module, ckpt, folder)
    module.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with torch.no_grad():
            manifest = write(tmp, cfg, index, datamodule, module.model)
        manifest.update(run_dir=str(folder), ckpt_path=str(ckpt), ckpt_epochs=epochs)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))  # last: a folder with a manifest is complete
        publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out, manifest


def publish(tmp: Path, out: Path) -> None:
    """Rename the finished folder ``tmp`` to ``out``, replacing an earlier export."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def write(folder: Path, cfg: DictConfig, index, datamodule, model: RecModel) -> dict:
    """Write the files into ``folder``, check them and measure; returns the manifest
    (without its run fields)."""
    view_keys = list(datamodule.view.user_inputs(torch.zeros(1, dtype=torch.long), "test"))
    batch = next(iter(datamodule.test_dataloader()))  # the first test batch: the check's
    inputs = {k: batch[k] for k in view_keys}
    reference = model.score(model.user_queries(batch).float(), model.item_embeddings().float())  # [B, I] as RecModule scores
    items = exported_items(model).contiguous().numpy()  # [I, D]
    np.save(folder / "items.npy", items)
    np.save(folder / "item_ids.npy", np.arange(items.shape[0], dtype=np.int64))
    keys = query_keys(model, {k: v[:64] for k, v in inputs.items()})
    torch.jit.save(trace(model, inputs, keys), folder / "query_encoder.pt")
    encoder = torch.jit.load(folder / "query_encoder.pt")  # the files, as a server loads them
    queries = encoder(*[inputs[k] for k in keys])  # [B, D]
    scores = queries @ torch.from_numpy(np.load(folder / "items.npy")).T  # [B, I]
    flat_file = IndexFile(folder, "flat")
    flat = flat_file.write(FlatIndex(), items)
    singles = torch.cat([encoder(*[inputs[k][i : i + 1] for k in keys]) for i in range(min(8, len(queries)))])  # [8, D]
    check = run_check(cfg.check, scores, reference, flat, queries, singles @ torch.from_numpy(items).T)
    indexes, served = {"flat": flat_file.record}, flat
    if index.name != "flat":
        served_file = IndexFile(folder, index.name)
        served = served_file.write(index, items)
        indexes[index.name] = served_file.record
    return {
        "format": FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"class": type(model).__name__, "target": f"{type(model).__module__}.{type(model).__name__}",
                  "score": model.score_kind, "score_temperature": model.score_temperature},
        "data": {"dataset": datamodule.dataset.name, "n_users": datamodule.split.n_users, "n_items": items.shape[0],
                 "data_dir": str(datamodule.data_dir)},
        "dim": items.shape[1],
        "items": {"file": "items.npy", "dtype": "float32", "shape": list(items.shape), "ids_file": "item_ids.npy",
                  "ids": _ids_note(datamodule), "normalized": model.score_kind == "cosine"},
        "encoder": {
            "file": "query_encoder.pt", "format": "TorchScript (torch.jit.trace of recsys.export.encoder.QueryEncoder, frozen)",
            "inputs": input_spec(model, inputs, keys, type(datamodule.view).__name__),
            "output": {"dtype": "float32", "shape": ["batch", items.shape[1]]},
            "usage": "queries = torch.jit.load('query_encoder.pt')(*inputs); scores = queries @ items.T",
        },
        "indexes": indexes,
        "served_index": index.name,
        "check": check,
        "measurement": measure(cfg, datamodule, view_keys, keys, encoder, flat, served, index.name),
        "files": {p.name: p.stat().st_size for p in sorted(folder.iterdir())},
        "versions": {"torch": torch.__version__, "faiss": _faiss_version(), "numpy": np.__version__},
    }


def run_check(settings: DictConfig, scores, reference, flat, queries, single_scores) -> dict:
    """The check on the first test batch: the exported scores ``[B, I]`` against the
    checkpoint's ``reference`` (also of its first rows encoded one at a time,
    ``single_scores``, as a server at batch 1 does), and the exact index's top-k against
    torch's; raises :class:`ExportCheckError` on failure unless ``check.required`` is false."""
    k = min(settings.topk, flat.ntotal)
    _, found = flat.search(queries.numpy(), k)  # [B, k]
    check = {"batch": "the first test batch",
             "scores": score_check(scores, reference, settings.atol),
             "scores_batch_1": score_check(single_scores, reference[: len(single_scores)], settings.atol),
             "exact_topk": topk_check(scores, found, k)}
    check["passed"] = all(check[part]["passed"] for part in ("scores", "scores_batch_1", "exact_topk"))
    if not check["passed"] and settings.required:
        raise ExportCheckError(_failure(check))
    return check


class IndexFile:
    """Builds one index, writes it as ``index_<name>.faiss`` and keeps its manifest record."""

    def __init__(self, folder: Path, name: str) -> None:
        self.path = folder / f"index_{name}.faiss"
        self.record: dict = {}

    def write(self, index, items: np.ndarray):
        import faiss

        built = index.build(items)
        faiss.write_index(built, str(self.path))
        self.record = {"file": self.path.name, "ntotal": int(built.ntotal), **index.settings(items.shape[0])}
        return built


def measure(cfg: DictConfig, datamodule, view_keys: list[str], keys: list[str], encoder, flat, served, name: str) -> dict:
    """Recall@k of the served index against the exact one over the test users' queries,
    and the latency of the encoder and of each index's search."""
    inputs: dict[str, list] = {k: [] for k in keys}
    rows = 0
    for batch in datamodule.test_dataloader():
        for k in keys:
            inputs[k].append(batch[k])
        rows += len(batch[view_keys[0]])
        if cfg.measure.max_queries and rows >= cfg.measure.max_queries:
            break
    limit = cfg.measure.max_queries or rows
    tensors = [torch.cat(inputs[k])[:limit] for k in keys]
    queries = encoder(*tensors).numpy()  # [Q, D]
    k = min(cfg.measure.topk, flat.ntotal)
    _, exact = flat.search(queries, k)
    _, approx = served.search(queries, k)
    m = cfg.measure
    timing = dict(single_repeats=m.single_repeats, batch_size=m.batch_size, batch_repeats=m.batch_repeats)
    n = queries.shape[0]
    latency_ms = {"encoder": latency(lambda r: encoder(*[t[r] for t in tensors]), n, **timing),
                  "flat": latency(lambda r: flat.search(queries[r], k), n, **timing)}
    if name != "flat":
        latency_ms[name] = latency(lambda r: served.search(queries[r], k), n, **timing)
    return {
        "queries": n,
        "recall": {"k": k, "index": name, "against": "flat", "value": recall_at_k(approx, exact),
                   "note": "the share of each test query's exact top-k the index returns; raw scores, seen items not removed"},
        "latency_ms": latency_ms,
        "threads": threads(),
        "machine": _machine(),
    }


# ---------------------------------------------------------------- small helpers
def _failure(check: dict) -> str:
    s, t = check["scores"], check["exact_topk"]
    worst = max(s["max_abs_diff"], check["scores_batch_1"]["max_abs_diff"])
    return (
        f"the export does not reproduce the checkpoint: max |exported - checkpoint score| {worst:.3g} "
        f"(allowed {s['atol']:g}), {t['beyond_ties']} exact-index results outside torch's top-{t['k']}; "
        f"nothing was written (check.required=false writes it with the failure recorded)"
    )


def _ids_note(datamodule) -> str:
    note = ("row r of items.npy and of every index is the item with the framework's 0-based id item_ids[r], "
            "the dataset reader's id; the raw dataset tokens are not kept by the data structures")
    if datamodule.user_core > 1 or datamodule.item_core > 1:
        note += "; this run's k-core filtering renumbered the items after reading"
    return note


def _faiss_version() -> str:
    import faiss

    return faiss.__version__


def _machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform()}
