"""When the freeze curriculum's stage 2 starts: its switch conditions, the epoch's running
training loss and validation value they read, and that state for checkpoints."""

from __future__ import annotations

from torch import Tensor


class SwitchCondition:
    """Checked once per training epoch ``e >= first_epoch`` (the first epoch of stage 1, so
    stage 1 lasts at least one epoch), at the epoch's end (:meth:`end_epoch`: Lightning
    has run the epoch's validation by then), or by a validation that finishes after it,
    before epoch ``e + 1`` starts (:meth:`validated`). The first epoch ``e`` where any
    condition holds sets ``switch_epoch = e + 1``:

    - ``after_epoch``: ``e >= after_epoch`` (``after_epoch=1`` -> stage 2 from epoch 2);
    - ``max_train_loss``: the mean over epoch ``e``'s steps of the loss ``training_step``
      returns (RecModule's ``train/loss``, unweighted by batch size) is ``<= max_train_loss``;
    - ``min_val_metric``: the last validation value of epoch ``e`` is ``>= min_val_metric``
      (never holds in an epoch without validation).

    The running loss and validation value are in :meth:`state_dict`, so a run resumed
    mid-epoch, after validation or after the epoch decides the same switch.
    """

    def __init__(self, after_epoch: int | None, max_train_loss: float | None, min_val_metric: float | None,
                 first_epoch: int) -> None:
        self.after_epoch, self.max_train_loss, self.min_val_metric = after_epoch, max_train_loss, min_val_metric
        self.first_epoch = first_epoch
        self.switch_epoch: int | None = None
        self._val: float | None = None  # last validation value of the current epoch
        self._loss_sum, self._loss_steps = 0.0, 0  # training loss of the current epoch
        self._closed_epoch: int | None = None  # epoch whose end was seen, until the next starts

    def holds(self, epoch: int, train_loss: float | None, val_value: float | None) -> bool:
        """Whether the conditions hold at the end of epoch ``epoch`` with these metrics (pure)."""
        return (
            (self.after_epoch is not None and epoch >= self.after_epoch)
            or (self.max_train_loss is not None and train_loss is not None and train_loss <= self.max_train_loss)
            or (self.min_val_metric is not None and val_value is not None and val_value >= self.min_val_metric)
        )

    def start_epoch(self) -> None:
        self._val, self._closed_epoch, self._loss_sum, self._loss_steps = None, None, 0.0, 0

    def add_step_loss(self, loss: Tensor | None) -> None:
        if self.max_train_loss is not None and loss is not None:  # a tensor sum: no device sync per step
            self._loss_sum, self._loss_steps = self._loss_sum + loss.detach().float(), self._loss_steps + 1

    def validated(self, value: float) -> None:
        self._val = value
        if self._closed_epoch is not None:  # a validation run after the epoch's end
            self._decide(self._closed_epoch, None, value)

    def end_epoch(self, epoch: int) -> None:
        self._closed_epoch = epoch
        train_loss = float(self._loss_sum) / self._loss_steps if self._loss_steps else None
        self._decide(epoch, train_loss, self._val)

    def _decide(self, epoch: int, train_loss: float | None, val_value: float | None) -> None:
        if epoch >= self.first_epoch and self.switch_epoch is None and self.holds(epoch, train_loss, val_value):
            self.switch_epoch = epoch + 1

    def state_dict(self) -> dict:
        return {"switch_epoch": self.switch_epoch, "val": self._val, "loss_sum": float(self._loss_sum),
                "loss_steps": self._loss_steps}

    def load_state_dict(self, state: dict) -> None:
        self.switch_epoch = state.get("switch_epoch")
        self._val = state.get("val")
        self._loss_sum, self._loss_steps = state.get("loss_sum", 0.0), state.get("loss_steps", 0)
