"""logger=wandb never blocks or breaks a run: offline without a key, skipped if W&B fails."""

from __future__ import annotations

import pytest

from recsys.errors import ConfigError
from recsys.loggers import wandb_logger as wl
from recsys.loggers.wandb_offline import find_offline_runs, read_offline_run


def test_online_without_api_key_logs_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    with pytest.warns(UserWarning, match="offline instead"):
        logger = wl.wandb_logger(save_dir=str(tmp_path), mode="online", tags=["extra"])
    logger.log_metrics({"train/loss": 1.5}, step=0)
    wl.finish(logger, {"test/ndcg@10": 0.25})
    (run_dir,) = find_offline_runs(tmp_path)
    run = read_offline_run(run_dir)
    assert run.series("train/loss") == [1.5]
    assert run.summary["test/ndcg@10"] == 0.25 and "extra" in run.tags and run.exit_code == 0


def test_wandb_failing_to_start_is_a_warning_not_a_crash(tmp_path, monkeypatch):
    import pytorch_lightning.loggers as pll

    def boom(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(pll, "WandbLogger", boom)
    with pytest.warns(UserWarning, match="W&B could not start.*network unreachable"):
        assert wl.wandb_logger(save_dir=str(tmp_path)) is None


def test_bad_mode_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="logger.wandb.mode"):
        wl.wandb_logger(save_dir=str(tmp_path), mode="sometimes")


def test_an_empty_wandb_mode_variable_does_not_disable_logging(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "")  # made wandb.init fail with a validation error
    logger = wl.wandb_logger(save_dir=str(tmp_path))
    assert logger is not None
    wl.finish(logger, None)
    assert len(find_offline_runs(tmp_path)) == 1
