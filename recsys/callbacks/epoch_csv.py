"""One row of metrics per epoch in a CSV file."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytorch_lightning as pl


class EpochMetricsCSV(pl.Callback):
    """Writes ``epoch``, the epoch means of the training metrics and the validation metrics
    to ``path`` after every training epoch (the file is rewritten atomically, so it is
    always complete up to the last finished epoch). With ``check_val_every_n_epoch > 1``
    the validation columns (``val*``, ``collapse/*``) of epochs without a validation are
    left empty instead of repeating the last validation's values. Under DDP only rank 0
    writes; the training columns are means over every process's rows (``sync_dist``).

    Args:
        path: the CSV file.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []
        self._validated_epoch: int | None = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row: dict[str, float] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        validated = self._validated_epoch == trainer.current_epoch
        for key, value in sorted(trainer.callback_metrics.items()):
            if key.endswith("_step") or value.numel() != 1:
                continue
            if not validated and key.startswith(("val", "collapse/")):
                continue
            row[key.removesuffix("_epoch")] = float(value)
        self.rows.append(row)
        if trainer.is_global_zero:
            self._write()

    def _write(self) -> None:
        columns: list[str] = []
        for row in self.rows:
            columns += [c for c in row if c not in columns]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict.get("rows", []))
