"""``experiments/neumf_pretrain.sh``: the paper's pretraining as one command (GMF run, MLP
run, NeuMF started from both through ``init_from``), on the small synthetic data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "experiments" / "neumf_pretrain.sh"
SMALL = ["data.dataset.n_users=120", "data.dataset.n_items=60", "data.dataset.n_clusters=4", "model.gmf_dim=4",
         "model.mlp_layers=[8,4]", "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "logger=none"]


def branch_state(ckpt: Path, prefix: str) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def test_pretraining_recipe_starts_neumf_from_the_gmf_and_mlp_runs(tmp_path):
    out = tmp_path / "pre"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", str(SCRIPT), str(out), *SMALL], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads((out / "neumf" / "loaded_components.json").read_text())["loaded"]
    assert [(r["source"], r["target"]) for r in loaded] == [("model.gmf", "gmf"), ("model.mlp", "mlp")]
    for name in ("gmf", "mlp"):  # every tensor of each pretrained branch was copied
        pretrained = branch_state(out / name / "checkpoints" / "best.ckpt", f"model.{name}.")
        assert loaded[("gmf", "mlp").index(name)]["tensors"] == len(pretrained) > 0
    assert json.loads((out / "neumf" / "metrics.json").read_text())["test/ndcg@10"] >= 0
