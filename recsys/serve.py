"""``python -m recsys.serve``: start the retrieval reward service as a named Ray actor.

    python -m recsys.serve data=[ml1m,beauty] encoder=minilm

loads the item texts of each dataset, starts (or joins, ``address=...``) a Ray cluster,
creates the actor ``RetrievalService`` in namespace ``rl4rec`` (both from the config),
waits until the item embeddings are ready, and prints how another process reaches it::

    ray.init(address="<gcs address>", namespace="rl4rec")
    service = ray.get_actor("RetrievalService", namespace="rl4rec")
    scores = ray.get(service.calculate_reward.remote(texts, dataset_name="ml1m", ...))

Unless ``detached=true`` the actor lives as long as this process: it keeps serving until
interrupted (Ctrl-C, SIGTERM). Bad input (an unknown dataset, one without item texts, an
unknown encoder) stops it with one line before Ray starts.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from recsys.config import CONF_DIR, check_command_line
from recsys.errors import ConfigError, RecsysError
from recsys.outputs import one_line, unwrap
from recsys.retrieval.data import load_texts
from recsys.retrieval.service import RetrievalService

READY = "RetrievalService ready"  # the first word of the line a client (or test) waits for


def dataset_names(value: Any) -> list[str]:
    """``data=ml1m`` or ``data=[ml1m,beauty]`` as a list of names."""
    names = [value] if isinstance(value, str) else list(value)
    if not names:
        raise ConfigError("no dataset to serve: give data=[ml1m] (names of conf/data/*.yaml)")
    return [str(n) for n in names]


def start(cfg: DictConfig) -> tuple[Any, dict[str, int], str]:
    """Load the texts, start the actor and wait until it is ready.

    Returns:
        ``(actor handle, dataset name -> number of items, GCS address)``.
    """
    names = dataset_names(cfg.data)
    if cfg.detached and cfg.address is None:
        raise ConfigError(
            "detached=true needs a Ray cluster that outlives this process: start one with "
            "`ray start --head` and pass address=auto"
        )
    texts = {name: load_texts(name, cfg.data_dir) for name in names}
    for item_texts in texts.values():  # shared texts tie, and ties rank pessimistically: they cap the reward
        print(item_texts.summary())
    encoder = instantiate(cfg.encoder)
    import ray

    if not ray.is_initialized():
        init = dict(namespace=cfg.namespace, include_dashboard=False, log_to_driver=True)
        if cfg.address is None:
            init["num_cpus"] = cfg.local_cpus
        ray.init(address=cfg.address, **init)
    options = dict(
        name=cfg.name, namespace=cfg.namespace, num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus,
        max_concurrency=cfg.max_concurrency,
    )
    if cfg.detached:
        options["lifetime"] = "detached"
    try:
        actor = ray.remote(RetrievalService).options(**options).remote(
            encoder, item_texts={name: t.texts() for name, t in texts.items()}, cache_dir=cfg.cache_dir
        )
    except ValueError as exc:  # the name is taken
        raise ConfigError(
            f"cannot create actor {cfg.name!r} in namespace {cfg.namespace!r}: {one_line(exc)}; "
            f"stop the running one or choose another name=..."
        ) from None
    sizes = ray.get(actor.datasets.remote())
    return actor, sizes, ray.get_runtime_context().gcs_address


def serve_forever() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


@hydra.main(version_base="1.3", config_path="../conf/serve", config_name="serve")
def main(cfg: DictConfig) -> None:
    try:
        actor, sizes, address = start(cfg)
    except Exception as exc:
        if not isinstance(unwrap(exc), RecsysError):
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(2)
    catalogue = ", ".join(f"{name} ({n:,} items)" for name, n in sizes.items())
    encoder = OmegaConf.select(cfg, "encoder._target_").rsplit(".", 1)[-1]
    print(f"{READY}: actor {cfg.name!r} in namespace {cfg.namespace!r} at {address}, serving {catalogue} with {encoder}")
    if os.environ.get("RAY_AUTH_MODE") == "token":  # Ray's default for a new local cluster
        print("  the cluster uses token authentication: a client needs the environment variable "
              "RAY_AUTH_MODE=token (the token is read from ~/.ray/auth_token)")
    print(f'  reach it: ray.init(address="{address}", namespace="{cfg.namespace}"); '
          f'service = ray.get_actor("{cfg.name}", namespace="{cfg.namespace}")', flush=True)
    if cfg.detached:
        print("  detached: it keeps running after this process exits; ray.kill(service) stops it")
        return
    print("  serving until interrupted (Ctrl-C)", flush=True)
    serve_forever()
    import ray

    ray.shutdown()


def cli() -> None:
    """Check the command line (one line each), then run :func:`main`."""
    check_command_line(sys.argv[1:], CONF_DIR / "serve", "serve")
    main()


if __name__ == "__main__":
    cli()
