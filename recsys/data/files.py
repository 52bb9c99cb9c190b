"""Finding dataset files: the data directory first, then a verified download.

Lookup order for a :class:`RemoteFile` ``f`` of a dataset stored under ``subdir``:

1. ``<data_dir>/<subdir>/<f.name>`` (``data_dir`` is ``paths.data_dir``, by default the
   environment variable ``RECSYS_DATA_DIR``, else ``~/.cache/recsys``);
2. a download from ``f.url`` into ``<data_dir>/<subdir>/``, verified against ``f.sha256``
   (a zip archive is downloaded once and ``f.archive_member`` extracted from it).

Any failure raises a one-line :class:`~recsys.errors.DataError` naming the file, where it
looked, and where to get it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from recsys.errors import DataError

DEFAULT_DATA_DIR = Path.home() / ".cache" / "recsys"


def default_data_dir() -> Path:
    """``RECSYS_DATA_DIR`` if set, else ``~/.cache/recsys``."""
    env = os.environ.get("RECSYS_DATA_DIR")
    return Path(env).expanduser() if env else DEFAULT_DATA_DIR


@dataclass(frozen=True)
class RemoteFile:
    """A dataset file and its public upstream.

    Attributes:
        name: file name inside the dataset's folder.
        url: public upstream address (``file://`` works too, which the tests use).
        sha256: checksum of the expected bytes; ``None`` when the upstream bytes vary and
            the file is verified by its statistics instead.
        archive_member: path inside a zip archive at ``url`` (``None``: ``url`` is the file).
    """

    name: str
    url: str
    sha256: str | None = None
    archive_member: str | None = None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve(remote: RemoteFile, data_dir: Path | str, subdir: str, download: bool = True) -> Path:
    """Return the local path of ``remote``, downloading and verifying it if needed."""
    data_dir = Path(data_dir).expanduser()
    local = data_dir / subdir / remote.name
    if local.is_file():
        return local
    if not download:
        raise DataError(
            f"missing file {remote.name}: not found at {local} and downloads are off; "
            f"get it from {remote.url} or set paths.data_dir to the folder holding {subdir}/"
        )
    try:
        _download(remote, local)
    except DataError:
        raise
    except Exception as exc:  # network down, 404, permission denied, bad archive...
        raise DataError(
            f"missing file {remote.name}: not found at {local} and the download from "
            f"{remote.url} failed ({type(exc).__name__}: {exc}); download it by hand into "
            f"{local.parent} or set paths.data_dir (env RECSYS_DATA_DIR) to a folder with {subdir}/"
        ) from None
    return local


def _download(remote: RemoteFile, local: Path) -> None:
    local.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=local.parent) as tmp:
        fetched = Path(tmp) / "download"
        _fetch_with_progress(remote.url, fetched, label=remote.name)
        if remote.archive_member is not None:
            with zipfile.ZipFile(fetched) as archive, archive.open(remote.archive_member) as src:
                extracted = Path(tmp) / remote.name
                with open(extracted, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            fetched = extracted
        if remote.sha256 is not None:
            actual = sha256_of(fetched)
            if actual != remote.sha256:
                raise DataError(
                    f"checksum mismatch for {remote.name} downloaded from {remote.url}: expected "
                    f"sha256 {remote.sha256[:12]}..., got {actual[:12]}...; the upstream file "
                    f"changed or the download was corrupted, so nothing was saved to {local}"
                )
        os.replace(fetched, local)  # atomic: a partial download never looks complete


def _fetch_with_progress(url: str, dest: Path, label: str) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, transient=True) as progress:
            task = progress.add_task(f"downloading {label}", total=total)
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                progress.update(task, advance=len(block))
