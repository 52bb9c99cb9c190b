"""Lightning's EarlyStopping whose configured patience survives a resume."""

from __future__ import annotations

import logging
from typing import Any

from pytorch_lightning.callbacks import EarlyStopping as LightningEarlyStopping

log = logging.getLogger(__name__)


class EarlyStopping(LightningEarlyStopping):
    """:class:`~pytorch_lightning.callbacks.EarlyStopping` that keeps the ``patience`` it was
    built with when a checkpoint is loaded.

    Lightning restores ``patience`` from the checkpoint, so a run that stopped early cannot
    be extended: ``ckpt_path=<run>/checkpoints/last.ckpt eval.patience=60
    trainer.max_epochs=400`` would stop again at the first validation. Here the count of
    validations without improvement and the best score are restored (the resumed run
    continues the same count) and the patience is the configured one, so raising it
    continues a stopped run and lowering it stops earlier. The class keeps Lightning's name,
    so its state key is Lightning's and checkpoints written by either class resume with the other.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        configured = self.patience
        super().load_state_dict(state_dict)
        if self.patience != configured:
            log.info("early stopping: patience %s from the configuration (the checkpoint had %s); "
                     "%s validations without improvement so far", configured, self.patience, self.wait_count)
        self.patience = configured
