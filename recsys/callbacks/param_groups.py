"""Which parameters train, and which optimizer param group holds them: the surgery a
curriculum (``recsys.callbacks.freeze_curriculum``) does when it freezes and unfreezes
parts of a model during training."""

from __future__ import annotations

from torch import nn
from torch.optim import Optimizer


def parameters_at(model: nn.Module, paths: list[str]) -> list[nn.Parameter]:
    """The parameters of the submodules ``paths`` (dotted, under ``model``), each once."""
    found = {id(p): p for path in paths for p in model.get_submodule(path).parameters()}
    return list(found.values())


def set_trainable(params: list[nn.Parameter], trainable: bool) -> None:
    for param in params:
        param.requires_grad_(trainable)


def remove_from_optimizer(optimizer: Optimizer, params: list[nn.Parameter]) -> None:
    """Freeze ``params`` and take them out of ``optimizer`` with their state: a zero
    gradient would still let momentum and weight decay move them."""
    removed = {id(p) for p in params}
    for param in params:
        param.requires_grad_(False)
        param.grad = None
        optimizer.state.pop(param, None)
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in removed]


def add_param_group(optimizer: Optimizer, params: list[nn.Parameter], lr_factor: float) -> None:
    """Unfreeze ``params``; those not yet optimized form a new group with ``lr = lr(group 0)
    * lr_factor``. Membership is by identity: BaseFinetuning's ``filter_on_optimizer``
    compares values, which drops e.g. a LayerNorm weight equal to another one."""
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    set_trainable(params, True)
    new = [p for p in params if id(p) not in in_optimizer]
    if new:
        optimizer.add_param_group({"params": new, "lr": optimizer.param_groups[0]["lr"] * lr_factor})
