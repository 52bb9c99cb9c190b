"""``trainer=ddp`` with two CPU processes (gloo), as ``python -m recsys.run`` runs it.

Lightning's launcher starts the second process by running the command line again with
the first process's ``hydra.run.dir``; these tests give the run folder explicitly, as a
user would, so both processes share it. 150 users in evaluation batches of 32 make 5
batches, so the distributed sampler pads the second process's share with a repeated batch.
Both tests are ``slow`` (``make test-slow``); ``tests/unit/test_distributed.py`` checks
the sharding and the evaluator's merge without processes in the default suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SMALL = [
    "model=mf",
    "model.embedding_dim=16",
    "data.dataset.n_users=150",
    "data.dataset.n_items=80",
    "data.eval_batch_size=32",  # 5 batches over 2 processes: one padded batch
    "data.sampled_eval=[20]",
    "~callbacks.progress_bar",
]


def run(args: list[str], run_dir: Path, tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m recsys.run`` into ``run_dir`` (stray run folders would land in ``tmp_path``)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "recsys.run", *SMALL, *args, f"paths.log_dir={tmp_path}", f"hydra.run.dir={run_dir}"]
    # the children share stdout: run() returns when every process has closed it
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def written_once(tmp_path: Path, result: subprocess.CompletedProcess, *run_dirs: Path) -> None:
    """One metrics.json per run folder in all of ``tmp_path`` (no other run folder), no
    failure record, and the last run's results printed by one process only."""
    assert sorted(tmp_path.rglob("metrics.json")) == sorted(d / "metrics.json" for d in run_dirs)
    assert not list(tmp_path.rglob("failed.json"))
    assert result.stdout.count("results: ") == 1
    assert result.stdout.count("final metrics") == 1


@pytest.mark.slow  # ~65 s on the 2-core machine: two commands, the second starting two processes
def test_two_process_evaluation_of_a_checkpoint_equals_one_process(tmp_path):
    """A checkpoint trained in one process, evaluated by two (``fit=false``): every key of
    metrics.json (full-ranking, sampled, coverage, Gini, popularity bias, collapse
    diagnostics) and every per-user value equal the single process's exactly."""
    single = tmp_path / "single"
    run(["trainer.max_epochs=1", "loss=bpr"], single, tmp_path)
    ddp = tmp_path / "ddp"
    ckpt = single / "checkpoints" / "best.ckpt"
    result = run(["trainer=ddp", "trainer.max_epochs=1", "loss=bpr", "fit=false", f"ckpt_path={ckpt}"], ddp, tmp_path)
    written_once(tmp_path, result, single, ddp)
    want = json.loads((single / "metrics.json").read_text())
    got = json.loads((ddp / "metrics.json").read_text())
    assert {"val/ndcg@10", "test/coverage@20", "test/gini@10", "test/novelty@10", "test_sampled20/ndcg@10",
            "collapse/user_effective_rank"} <= want.keys()
    assert got == want  # exactly
    by_user = [pd.read_csv(d / "test_per_user.csv").sort_values("user", ignore_index=True) for d in (single, ddp)]
    assert len(by_user[1]) == 150 and by_user[1]["user"].is_unique  # every user once, the padding dropped
    pd.testing.assert_frame_equal(by_user[1], by_user[0], check_exact=True)


@pytest.mark.slow  # ~50 s on the 2-core machine
def test_two_process_training_run_writes_its_results_once(tmp_path):
    """Two processes train 2 epochs on the synthetic data, each drawing its own negatives;
    rank 0 alone writes the run folder's files."""
    out = tmp_path / "run"
    result = run(["trainer=ddp", "trainer.max_epochs=2", "loss=bpr"], out, tmp_path)
    written_once(tmp_path, result, out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["test/hr@10"] > 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert list(pd.read_csv(out / "epochs.csv")["epoch"]) == [0, 1]
    assert len(pd.read_csv(out / "test_per_user.csv")) == 150
    assert (out / "config_resolved.yaml").is_file() and not (out / "loaded_components.json").exists()
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    states = [s["generators"]["cpu"] for s in ckpt["sampler_by_rank"]]  # each process's own stream, saved
    assert len(states) == 2 and not torch.equal(states[0], states[1])
    assert torch.equal(ckpt["sampler"]["generators"]["cpu"], states[0])
    assert len(ckpt["RecDataModule"]["view_by_rank"]) == 2
