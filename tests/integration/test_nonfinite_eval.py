"""End to end: NaN or infinite evaluation scores stop a run with one line naming the stage,
the epoch and the number of users, and leave no ``metrics.json``."""

from __future__ import annotations

import json
import re

import pytest
import torch

from recsys.errors import TrainingError
from recsys.models.mf import MF
from recsys.module import RecModule
from recsys.run import train

FAST = ["+trainer.limit_train_batches=3", "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1"]
MESSAGE = r"scores are NaN or infinite for (\d+) of \1 users at epoch {epoch}, so no metrics are reported"


def nan_queries(self, inputs):
    """MF's evaluation queries made NaN; training (MF.encode) is untouched."""
    return torch.full((inputs["user"].numel(), self.user_emb.embedding_dim), float("nan"))  # [B, D]


def test_nan_validation_scores_fail_the_command_with_one_line(tmp_path, monkeypatch, run_cli_here):
    """The command line's path (``recsys.run.cli``): exit status 2, one ``error:`` line,
    failed.json, no metrics.json."""
    monkeypatch.setattr(MF, "user_queries", nan_queries)
    result = run_cli_here(["model=mf", "loss=bpr", "trainer.max_epochs=1", *FAST], tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors == result.stderr.strip().splitlines()[-1:]
    assert re.match("error: val " + MESSAGE.format(epoch=0), errors[0]), errors
    assert not list(tmp_path.glob("**/metrics.json"))
    (failed,) = tmp_path.glob("**/failed.json")
    assert "val scores are NaN or infinite" in json.loads(failed.read_text())["error"]


def test_nan_scores_in_the_sanity_check_stop_before_training(cfg_factory, tmp_path, monkeypatch):
    monkeypatch.setattr(MF, "user_queries", nan_queries)
    cfg = cfg_factory(["model=mf", "loss=bpr", "trainer.num_sanity_val_steps=1", *FAST])
    with pytest.raises(TrainingError, match="^val \\(sanity check\\) " + MESSAGE.format(epoch=0)) as info:
        train(cfg)
    assert "\n" not in str(info.value)
    assert not list(tmp_path.glob("**/metrics.json")) and not list(tmp_path.glob("**/*.ckpt"))


def test_nan_scores_at_test_time_leave_no_metrics(cfg_factory, tmp_path, monkeypatch):
    """Validation is fine; the model breaks when the test stage starts."""
    start = RecModule.on_test_epoch_start

    def break_then_start(self):
        with torch.no_grad():
            self.model.item_emb.weight[0] = float("inf")  # a candidate of every user but a few
        start(self)

    monkeypatch.setattr(RecModule, "on_test_epoch_start", break_then_start)
    with pytest.raises(TrainingError, match=r"^test scores are NaN or infinite for \d+ of \d+ users at epoch 1,") as info:
        train(cfg_factory(["model=mf", "loss=bpr", *FAST]))
    affected, evaluated = map(int, re.findall(r"(\d+) of (\d+) users", str(info.value))[0])
    assert 0.9 * evaluated < affected < evaluated  # users with item 0 excluded are not affected
    assert not list(tmp_path.glob("**/metrics.json"))
    assert list(tmp_path.glob("**/checkpoints/best.ckpt"))  # training and validation did finish
