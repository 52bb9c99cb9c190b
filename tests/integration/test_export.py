"""``python -m recsys.export``: a trained run exported for serving (issue 17, item 5).

Two tiny runs are trained once (MF and SASRec on small synthetic data, one short epoch);
their exports must reproduce the checkpoint's scores from the files alone, and every bad
input must stop the export with one line and nothing written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from recsys.config import CONF_DIR, validate
from recsys.errors import ConfigError
from recsys.export.exporter import ExportCheckError, export
from recsys.outputs import unwrap
from recsys.pipeline import train
from recsys.wiring import build
from conftest import make_cfg

REPO = Path(__file__).resolve().parents[2]
SMALL = ["data.dataset.n_users=200", "data.dataset.n_items=150", "~callbacks.progress_bar",
         "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=1"]
MODELS = {
    "mf": ["model=mf", "model.embedding_dim=16"],
    "sasrec": ["model=sasrec", "model.embedding_dim=16", "model.max_len=20", "model.num_blocks=1"],
}
QUICK = ["measure.single_repeats=3", "measure.batch_repeats=2", "measure.batch_size=64"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """``{model: run folder}``: each trained one short epoch, as ``python -m recsys.run`` would."""
    root = tmp_path_factory.mktemp("runs")
    folders = {}
    for name, overrides in MODELS.items():
        folder = root / name
        train(make_cfg([*overrides, *SMALL], folder, keep_callbacks=True))
        assert (folder / "checkpoints" / "best.ckpt").is_file() and (folder / "config_resolved.yaml").is_file()
        folders[name] = folder
    GlobalHydra.instance().clear()
    return folders


def export_cfg(overrides: list[str]):
    """``conf/export/export.yaml`` composed as ``python -m recsys.export`` would."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR / "export"), version_base="1.3"):
        cfg = compose("export", overrides=[*QUICK, *overrides])
    GlobalHydra.instance().clear()
    validate(cfg)
    return cfg


