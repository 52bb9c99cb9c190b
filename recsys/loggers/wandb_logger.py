"""The W&B logger of ``logger=wandb``: offline by default, grouped by sweep, never fatal.

One W&B run per run or sweep job. In a sweep (``-m``) the run's group is the sweep
(``<task_name>/<sweep time>``) and its name the job's swept overrides (``loss=nss,seed=1``),
so the W&B UI lays the losses' curves side by side; tags name the model, loss and dataset.
Without an API key, or with ``mode=offline`` (the default), the run is written to
``<run dir>/wandb/offline-run-*`` and can be uploaded later with ``wandb sync <that dir>``.
If W&B cannot start at all, the run goes on without it after a one-line warning.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from omegaconf import OmegaConf


def _hydra():
    from hydra.core.hydra_config import HydraConfig

    try:
        return HydraConfig.get()
    except ValueError:  # no Hydra context (plain API use)
        return None


def swept_overrides(hydra_cfg) -> list[str]:
    """The job's overrides whose keys the sweep varies (``['loss=nss', 'seed=1']``)."""
    job = list(hydra_cfg.overrides.task)
    swept = set(hydra_cfg.sweeper.get("params") or {})
    multirun_file = Path(hydra_cfg.sweep.dir) / "multirun.yaml"
    if multirun_file.exists():  # the sweep's own command line, with the comma lists
        for override in OmegaConf.load(multirun_file).hydra.overrides.task:
            key, _, value = str(override).partition("=")
            if "," in value or "(" in value:
                swept.add(key)
    chosen = [o for o in job if o.partition("=")[0].lstrip("+~") in swept]
    return chosen or job


def sweep_identity(task_name: str) -> tuple[str | None, str | None]:
    """``(group, name)`` of this job's W&B run: ``(None, None)`` outside a sweep."""
    hydra_cfg = _hydra()
    mode = None if hydra_cfg is None else hydra_cfg.get("mode")
    if mode is None or getattr(mode, "name", str(mode)) != "MULTIRUN":
        return None, None
    return f"{task_name}/{Path(hydra_cfg.sweep.dir).name}", ",".join(swept_overrides(hydra_cfg))


def run_tags(extra: list[str] | None = None) -> list[str]:
    """``model:<m>``, ``loss:<l>``, ``data:<d>`` (from the config choices) plus ``extra``."""
    hydra_cfg = _hydra()
    tags = []
    if hydra_cfg is not None:
        for group in ("model", "loss", "data", "sampler"):
            choice = hydra_cfg.runtime.choices.get(group)
            if choice:
                tags.append(f"{group}:{choice}")
    return tags + [str(t) for t in (extra or [])]


def has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def wandb_logger(
    save_dir: str,
    project: str = "recsys",
    mode: str = "offline",
    task_name: str = "train",
    group: str | None = None,
    name: str | None = None,
    tags: list[str] | None = None,
    entity: str | None = None,
    init_timeout: float = 120.0,
):
    """A Lightning ``WandbLogger`` for this run, or ``None`` when W&B cannot start.

    Args:
        save_dir: folder that receives ``wandb/`` (the run directory).
        mode: ``offline`` (default), ``online`` (falls back to offline without an API key)
            or ``disabled``.
        group, name: default to the sweep and the job's swept overrides (see module doc).
        tags: extra tags beside ``model:``, ``loss:``, ``data:`` and ``sampler:``.
        init_timeout: seconds W&B may take to start before the run goes on without it.
    """
    from recsys.errors import ConfigError

    if mode not in ("offline", "online", "disabled"):
        raise ConfigError(f"logger.wandb.mode must be offline, online or disabled, got {mode!r}")
    if mode == "online" and not has_api_key():
        warnings.warn("W&B: no API key (WANDB_API_KEY or `wandb login`): logging offline instead", stacklevel=1)
        mode = "offline"
    if os.environ.get("WANDB_MODE") == "":  # an empty WANDB_MODE makes wandb.init fail
        del os.environ["WANDB_MODE"]
    auto_group, auto_name = sweep_identity(task_name)
    try:
        import wandb
        from pytorch_lightning.loggers import WandbLogger

        Path(save_dir).mkdir(parents=True, exist_ok=True)
        logger = WandbLogger(
            save_dir=save_dir,
            project=project,
            entity=entity,
            group=group or auto_group,
            name=name or auto_name,
            tags=run_tags(tags),
            mode=mode,
            settings=wandb.Settings(init_timeout=init_timeout, console="off", silent=True),
        )
        logger.experiment  # start now, so a failure is caught here and not mid-training
    except Exception as exc:  # noqa: BLE001 - W&B must never stop a run
        first = (str(exc).strip().splitlines() or [""])[0]
        warnings.warn(f"W&B could not start ({type(exc).__name__}: {first}); the run goes on without it", stacklevel=1)
        return None
    return logger


def finish(logger, metrics: dict[str, float] | None, failed: bool = False) -> None:
    """Put the final metrics in the run's summary and close it (each sweep job gets its own run)."""
    try:
        experiment = logger.experiment
        if metrics:
            experiment.summary.update(metrics)
        experiment.finish(exit_code=1 if failed else 0)
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"W&B could not finish the run cleanly ({exc})", stacklevel=1)
