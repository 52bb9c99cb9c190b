"""Sweeps through Hydra's launcher plugins (issue 17, item 2; README "Scaling out").

One 3-job loss sweep on the synthetic data, ``loss=ce,bpr,ssm sampler=full`` (ssm's logQ
correction is refused with full negatives: job 2 fails, deterministically), through
``hydra/launcher=joblib`` with 2 workers, ``submitit_local`` and ``ray`` on a local cluster
it starts. In each, the jobs run in other processes, job 2 leaves ``failed.json``, jobs 0
and 1 ``metrics.json``, in the folders the basic launcher writes (``<n>_<overrides>``), and
``python -m recsys.report`` reads the sweep. Also: ``ray_cluster`` joins the cluster of a
running reward service (``python -m recsys.serve``), and ``slurm``'s settings reach sbatch
(a stand-in ``sbatch`` that keeps its script and refuses the job: no SLURM here).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import reward_service
from recsys.config import short_dirname
from recsys.report import main as report_main

REPO = Path(__file__).resolve().parents[2]
LOSSES = ("ce", "bpr", "ssm")  # ssm refuses sampler=full (no log-probabilities for logQ)
SWEEP = [
    "model=mf", f"loss={','.join(LOSSES)}", "sampler=full", "data.dataset.n_users=100", "data.dataset.n_items=60",
    "trainer.max_epochs=1", "callbacks=none", "logger=none", "task_name=launch",
]
REFUSED = "needs a sampler that exposes log-probabilities"
# name -> (plugin module, launcher overrides, launcher class, a line of the plugin's log)
LAUNCHERS = {
    "joblib": ("hydra_joblib_launcher", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], "JoblibLauncher",
               "Joblib.Parallel(n_jobs=2,"),
    "submitit_local": ("hydra_submitit_launcher", ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"],
                       "LocalLauncher", "Submitit 'local' sweep output dir"),
    "ray": ("hydra_ray_launcher", ["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2",
            "+hydra.launcher.ray.init.include_dashboard=false"], "RayLauncher", "Ray Launcher is launching 3 jobs"),
}


def child_env(**extra: str) -> dict[str, str]:
    """This checkout first on the path of every process a launcher starts (the venv may hold
    an editable install of another checkout), one thread each, no W&B."""
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **extra)
    return env


def run_sweep(log_dir: Path, launcher: list[str], env: dict[str, str] | None = None) -> tuple[Path, str]:
    """``python -m recsys.run -m <launcher> <SWEEP>``; returns the sweep folder and the output."""
    cmd = [sys.executable, "-m", "recsys.run", "-m", *launcher, *SWEEP, f"paths.log_dir={log_dir}"]
    result = subprocess.run(cmd, cwd=REPO, env=env or child_env(), capture_output=True, text=True, timeout=420)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    (sweep,) = (log_dir / "launch" / "multiruns").iterdir()
    return sweep, output


def check_jobs(sweep: Path, launcher_class: str) -> None:
    """Jobs 0 and 1 finished, job 2 failed, in the basic launcher's folders."""
    jobs = sorted((p for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name.split("_")[0]))
    assert [p.name.split("_")[0] for p in jobs] == ["0", "1", "2"], [p.name for p in jobs]
    for num, (job, loss) in enumerate(zip(jobs, LOSSES)):
        hydra_cfg = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert hydra_cfg["launcher"]["_target_"].endswith(launcher_class)
        assert hydra_cfg["mode"] == "MULTIRUN" and hydra_cfg["job"]["num"] == num
        assert job.name == f"{num}_{short_dirname(hydra_cfg['job']['override_dirname'])}"
        assert f"__loss-{loss}__" in job.name and "launcher" not in job.name
        assert f"loss={loss}" in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
    for job in jobs[:2]:
        assert not (job / "failed.json").exists(), (job / "failed.json").read_text()
        assert "test/ndcg@10" in json.loads((job / "metrics.json").read_text())
    assert not (jobs[2] / "metrics.json").exists()
    assert REFUSED in json.loads((jobs[2] / "failed.json").read_text())["error"]


def check_report(sweep: Path, out: Path, capsys) -> None:
    """``python -m recsys.report <sweep> --out <out>`` lists the done and the failed jobs."""
    report_main([str(sweep), "--out", str(out)])
    assert f"written: {out}" in capsys.readouterr().out
    text = (out / "report.md").read_text()
    assert "3 jobs: 2 done, 1 failed, 0 unfinished" in text
    failed_section = text.split("## Failed jobs", 1)[1]
    assert "__loss-ssm__" in failed_section and REFUSED in failed_section
    table = pd.read_csv(out / "report.csv").set_index("variant")
    assert table.loc[["loss=ce", "loss=bpr"], "done"].tolist() == [1, 1]
    assert (table.loc["loss=ssm", "done"], table.loc["loss=ssm", "failed"]) == (0, 1)
    assert pd.read_csv(out / "jobs.csv")["status"].tolist() == ["done", "done", "failed"]


