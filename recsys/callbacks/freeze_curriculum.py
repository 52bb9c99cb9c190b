"""Pretrain, train with parts of the model frozen, then unfreeze them (config
``callbacks=[...,freeze_curriculum]``)."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BaseFinetuning
from pytorch_lightning.trainer.states import TrainerFn
from torch.optim import Optimizer

from recsys.callbacks.curriculum_checks import (
    check_arguments,
    check_metric_is_computed,
    check_model_paths,
    check_optimizers_hold_no_frozen,
    logged_value,
    never_trained,
    paths,
    warn_never_trained,
)
from recsys.callbacks.curriculum_switch import SwitchCondition
from recsys.callbacks.param_groups import add_param_group, parameters_at, remove_from_optimizer, set_trainable


class FreezeCurriculum(BaseFinetuning):
    """Stage 0 (``pretrain_epochs`` epochs, none by default) trains the whole model, so
    that what stage 1 freezes has been trained. Stage 1 trains with the ``freeze``
    submodules of ``pl_module.model`` frozen (``requires_grad=False``, gradient dropped,
    removed from the optimizer with their optimizer state, so neither weight decay nor
    momentum moves them; train/eval mode untouched, so dropout behaves as before).
    Stage 2 unfreezes ``unfreeze`` and, ``later_epochs`` epochs later, ``later_unfreeze``;
    each set goes into a new optimizer param group with ``lr = lr(group 0) * lr_factor``.
    Without pretraining, the frozen parts keep their initial values until unfrozen: start
    them from a trained run (``init_from``) or set ``pretrain_epochs``.

    Timing: stage 1 starts at epoch ``pretrain_epochs``; when stage 2 starts is decided by
    :class:`~recsys.callbacks.curriculum_switch.SwitchCondition` (``after_epoch``,
    ``max_train_loss``, ``min_val_metric`` on ``val_metric``), whose epoch ``e + 1``'s
    ``on_train_epoch_start`` (BaseFinetuning's hook) unfreezes.

    Resume: the stage, the switch condition's state and the optimizer's param groups
    (BaseFinetuning's metadata, stored whole at every epoch start since stage 1 shrinks
    group 0) are in the checkpoint, so a run resumed from any
    checkpoint (mid-epoch, after validation, after the epoch) decides and applies the same
    stages; ``on_fit_start`` rebuilds the groups and sets which parameters train before
    Lightning loads the optimizer state.
    ``configure_optimizers`` must pass only parameters with ``requires_grad`` (checked).
    Frozen modules still update buffers (BatchNorm running statistics) in train mode, and
    an LR scheduler built before a new group exists does not scale it (as in BaseFinetuning).

    Args:
        freeze: dotted submodule paths under ``pl_module.model`` frozen in stage 1.
        pretrain_epochs: epochs of stage 0 (nothing frozen) before stage 1; >= 0.
        unfreeze: paths unfrozen at the switch (inside, or containing, a frozen path).
        after_epoch, max_train_loss, min_val_metric: switch conditions (at least one).
        val_metric: the validation metric compared with ``min_val_metric``.
        lr_factor: learning rate of each new group relative to group 0; > 0.
        later_unfreeze: paths unfrozen ``later_epochs`` epochs after the switch.
        later_epochs: >= 1 when ``later_unfreeze`` is given.
    """

    def __init__(
        self,
        freeze: list[str],
        unfreeze: list[str],
        after_epoch: int | None = None,
        max_train_loss: float | None = None,
        min_val_metric: float | None = None,
        val_metric: str = "val/recall@100",
        lr_factor: float = 0.01,
        later_unfreeze: list[str] = (),
        later_epochs: int = 0,
        pretrain_epochs: int = 0,
    ) -> None:
        super().__init__()
        self.freeze_paths = paths("freeze", freeze, allow_empty=False)
        self.unfreeze_paths = paths("unfreeze", unfreeze, allow_empty=False)
        self.later_paths = paths("later_unfreeze", later_unfreeze, allow_empty=True)
        check_arguments(after_epoch, max_train_loss, min_val_metric, val_metric, lr_factor, later_epochs,
                        pretrain_epochs, has_later=bool(self.later_paths))
        self.val_metric, self.lr_factor, self.later_epochs = val_metric, float(lr_factor), later_epochs
        self.pretrain_epochs = pretrain_epochs
        self.stage, self.later_done = 0 if pretrain_epochs else 1, False
        self.switch = SwitchCondition(after_epoch, max_train_loss, min_val_metric, first_epoch=pretrain_epochs)

    @property
    def switch_epoch(self) -> int | None:
        """The first epoch of stage 2, once a switch condition has held."""
        return self.switch.switch_epoch

    def never_trained(self, loaded: list[str] = ()) -> list[str]:
        """Frozen paths that keep (part of) their initial values for the whole run: none
        with pretraining; else those not entirely inside an unfrozen path, and not inside a
        part loaded with ``init_from`` (``loaded``: its targets, ``""`` = the whole model).
        With the defaults and neither that is ``item_tower`` (only its head is unfrozen)
        and ``graph``."""
        if self.pretrain_epochs:
            return []
        return never_trained(self.freeze_paths, [*self.unfreeze_paths, *self.later_paths], loaded)

    # ---- freezing (BaseFinetuning) ---------------------------------------------------------
    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        if self.stage >= 1:  # the constructor's stage: a resumed run's is applied in on_fit_start
            self._apply_stage(pl_module)

    def _apply_stage(self, pl_module: pl.LightningModule) -> None:
        """Which parameters train in stage >= 1: the frozen paths not (yet) unfrozen."""
        set_trainable(parameters_at(pl_module.model, self.freeze_paths), False)
        for released, done in ((self.unfreeze_paths, self.stage == 2), (self.later_paths, self.later_done)):
            if done:
                set_trainable(parameters_at(pl_module.model, released), True)

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        model = pl_module.model
        if self.stage == 0 and epoch >= self.pretrain_epochs:  # frozen parts leave the optimizer with their state
            remove_from_optimizer(optimizer, parameters_at(model, self.freeze_paths))
            self.stage = 1
        if self.switch_epoch is None or epoch < self.switch_epoch:
            return
        if self.stage == 1:
            add_param_group(optimizer, parameters_at(model, self.unfreeze_paths), self.lr_factor)
            self.stage = 2
        if self.later_paths and not self.later_done and epoch >= self.switch_epoch + self.later_epochs:
            add_param_group(optimizer, parameters_at(model, self.later_paths), self.lr_factor)
            self.later_done = True

    def warn_if_never_trained(self, loaded: list[str] = ()) -> None:
        """One warning line on stderr when :meth:`never_trained` is not empty."""
        warn_never_trained(self.never_trained(loaded))

    # ---- hooks ------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            check_model_paths(getattr(pl_module, "model", None), self.freeze_paths,
                              {"unfreeze": self.unfreeze_paths, "later_unfreeze": self.later_paths})
            self.warn_if_never_trained(list(getattr(pl_module, "pretrained_parts", ())))
            super().setup(trainer, pl_module, stage)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)  # restores the param groups of a resumed run
        if self.stage >= 1:  # a resumed run's stage (setup saw the constructor's)
            self._apply_stage(pl_module)
        frozen = {id(p) for p in parameters_at(pl_module.model, self.freeze_paths) if not p.requires_grad}
        check_optimizers_hold_no_frozen(trainer.optimizers, frozen)
        if self.switch.min_val_metric is not None:
            check_metric_is_computed(self.val_metric, getattr(getattr(pl_module, "evaluator", None), "ks", None))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Apply the epoch's stage; store every optimizer's whole param groups by name
        (BaseFinetuning only records added groups, but stage 1 also shrinks group 0)."""
        self.switch.start_epoch()
        names = {p: n for n, p in pl_module.named_parameters()}
        for i, optimizer in enumerate(trainer.optimizers):
            self.finetune_function(pl_module, trainer.current_epoch, optimizer)
            self._internal_optimizer_metadata[i] = self._apply_mapping_to_param_groups(optimizer.param_groups, names)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        pl_module.log("curriculum/stage", float(self.stage), on_step=True, on_epoch=False, batch_size=1)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.switch.add_step_loss(outputs.get("loss") if isinstance(outputs, dict) else outputs)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or self.switch.min_val_metric is None:
            return
        self.switch.validated(logged_value(self.val_metric, trainer.callback_metrics))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.switch.end_epoch(trainer.current_epoch)

    # ---- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(stage=self.stage, later_done=self.later_done, **self.switch.state_dict())
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.stage = state_dict.get("stage", 1)
        self.later_done = state_dict.get("later_done", False)
        self.switch.load_state_dict(state_dict)
