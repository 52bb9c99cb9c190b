"""``python -m recsys.run``: the command-line entry point.

Composes the config (Hydra), hands it to :func:`recsys.pipeline.train`, and turns
user errors (also a value a constructor refused) into one line on stderr and exit status
2; a finished run's last line says where its results are. Each run writes into its Hydra
output directory: ``config_resolved.yaml``, ``epochs.csv`` (one row per epoch),
``csv/metrics.csv`` (per step), ``checkpoints/best.ckpt``, ``test_per_user.csv`` and,
only once everything has finished, ``metrics.json`` (``failed.json`` instead when it
fails).
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from recsys.config import check_command_line
from recsys.errors import RecsysError
from recsys.outputs import one_line, unwrap, write_failure
from recsys.pipeline import train
from recsys.wiring import build

__all__ = ["build", "cli", "main", "train"]


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the monitored validation metric (for Optuna sweeps)."""
    try:
        metrics = train(cfg)
    except Exception as exc:
        write_failure(cfg, exc)
        if HydraConfig.get().mode.name == "MULTIRUN":
            # a sweep goes on: this job is recorded as failed (failed.json, read by
            # recsys.report) and returns NaN, which the Optuna sweeper counts as a failed trial
            print(f"error: job {HydraConfig.get().job.num} failed: {one_line(exc)}", file=sys.stderr)
            return float("nan")
        if not isinstance(unwrap(exc), RecsysError):  # a bug, not a bad config: the traceback
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)  # also when a constructor refused a value
        sys.exit(2)
    return metrics.get(cfg.eval.monitor)


def cli() -> None:
    check_command_line(sys.argv[1:])
    main()


if __name__ == "__main__":
    cli()
