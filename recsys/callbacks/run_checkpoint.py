"""Lightning's ModelCheckpoint with a ``last.ckpt`` of the last epoch and a best checkpoint
that survives a resume in a new folder."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from recsys.distributed import barrier, is_rank_zero


class RunCheckpoint(ModelCheckpoint):
    """:class:`~pytorch_lightning.callbacks.ModelCheckpoint` for exact resume.

    ``last.ckpt`` is the last epoch: since Lightning 2.6, ModelCheckpoint rewrites it only
    when a top-k checkpoint is saved at the same step, so with ``save_top_k=1`` it is the
    best epoch, and a run resumed from it silently repeats the epochs after the best one.
    Here ``last.ckpt`` is written wherever ModelCheckpoint would check (each epoch's end,
    or each validation's end when validation is not every epoch), improved or not.

    A run resumed with ``ckpt_path=<run>/checkpoints/last.ckpt`` writes into a new Hydra
    run folder. ModelCheckpoint then forgets the best score and the kept checkpoints (it
    keeps only ``best_model_path``), so the resumed run's first validation becomes "best"
    even when an earlier epoch was better, and the run reports another epoch than the
    uninterrupted run would. This class copies the kept checkpoints of the earlier folder
    into its own and restores their scores under the new paths: the resumed run selects
    the checkpoint the uninterrupted run selects, from a folder that holds it. When a kept
    file is gone it falls back to ModelCheckpoint's behaviour (and its warning). Under DDP
    rank 0 copies (every process computes the same new paths; all wait for the copies).

    Takes ModelCheckpoint's arguments; its state is saved under ModelCheckpoint's key, so
    checkpoints written by either class resume with the other.
    """

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_unless_saved(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_unless_saved(trainer)

    def _save_last_unless_saved(self, trainer: pl.Trainer) -> None:
        """``last.ckpt`` at this step, unless ModelCheckpoint saved a checkpoint (and so
        ``last.ckpt``) at this step already, or saves nothing now (not fitting...)."""
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    @property
    def state_key(self) -> str:
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def load_state_dict(self, state_dict: dict) -> None:
        previous = state_dict.get("dirpath")
        if previous is None or self.dirpath is None or Path(previous).resolve() == Path(self.dirpath).resolve():
            super().load_state_dict(state_dict)
            return
        kept = dict(state_dict.get("best_k_models") or {})
        if not all(Path(path).is_file() for path in kept):
            warnings.warn(f"checkpoints kept by the resumed run are missing in {previous}; the best-checkpoint "
                          f"selection restarts from this run's epochs")
            super().load_state_dict(state_dict)
            return
        moved = {path: self._copy_here(path) for path in kept}
        barrier()
        super().load_state_dict({
            **state_dict,
            "dirpath": self.dirpath,
            "best_k_models": {moved[path]: score for path, score in kept.items()},
            "best_model_path": moved.get(state_dict.get("best_model_path"), state_dict.get("best_model_path", "")),
            "kth_best_model_path": moved.get(state_dict.get("kth_best_model_path"), ""),
            # this run's own last.ckpt, overwritten rather than versioned (last-v1.ckpt) when the
            # folder holds one already, e.g. a run folder moved and resumed from there
            "last_model_path": self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST),
        })

    def _copy_here(self, path: str) -> str:
        """Copy checkpoint ``path`` into this run's ``dirpath``; returns the new path."""
        target = Path(self.dirpath) / Path(path).name
        if is_rank_zero():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        return str(target)
