"""What a run writes and prints: atomic JSON and CSV files, the failure record, the table."""

from __future__ import annotations

import json
import os
import traceback
from pathlib import Path

from omegaconf import DictConfig

from recsys.errors import RecsysError


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` through a temporary file: readers never see half a file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def write_per_user(per_user: dict, path: Path) -> None:
    """The per-user test metrics (``user`` and ``test/...`` columns) as a CSV, atomically."""
    import pandas as pd

    table = {k: v.numpy() for k, v in per_user.items() if "/" not in k or k.startswith("test/")}
    tmp = path.with_suffix(".tmp")
    pd.DataFrame(table).to_csv(tmp, index=False)
    os.replace(tmp, path)


def unwrap(exc: BaseException) -> BaseException:
    """The error a constructor raised, not Hydra's ``InstantiationException`` around it."""
    while type(exc).__name__ == "InstantiationException" and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def one_line(exc: BaseException) -> str:
    """The line a user reads: a :class:`RecsysError`'s own message (already one actionable
    line), else ``Type: first line of the message``; looks through Hydra's wrapper."""
    exc = unwrap(exc)
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return first if isinstance(exc, RecsysError) else f"{type(exc).__name__}: {first}"


def write_failure(cfg: DictConfig, exc: BaseException) -> None:
    """Record why the run failed in ``failed.json`` beside its outputs (never a metrics.json);
    under DDP only rank 0 writes it."""
    from recsys.distributed import is_rank_zero

    if not is_rank_zero():
        return
    try:
        output_dir = Path(cfg.paths.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            output_dir / "failed.json",
            {"error": one_line(exc), "traceback": "".join(traceback.format_exception(exc))},
        )
    except Exception:  # noqa: BLE001 - never hide the original error
        pass


def print_table(metrics: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    names = sorted({k.split("/", 1)[1] for k in metrics if "/" in k})
    prefixes = sorted({k.split("/", 1)[0] for k in metrics if "/" in k}, key=lambda p: (not p.startswith("val"), p))
    table = Table(title="final metrics (full ranking unless the column says sampled)")
    table.add_column("metric")
    for prefix in prefixes:
        table.add_column(prefix, justify="right")
    for name in names:
        table.add_row(name, *[f"{metrics[f'{p}/{name}']:.4f}" if f"{p}/{name}" in metrics else "" for p in prefixes])
    Console().print(table)


def results_line(output_dir: Path) -> str:
    """Where a finished run's results are: ``results: <run dir> (metrics.json, ...)``,
    naming the files this run wrote."""
    files = [f for f in ("metrics.json", "test_per_user.csv", "checkpoints/best.ckpt") if (output_dir / f).is_file()]
    return f"results: {output_dir} ({', '.join(files)})"
