"""Build every piece of a run from its composed config.

Each object comes from its ``_target_``; this module only passes what the config cannot
know (the data split's sizes and features) and connects the pieces: data -> model ->
sampler and loss -> :class:`~recsys.module.RecModule`, plus callbacks and loggers.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from recsys.config import SEARCH_SPACE_KEY, check_ks
from recsys.distributed import is_rank_zero
from recsys.errors import ConfigError
from recsys.outputs import write_json_atomic


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

    Model, sampler, loss and auxiliary terms share one protocol: ``setup(split)``, called
    once with the data split before training.

    Returns:
        ``(datamodule, module)``, the data module already holding the model's view.
    """
    from recsys.models.init_from import load_components
    from recsys.module import RecModule

    datamodule = instantiate(cfg.data)
    split = datamodule.prepare()
    check_ks(cfg.eval.ks, split.n_items)
    model = build_model(cfg.model, split)
    sampler = instantiate(cfg.sampler)
    loss_args = OmegaConf.to_container(cfg.loss, resolve=True)
    loss_args.pop(SEARCH_SPACE_KEY, None)  # the loss's search space is for recsys.compare, not its constructor
    loss = instantiate(loss_args)
    aux = {name: instantiate(term) for name, term in (cfg.get("aux") or {}).items()}
    for part in (model, sampler, loss, *aux.values()):
        part.setup(split)
    for term in aux.values():
        term.check(model)  # fails now, not mid-training, if the model lacks what the term needs
    loaded = load_components(model, cfg.get("init_from"))
    _report_loaded(cfg, loaded)
    datamodule.attach(model.make_view(split))
    module = RecModule(
        model=model,
        loss=loss,
        sampler=sampler,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        n_items=split.n_items,
        ks=list(cfg.eval.ks),
        monitor=cfg.eval.monitor,
        aux=aux,
        loss_name=choice("loss"),
        pretrained_parts=[record["target"] for record in loaded],
        short_head_share=cfg.eval.get("short_head_share", 0.2),
        eval_item_chunk=cfg.eval.get("item_chunk"),
    )
    module.evaluator.setup(split)  # training popularity, for arp@K, aplt@K and novelty@K
    return datamodule, module


def _report_loaded(cfg: DictConfig, loaded: list[dict]) -> None:
    """Record and print what ``init_from`` loaded (``loaded_components.json``)."""
    if loaded and cfg.get("paths") is not None and cfg.paths.get("output_dir") and is_rank_zero():
        write_json_atomic(Path(cfg.paths.output_dir) / "loaded_components.json", {"loaded": loaded})
        for record in loaded:
            print(f"init_from: loaded {record['tensors']} tensors ({record['parameters']} values) "
                  f"from {record['ckpt']} [{record['source']}] into {record['target']}")


def build_callbacks(cfg: DictConfig) -> list:
    return [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]


def build_loggers(cfg: DictConfig) -> list:
    """The configured Lightning loggers; a W&B run gets the resolved config at once."""
    loggers = [lg for lg in (instantiate(c) for c in (cfg.get("logger") or {}).values()) if lg is not None]
    for lg in wandb_runs(loggers):
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return loggers


def wandb_runs(loggers: list) -> list:
    return [lg for lg in loggers if type(lg).__name__ == "WandbLogger"]


def check_accelerator(accelerator: str) -> None:
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                "trainer=gpu needs a CUDA device, but torch sees none (a CPU build of torch, or no GPU); "
                "use trainer=cpu or install a CUDA build (make install TORCH_SPEC=torch)"
            )


def check_strategy(trainer: DictConfig, callbacks: DictConfig | None = None) -> None:
    """Refuse what DDP cannot do, before anything runs:

    * Lightning's DDP launcher in a sweep (``-m``): it starts the other processes by
      running the command line again, which under ``-m`` would start the whole sweep again
      in each of them;
    * the freeze curriculum (``callbacks=[...,freeze_curriculum]``): DDP synchronizes the
      gradients of the parameters that are trainable when it wraps the model, so the
      parameters the curriculum unfreezes later would train apart in each process.
    """
    strategy = trainer.get("strategy")
    ddp = (isinstance(strategy, str) and strategy.startswith("ddp")) or (
        isinstance(strategy, DictConfig) and str(strategy.get("_target_", "")).endswith(".DDPStrategy"))
    relaunches = (strategy == "ddp") if isinstance(strategy, str) else (
        ddp and strategy.get("start_method", "popen") == "popen")
    freezing = [name for name, c in (callbacks or {}).items()
                if str((c or {}).get("_target_", "")).endswith(".FreezeCurriculum")]
    if ddp and freezing:
        raise ConfigError(
            f"callbacks {', '.join(freezing)} unfreezes parameters during training, but DDP only synchronizes the "
            f"gradients of parameters trainable when it starts; train it on one device (trainer=cpu or trainer=gpu)"
        )
    try:
        multirun = getattr(HydraConfig.get().mode, "name", None) == "MULTIRUN"
    except ValueError:  # no Hydra context (plain API use)
        multirun = False
    if relaunches and multirun:
        raise ConfigError(
            "trainer=ddp starts its processes by running the command line again, which a sweep (-m) cannot do; "
            "run each configuration as its own command, or sweep with trainer=cpu or trainer=gpu"
        )


def choice(group: str) -> str | None:
    """The option picked for a config group (e.g. 'nss' for loss=nss), when known."""
    try:
        return HydraConfig.get().runtime.choices.get(group)
    except ValueError:  # no Hydra context (plain API use)
        return None