def run_export(run: Path, out: Path, *overrides: str):
    return export(export_cfg([f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", f"out_dir={out}", *overrides]))


def checkpoint_scores(run: Path) -> tuple[dict, torch.Tensor]:
    """The first test batch's model inputs and the scores the checkpoint's module gives
    them, rebuilt here independently of the export."""
    cfg = OmegaConf.load(run / "config_resolved.yaml")
    datamodule, module = build(cfg)
    module.load_state_dict(torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)["state_dict"])
    module.eval()
    batch = next(iter(datamodule.test_dataloader()))
    with torch.no_grad():
        scores = module.model.score(module.model.user_queries(batch).float(), module.model.item_embeddings().float())
    return batch, scores


def scores_in_a_fresh_process(out: Path, inputs: list[torch.Tensor], tmp_path: Path) -> tuple[torch.Tensor, list[int]]:
    """What a server that knows nothing of recsys computes: torch.jit.load, numpy, faiss."""
    torch.save(inputs, tmp_path / "inputs.pt")
    script = (
        "import sys, numpy as np, torch, faiss\n"
        "out, tmp = sys.argv[1], sys.argv[2]\n"
        "encoder = torch.jit.load(out + '/query_encoder.pt')\n"
        "items = torch.from_numpy(np.load(out + '/items.npy'))\n"
        "torch.save(encoder(*torch.load(tmp + '/inputs.pt')) @ items.T, tmp + '/scores.pt')\n"
        "index = faiss.read_index(out + '/index_flat.faiss')\n"
        "assert not [m for m in sys.modules if m.startswith('recsys')]\n"
        "print(index.ntotal, index.d)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(out), str(tmp_path)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=""))
    assert result.returncode == 0, result.stderr[-2000:]
    return torch.load(tmp_path / "scores.pt"), [int(x) for x in result.stdout.split()]


@pytest.mark.slow
@pytest.mark.parametrize("model, keys", [("mf", ["user"]), ("sasrec", ["input"])])
def test_an_export_reproduces_the_checkpoint_scores(runs, tmp_path, model, keys):
    out, manifest = run_export(runs[model], tmp_path / "export")
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["check"]["passed"] and on_disk["check"]["scores"]["max_abs_diff"] <= 1e-5
    assert on_disk["check"]["exact_topk"]["beyond_ties"] == 0
    assert [i["name"] for i in on_disk["encoder"]["inputs"]] == keys
    items, ids = np.load(out / "items.npy"), np.load(out / "item_ids.npy")
    n_items, dim = 150, 16
    assert items.dtype == np.float32 and items.shape == (n_items, dim) and on_disk["items"]["shape"] == [n_items, dim]
    assert ids.dtype == np.int64 and (ids == np.arange(n_items)).all()
    batch, reference = checkpoint_scores(runs[model])
    scores, (ntotal, d) = scores_in_a_fresh_process(out, [batch[k] for k in keys], tmp_path)
    assert scores.shape == reference.shape and (scores - reference).abs().max() <= 1e-5
    assert (ntotal, d) == (n_items, dim)
    recall = on_disk["measurement"]["recall"]
    assert recall["index"] == "flat" and recall["value"] == 1.0 and recall["k"] == 100
    assert set(on_disk["measurement"]["latency_ms"]) == {"encoder", "flat"}
    assert on_disk["measurement"]["queries"] == reference.shape[0]  # every test user (fewer than a batch here)
    assert sorted(p.name for p in out.iterdir()) == sorted([*on_disk["files"], "manifest.json"])
    assert not list(tmp_path.glob(".export.*"))  # no temporary folder left


@pytest.mark.slow
@pytest.mark.parametrize("index, settings", [("ivf", {"nlist": 3, "nprobe": 1}), ("hnsw", {"M": 8, "efSearch": 16})])
def test_approximate_indexes_report_their_recall(runs, tmp_path, index, settings):
    options = [f"index.{k}={v}" for k, v in settings.items()]
    out, manifest = run_export(runs["mf"], tmp_path / "export", f"index={index}", *options)
    import faiss

    built = faiss.read_index(str(out / f"index_{index}.faiss"))
    assert built.ntotal == 150 and built.d == 16 and (out / "index_flat.faiss").is_file()
    record = manifest["indexes"][index]
    assert record["file"] == f"index_{index}.faiss" and all(record[k] == v for k, v in settings.items())
    recall = manifest["measurement"]["recall"]
    assert recall["index"] == index and 0.0 <= recall["value"] <= 1.0
    assert set(manifest["measurement"]["latency_ms"]) == {"encoder", "flat", index}
    for ms in manifest["measurement"]["latency_ms"].values():
        assert ms["batch_1_ms_per_query"] > 0 and ms["batch_ms_per_batch"] > 0


@pytest.mark.slow
def test_a_new_export_replaces_an_earlier_one(runs, tmp_path):
    out, _ = run_export(runs["mf"], tmp_path / "export", "index=hnsw")
    out, manifest = run_export(runs["mf"], tmp_path / "export")
    assert manifest["served_index"] == "flat" and not (out / "index_hnsw.faiss").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


# ---------------------------------------------------------------- bad input: one line, nothing written
def one_line(exc_info) -> str:
    message = str(unwrap(exc_info.value))
    assert "\n" not in message, message
    return message


def cli(args: list[str]):
    return subprocess.run([sys.executable, "-m", "recsys.export", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def test_cli_refuses_a_missing_checkpoint_and_an_unknown_index(tmp_path):
    missing = tmp_path / "run" / "checkpoints" / "best.ckpt"
    result = cli([f"ckpt_path={missing}"])
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("error: checkpoint") and str(missing) in result.stderr
    result = cli(["index=annoy", f"ckpt_path={missing}"])
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.strip() == "error: unknown index 'annoy': available indexes are flat, hnsw, ivf (conf/export/index/)"
    assert not (tmp_path / "run").exists()


def test_no_checkpoint_given():
    with pytest.raises(ConfigError, match="ckpt_path=") as info:
        export(export_cfg([]))
    one_line(info)


def test_a_folder_without_its_run_config(tmp_path):
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"not used")
    with pytest.raises(ConfigError, match="has no config_resolved.yaml") as info:
        export(export_cfg([f"ckpt_path={ckpt}"]))
    one_line(info)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoints"]


@pytest.mark.parametrize("model, name", [("neumf", "NeuMF"), ("wide_deep", "WideDeep"), ("pop", "Pop")])
def test_a_model_without_dot_product_scores_is_refused(tmp_path, model, name):
    """Refused from the run's config, before the data or the checkpoint is read."""
    run = tmp_path / "run"
    config = OmegaConf.to_container(make_cfg([f"model={model}"], run), resolve=True)
    config.pop("hydra")
    run.mkdir(parents=True, exist_ok=True)
    (run / "config_resolved.yaml").write_text(OmegaConf.to_yaml(config))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "best.ckpt").write_bytes(b"never read")
    with pytest.raises(ConfigError, match="overrides score") as info:
        export(export_cfg([f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}"]))
    assert one_line(info).startswith(f"model {name} scores a user and an item with its own function")
    assert not (run / "export").exists()


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["index=ivf", "index.nlist=1000"], "more lists than there are items"),
        (["index=ivf", "index.nprobe=0"], "index.nprobe must be an integer >= 1"),
        (["index=hnsw", "index.M=1"], "index.M must be an integer >= 2"),
    ],
)
@pytest.mark.slow
def test_index_settings_out_of_range(runs, tmp_path, overrides, match):
    with pytest.raises(Exception) as info:
        run_export(runs["mf"], tmp_path / "export", *overrides)
    assert isinstance(unwrap(info.value), ConfigError) and match in one_line(info)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_an_occupied_out_dir_is_refused(runs, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="is not an export") as info:
        run_export(runs["mf"], tmp_path / "mine")
    one_line(info)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


@pytest.mark.slow
def test_a_failed_check_writes_nothing(runs, tmp_path):
    with pytest.raises(ExportCheckError, match="does not reproduce the checkpoint") as info:
        run_export(runs["mf"], tmp_path / "export", "check.atol=-1")  # no difference is below -1
    one_line(info)
    assert not list(tmp_path.iterdir())  # neither the export nor its temporary folder


@pytest.mark.slow
def test_a_failure_midway_leaves_nothing(runs, tmp_path, monkeypatch):
    import recsys.export.exporter as exporter

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(exporter, "measure", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        run_export(runs["mf"], tmp_path / "export")
    assert not list(tmp_path.iterdir())