# joblib stays in the default suite (about 20-50 s); submitit_local and Ray start more
# processes and run in `make test-slow`
@pytest.fixture(scope="module", params=["joblib", pytest.param("submitit_local", marks=pytest.mark.slow),
                                        pytest.param("ray", marks=pytest.mark.slow)])
def swept(request, tmp_path_factory) -> tuple[str, Path, str]:
    name = request.param
    module, launcher, _, _ = LAUNCHERS[name]
    pytest.importorskip(f"hydra_plugins.{module}", reason=f"the {module} plugin is not installed (extra `cluster`)")
    sweep, output = run_sweep(tmp_path_factory.mktemp(name), launcher)
    return name, sweep, output


def test_a_failing_job_is_recorded_and_the_others_finish(swept):
    name, sweep, output = swept
    check_jobs(sweep, LAUNCHERS[name][2])
    assert LAUNCHERS[name][3] in output  # the plugin launched the jobs
    # the job's `error: job N failed` line: joblib's workers write to this terminal, submitit
    # jobs to their own log in the sweep folder (Ray forwards it asynchronously: not checked)
    if name == "joblib":
        assert f"error: job 2 failed: loss=ssm with logq_lambda != 0 {REFUSED}" in output
    if name == "submitit_local":
        logs = [p.read_text() for p in (sweep / ".submitit").glob("*/*_log.err")]
        assert len(logs) == 3 and sum("error: job 2 failed:" in text for text in logs) == 1


def test_the_report_reads_the_sweep(swept, tmp_path, capsys):
    _, sweep, _ = swept
    check_report(sweep, tmp_path / "report", capsys)


@pytest.mark.slow
def test_ray_cluster_joins_the_reward_services_cluster(tmp_path, capsys):
    """``hydra/launcher=ray_cluster`` with the address ``python -m recsys.serve`` printed: the
    sweep's jobs run on the cluster that serves the reward actor."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="hydra-ray-launcher is not installed")
    args = ["data=[synthetic]", "encoder=hashing", "namespace=launch-test", f"cache_dir={tmp_path / 'cache'}",
            "local_cpus=3", f"hydra.run.dir={tmp_path / 'serve'}"]
    with reward_service(args, child_env(), r"RetrievalService ready: .* at (\S+), serving synthetic") as (address, env):
        sweep, output = run_sweep(
            tmp_path / "logs", ["hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={address}"], env
        )
        assert "Connecting to existing Ray cluster" in output, output[-3000:]
        check_jobs(sweep, "RayLauncher")
        check_report(sweep, tmp_path / "report", capsys)


def test_slurm_settings_reach_sbatch(tmp_path):
    """``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml) through the real plugin and
    submitit, up to sbatch: a stand-in ``sbatch`` keeps the script it is given and refuses."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher is not installed")
    bin_dir, script = tmp_path / "bin", tmp_path / "submitted.sh"
    bin_dir.mkdir()
    fakes = {"srun": "exit 0", "sbatch": f'cp "$1" {script}\necho "sbatch: error: a stand-in" >&2\nexit 1'}
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(stat.S_IRWXU)
    env = child_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "recsys.run", "-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
           "hydra.launcher.timeout_min=90", "hydra.launcher.setup=['module load cuda']", "trainer=gpu", *SWEEP,
           f"paths.log_dir={tmp_path / 'logs'}"]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "a stand-in" in result.stdout + result.stderr
    text = script.read_text()
    for flag in ("--partition=gpu", "--time=90", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=32GB",
                 "--nodes=1", "--ntasks-per-node=1", "--array=0-2%3"):
        assert f"#SBATCH {flag}\n" in text, text
    assert "\nmodule load cuda\n" in text
    (sweep,) = (tmp_path / "logs" / "launch" / "multiruns").iterdir()
    assert f"#SBATCH --output={sweep}/.submitit/%A_%a/%A_%a_0_log.out\n" in text  # job logs in the sweep folder
    assert f"{sys.executable} -u -m submitit.core._submit {sweep}/.submitit/%j\n" in text


def test_a_launcher_whose_plugin_is_missing_is_one_line(monkeypatch):
    import importlib.util

    from recsys.config import check_choices
    from recsys.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if "ray_launcher" in name else real(name, *a))
    with pytest.raises(ConfigError, match=r"hydra/launcher=ray_cluster needs the hydra-ray-launcher plugin, which is "
                                          r"not installed: pip install -e '.\[cluster\]'"):
        check_choices(["hydra/launcher=ray_cluster", "loss=ce,bpr"])
    check_choices(["hydra/launcher=basic", "hydra/launcher=my_own"])  # other names: Hydra answers
