"""Shared fixtures: the benchmark data folder and composed run configs."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def shared_data_dir() -> Path:
    env = os.environ.get("RECSYS_DATA_DIR")
    return Path(env).expanduser() if env else REPO.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder holding the benchmark copies: ``RECSYS_DATA_DIR``, else ``../shared/datasets``."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"no dataset copies at {path} (set RECSYS_DATA_DIR to the folder holding ml-1m/ etc.)")
    return path


def make_cfg(
    overrides: list[str], output_dir: Path, data_dir: Path | None = None, keep_callbacks: bool = False
) -> DictConfig:
    """Compose ``conf/train.yaml`` as ``python -m recsys.run`` would, for a quick CPU run
    writing into ``output_dir``; ``callbacks=none`` unless ``keep_callbacks`` (an
    experiment's own callbacks, e.g. a curriculum, need it)."""
    GlobalHydra.instance().clear()
    base = [
        "trainer.max_epochs=1",
        "logger=none",
        *([] if keep_callbacks else ["callbacks=none"]),
        f"paths.log_dir={output_dir}",
        f"paths.data_dir={data_dir or shared_data_dir()}",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=base + overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def cfg_factory(tmp_path):
    """``cfg_factory(["model=mf", ...])`` -> a composed config writing into ``tmp_path``."""

    def factory(overrides: list[str], data_dir: Path | None = None, keep_callbacks: bool = False) -> DictConfig:
        return make_cfg(overrides, tmp_path, data_dir, keep_callbacks)

    yield factory
    GlobalHydra.instance().clear()


def cli_args(args: list[str], tmp_path: Path) -> list[str]:
    """The command line after ``python -m recsys.run``, writing its runs under ``tmp_path``."""
    flags = [a for a in args if a.startswith("-")]  # -m: Hydra's flags come before the overrides
    return [*flags, f"paths.log_dir={tmp_path}", *(a for a in args if a not in flags)]


@pytest.fixture
def run_cli_here(monkeypatch, capsys):
    """``run_cli`` in this process: the same ``recsys.run.cli()`` that ``python -m recsys.run``
    calls, with its exit status and captured output, without the ~5 s a fresh interpreter
    spends importing Lightning. Hydra's global state (cleared) and the root logger's handlers
    (which Hydra's job logging replaces) are restored afterwards."""

    def run(args: list[str], tmp_path: Path, data_dir: Path | None = None) -> subprocess.CompletedProcess:
        if data_dir is not None:
            monkeypatch.setenv("RECSYS_DATA_DIR", str(data_dir))
        argv = ["recsys.run", *cli_args(args, tmp_path)]
        monkeypatch.setattr(sys, "argv", argv)
        # conf/ is found beside recsys/run.py as under `python -m` (imported, Hydra would look
        # for a `conf` package instead)
        monkeypatch.setenv("HYDRA_MAIN_MODULE", "__main__")
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        capsys.readouterr()
        GlobalHydra.instance().clear()
        try:
            from recsys.run import cli

            cli()
            returncode = 0
        except SystemExit as stop:
            returncode = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        finally:
            GlobalHydra.instance().clear()
            HydraConfig.instance().cfg = None  # the run's Hydra context ends with it
            for handler in set(root.handlers) - set(handlers):
                handler.close()  # the run's own, e.g. its file handler (run.log)
            root.handlers[:] = handlers
            root.setLevel(level)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(argv, returncode, out.out, out.err)

    return run


def train_and_report_moved(module, datamodule, steps: int = 3) -> set[str]:
    """``steps`` optimizer steps of the module's own objective (each value finite); the
    top-level names of the model's parameters and buffers that changed."""
    import torch

    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    optimizer = module.configure_optimizers()
    module.train()
    for _, batch in zip(range(steps), datamodule.train_dataloader()):
        value = module.objective(batch).total
        assert torch.isfinite(value)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    return {k.split(".")[0] for k, v in module.model.state_dict().items() if not torch.equal(v, before[k])}


@contextmanager
def reward_service(args: list[str], env: dict[str, str], ready: str, timeout: float = 120.0):
    """``python -m recsys.serve <args>`` in a subprocess until it prints a line matching
    ``ready`` (a regex whose group 1 is the cluster address); yields ``(address, env)``,
    ``env`` with ``RAY_AUTH_MODE=token`` when the service asks for it. The service is
    stopped with SIGTERM on exit and must exit with status 0."""
    server = subprocess.Popen([sys.executable, "-m", "recsys.serve", *args], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        address, deadline = None, time.time() + timeout
        while address is None and time.time() < deadline:
            line = server.stdout.readline()
            if not line and server.poll() is not None:
                break
            lines.append(line)
            match = re.search(ready, line)
            address = match.group(1) if match else None
        assert address, "the reward service never said it was ready:\n" + "".join(lines)
        lines.append(server.stdout.readline())  # the authentication line, when there is one
        if "RAY_AUTH_MODE=token" in lines[-1]:
            env = {**env, "RAY_AUTH_MODE": "token"}
        yield address, env
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    assert server.returncode == 0, "".join(lines) + server.stdout.read()
