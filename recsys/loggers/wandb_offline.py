"""Read back what an offline W&B run logged, without an account or network.

An offline run (``wandb/offline-run-*/run-*.wandb``) is a LevelDB-style log of protobuf
``Record`` messages: a 7-byte file header (``:W&B``, magic ``0xBEE1``, version), then
32 KiB blocks of chunks, each with a 7-byte header (crc32, length, type: full, first,
middle, last). This module decodes the run's identity (name, group, tags), its config,
every logged history row and the final summary, so tests and reports can check a run.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What one offline W&B run holds."""

    path: Path
    name: str = ""
    group: str = ""
    project: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    exit_code: int | None = None

    def series(self, key: str) -> list[float]:
        """Every logged value of ``key``, in logging order."""
        return [row[key] for row in self.history if key in row]


def _chunks(data: bytes):
    ident, magic, _version = struct.unpack("<4sHB", data[:_HEADER])
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError("not a W&B transaction log (bad file header)")
    offset, pending = _HEADER, b""
    while offset + _HEADER <= len(data):
        space = _BLOCK - offset % _BLOCK
        if space < _HEADER:  # block trailer padding
            offset += space
            continue
        _crc, length, kind = struct.unpack("<IHB", data[offset : offset + _HEADER])
        if kind == 0 and length == 0:  # zero padding at the end of a block
            offset += space
            continue
        payload = data[offset + _HEADER : offset + _HEADER + length]
        offset += _HEADER + length
        if kind == _FULL:
            yield payload
        elif kind == _FIRST:
            pending = payload
        elif kind == _MIDDLE:
            pending += payload
        elif kind == _LAST:
            yield pending + payload
            pending = b""


def _items(items) -> dict:
    out: dict = {}
    for item in items:
        key = "/".join(item.nested_key) if item.nested_key else item.key
        out[key] = json.loads(item.value_json)
    return out


def read_offline_run(run_dir: str | Path, wait_s: float = 30.0) -> OfflineRun:
    """Decode ``run_dir`` (a ``wandb/offline-run-*`` folder) or its ``.wandb`` file.

    W&B's service process writes the file after ``run.finish()`` has returned (on a busy
    machine the file can still be empty then), so a run without its closing ``exit``
    record is read again until it has one or ``wait_s`` seconds have passed; a run that is
    still going (or was killed) is then returned as far as it goes (``exit_code`` None).
    """
    run_dir = Path(run_dir)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            run = _read_once(run_dir)
        except FileNotFoundError:
            raise
        except Exception:  # noqa: BLE001 - a record cut mid-write; read again while there is time
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
            continue
        if run.exit_code is not None or time.monotonic() >= deadline:
            return run
        time.sleep(0.2)


def _read_once(run_dir: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    files = [run_dir] if run_dir.is_file() else sorted(run_dir.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {run_dir}")
    run = OfflineRun(path=files[0])
    data = files[0].read_bytes()
    if len(data) < _HEADER:  # not written yet
        return run
    for payload in _chunks(data):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.name, run.group, run.project = r.display_name, r.run_group, r.project
            run.tags = list(r.tags)
            run.config.update(_items(r.config.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "history":
            run.history.append(_items(record.history.item))
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def find_offline_runs(root: str | Path) -> list[Path]:
    """Every ``offline-run-*`` folder under ``root``."""
    return sorted(p for p in Path(root).rglob("offline-run-*") if p.is_dir())
