"""``experiments/comparison.sh``: run folders named by variant and seed, seeds in order,
JOBS at a time, failures reported and finished runs skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "experiments" / "comparison.sh"


def compare(out: Path, seeds: str, *variants: str, jobs: int = 2) -> list[str]:
    env = dict(os.environ, PYTHON=sys.executable, JOBS=str(jobs), OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", str(SCRIPT), str(out), seeds, "model=pop logger=none", *variants],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_comparison_runs_variants_seed_by_seed_reports_failures_and_skips_finished_runs(tmp_path):
    out = tmp_path / "cmp"
    variants = ("model.break_ties=false", "model.no_such_key=1")
    lines = compare(out, "1 2", *variants)
    runs = ["0_model.break_ties_false__seed-1", "1_model.no_such_key_1__seed-1",
            "0_model.break_ties_false__seed-2", "1_model.no_such_key_1__seed-2"]
    # seeds in order: both variants of seed 1 are started before any run of seed 2
    assert [line.split("/")[-1] for line in lines if line.startswith("start:")] == runs
    for name in runs[0::2]:
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert metrics["test/ndcg@10"] >= 0
        assert f"seed: {name[-1]}" in (out / name / "config_resolved.yaml").read_text()
    for name in runs[1::2]:  # a failing run is reported with its log, and the others still run
        assert f"failed:  {out / name} (see {out / name}.log)" in lines
        assert "model.no_such_key is not in the config" in (out / f"{name}.log").read_text()
    again = compare(out, "1 2", *variants)
    assert {f"done:    {out / name}" for name in runs[0::2]} <= set(again)  # finished runs are not run again
    assert [line.split("/")[-1] for line in again if line.startswith("start:")] == runs[1::2]
