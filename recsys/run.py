"""``python -m recsys.run``: compose the config, build every piece, train, test, report.

Each run writes into its Hydra output directory: ``config_resolved.yaml``, ``epochs.csv``
(one row per epoch), ``csv/metrics.csv`` (per step), ``checkpoints/best.ckpt``,
``test_per_user.csv`` and, only once everything has finished, ``metrics.json``.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from recsys.config import check_choices, check_ks, validate
from recsys.errors import ConfigError, RecsysError

# torch and Lightning are imported inside train(), so that a bad command line is
# answered at once, before the heavy imports.


def build_model(model_cfg: DictConfig, split):
    """Instantiate the model, passing the data facts its constructor asks for."""
    facts = {
        "n_users": split.n_users,
        "n_items": split.n_items,
        "user_features": split.train.user_features,
        "item_features": split.train.item_features,
        "feature_cardinality": split.train.feature_cardinality,
    }
    params = inspect.signature(hydra.utils.get_class(model_cfg._target_).__init__).parameters
    return instantiate(model_cfg, **{k: v for k, v in facts.items() if k in params})


def build(cfg: DictConfig):
    """Load the data and build the model, loss, sampler and LightningModule.

    Returns:
        ``(datamodule, module)``, the data module already holding the model's view.
    """
    from recsys.models.init_from import load_components
    from recsys.module import RecModule

    datamodule = instantiate(cfg.data)
    split = datamodule.prepare()
    check_ks(cfg.eval.ks, split.n_items)
    model = build_model(cfg.model, split)
    model.setup(split)
    loaded = load_components(model, cfg.get("init_from"))
    if loaded and cfg.get("paths") is not None and cfg.paths.get("output_dir"):
        _write_json_atomic(Path(cfg.paths.output_dir) / "loaded_components.json", {"loaded": loaded})
        for record in loaded:
            print(f"init_from: loaded {record['tensors']} tensors ({record['parameters']} values) "
                  f"from {record['ckpt']} [{record['source']}] into {record['target']}")
    datamodule.attach(model.make_view(split))
    sampler = instantiate(cfg.sampler)
    sampler.setup(split)
    loss = instantiate(cfg.loss)
    loss.setup(split.n_items)
    module = RecModule(
        model=model,
        loss=loss,
        sampler=sampler,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        n_items=split.n_items,
        ks=list(cfg.eval.ks),
        monitor=cfg.eval.monitor,
        aux={name: instantiate(term) for name, term in (cfg.get("aux") or {}).items()},
        loss_name=_choice("loss"),
    )
    for term in module.aux.values():
        term.check(module.model)  # fails now, not mid-training, if the model lacks what the term needs
    return datamodule, module


def _check_accelerator(accelerator: str) -> None:
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                "trainer=gpu needs a CUDA device, but torch sees none (a CPU build of torch, or no GPU); "
                "use trainer=cpu or install a CUDA build (make install TORCH_SPEC=torch)"
            )


def _choice(group: str) -> str | None:
    """The option picked for a config group (e.g. 'nss' for loss=nss), when known."""
    try:
        return HydraConfig.get().runtime.choices.get(group)
    except ValueError:  # no Hydra context (plain API use)
        return None


def train(cfg: DictConfig) -> dict[str, float]:
    """Train and evaluate as configured; returns the final metrics."""
    validate(cfg)
    _check_accelerator(cfg.trainer.get("accelerator", "cpu"))
    import pytorch_lightning as pl

    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    datamodule, module = build(cfg)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    _warn_untrained_frozen(callbacks, [str(e.get("target", "")) for e in cfg.get("init_from") or []])
    loggers = [lg for lg in (instantiate(c) for c in (cfg.get("logger") or {}).values()) if lg is not None]
    wandb_runs = [lg for lg in loggers if type(lg).__name__ == "WandbLogger"]
    for lg in wandb_runs:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    try:
        metrics = _fit_and_evaluate(cfg, datamodule, module, callbacks, loggers, output_dir)
    except BaseException:
        _finish_wandb(wandb_runs, None, failed=True)
        raise
    _finish_wandb(wandb_runs, metrics, failed=False)
    return metrics


def _finish_wandb(runs, metrics, failed: bool) -> None:
    if runs:
        from recsys.loggers.wandb_logger import finish

        for lg in runs:
            finish(lg, metrics, failed=failed)


def _warn_untrained_frozen(callbacks: list, loaded_targets: list[str]) -> None:
    """One warning line when a freeze curriculum keeps randomly initialized parts frozen for
    the whole run (on ml1m that cost 3-4x in NDCG@10: README, two-tower table)."""
    from recsys.callbacks.freeze_curriculum import FreezeCurriculum

    for callback in callbacks:
        if isinstance(callback, FreezeCurriculum) and (stuck := callback.never_trained(loaded_targets)):
            print(f"warning: freeze_curriculum keeps {', '.join(stuck)} frozen at their initial (random) values for the "
                  f"whole run; start them from a checkpoint with init_from=[{{ckpt: ..., source: ..., target: {stuck[0]}}}] "
                  f"or add them to callbacks.freeze_curriculum.later_unfreeze", file=sys.stderr)


def _fit_and_evaluate(cfg: DictConfig, datamodule, module, callbacks, loggers, output_dir: Path) -> dict[str, float]:
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if cfg.fit:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        ckpt = best or None
    else:  # evaluate a saved checkpoint only
        if not cfg.get("ckpt_path"):
            raise ConfigError("fit=false evaluates a checkpoint: set ckpt_path=/path/to/best.ckpt")
        ckpt = cfg.ckpt_path
    metrics = {k: float(v) for k, v in trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0].items()}
    if cfg.test_after_fit:
        metrics.update({k: float(v) for k, v in trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0].items()})
        _write_per_user(module, output_dir / "test_per_user.csv")
    metrics["epochs"] = trainer.current_epoch if cfg.fit else torch_load_epoch(ckpt)
    _write_json_atomic(output_dir / "metrics.json", metrics)
    print_table(metrics)
    return metrics


def torch_load_epoch(ckpt: str) -> int:
    """Number of finished epochs stored in a Lightning checkpoint."""
    import torch

    return int(torch.load(ckpt, map_location="cpu", weights_only=False).get("epoch", -1)) + 1


def _write_per_user(module, path: Path) -> None:
    import pandas as pd

    table = {k: v.numpy() for k, v in module.test_per_user.items() if "/" not in k or k.startswith("test/")}
    tmp = path.with_suffix(".tmp")
    pd.DataFrame(table).to_csv(tmp, index=False)
    os.replace(tmp, path)


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


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


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the monitored validation metric (for Optuna sweeps)."""
    try:
        metrics = train(cfg)
    except Exception as exc:
        _write_failure(cfg, exc)
        if HydraConfig.get().mode.name == "MULTIRUN":
            # a sweep goes on: this job is recorded as failed (failed.json, read by
            # recsys.report) and returns NaN, which the Optuna sweeper counts as a failed trial
            print(f"error: job {HydraConfig.get().job.num} failed: {_one_line(exc)}", file=sys.stderr)
            return float("nan")
        if not isinstance(exc, RecsysError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    return metrics.get(cfg.eval.monitor)


def _one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, looking through Hydra's instantiation wrapper."""
    while type(exc).__name__ == "InstantiationException" and exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _write_failure(cfg: DictConfig, exc: BaseException) -> None:
    """Record why the run failed in ``failed.json`` beside its outputs (never a metrics.json)."""
    import traceback

    try:
        output_dir = Path(cfg.paths.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(
            output_dir / "failed.json",
            {"error": _one_line(exc), "traceback": "".join(traceback.format_exception(exc))},
        )
    except Exception:  # noqa: BLE001 - never hide the original error
        pass


def cli() -> None:
    try:
        check_choices([a for a in sys.argv[1:] if not a.startswith("-")])
    except RecsysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
