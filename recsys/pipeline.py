"""One run: validate the config, build, fit, evaluate the best checkpoint, write results.

A run's results (``metrics.json``, ``test_per_user.csv``) are written only once
everything has finished, each atomically, so a folder never holds a result that looks
complete but is not.

Under DDP (``trainer=ddp``) every process runs this whole function (Lightning's launcher
starts the others with the same command line, into the same run folder); every process
fits and evaluates, and only rank 0 writes the run folder's files and prints the results.
"""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from recsys.config import validate
from recsys.distributed import is_rank_zero
from recsys.errors import ConfigError
from recsys.outputs import print_table, results_line, write_json_atomic, write_per_user
from recsys.wiring import build, build_callbacks, build_loggers, check_accelerator, check_strategy, wandb_runs

# torch and Lightning are imported inside train(), so that a bad command line is
# answered at once, before the heavy imports.


def train(cfg: DictConfig) -> dict[str, float]:
    """Train and evaluate as configured; returns the final metrics."""
    validate(cfg)
    check_accelerator(cfg.trainer.get("accelerator", "cpu"))
    check_strategy(cfg.trainer, cfg.get("callbacks"))
    import pytorch_lightning as pl

    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if is_rank_zero():
        (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    datamodule, module = build(cfg)
    callbacks = build_callbacks(cfg)
    loggers = build_loggers(cfg)
    try:
        metrics = fit_and_evaluate(cfg, datamodule, module, callbacks, loggers, output_dir)
    except BaseException:
        _finish_wandb(loggers, None, failed=True)
        raise
    _finish_wandb(loggers, metrics, failed=False)
    return metrics


def _finish_wandb(loggers: list, metrics, failed: bool) -> None:
    runs = wandb_runs(loggers) if is_rank_zero() else []  # Lightning's W&B logger runs in rank 0 only
    if runs:
        from recsys.loggers.wandb_logger import finish

        for lg in runs:
            finish(lg, metrics, failed=failed)


def fit_and_evaluate(cfg: DictConfig, datamodule, module, callbacks, loggers, output_dir: Path) -> dict[str, float]:
    """Fit (unless ``fit=false``), then validate and test the best checkpoint and write
    ``test_per_user.csv`` (with each user's ``target_train_count``) and, last,
    ``metrics.json``. A model with nothing to train
    (``model.trainable`` False, e.g. ``model=pop``) is evaluated as built, with 0 epochs;
    its loss and sampler are never used."""
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if not module.model.trainable:  # Lightning cannot optimize nothing
        ckpt, epochs = None, 0
    elif cfg.fit:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        ckpt, epochs = best or None, None
    else:  # evaluate a saved checkpoint only
        if not cfg.get("ckpt_path"):
            raise ConfigError("fit=false evaluates a checkpoint: set ckpt_path=/path/to/best.ckpt")
        ckpt, epochs = cfg.ckpt_path, checkpoint_epochs(cfg.ckpt_path)
    metrics = {k: float(v) for k, v in trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0].items()}
    if cfg.test_after_fit:
        metrics.update({k: float(v) for k, v in trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0].items()})
    metrics["epochs"] = trainer.current_epoch if epochs is None else epochs
    if trainer.is_global_zero:  # every process holds the same metrics and per-user table (gathered)
        if cfg.test_after_fit:
            per_user = dict(module.test_per_user)
            per_user["target_train_count"] = datamodule.target_train_counts("test")[per_user["user"]]
            write_per_user(per_user, output_dir / "test_per_user.csv")
        write_json_atomic(output_dir / "metrics.json", metrics)
        print_table(metrics)
        print(results_line(output_dir))
    return metrics


def checkpoint_epochs(ckpt: str) -> int:
    """Number of finished epochs stored in a Lightning checkpoint."""
    import torch

    return int(torch.load(ckpt, map_location="cpu", weights_only=False).get("epoch", -1)) + 1
