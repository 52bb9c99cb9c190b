"""The fair loss comparison: the same tuning budget for every loss, then seeds, then the report.

For each loss in ``losses``:

1. **Tune**: an Optuna study (TPE) over the loss's own search space plus the shared one
   (:mod:`recsys.compare.space`), maximizing the best checkpoint's validation metric
   (``eval.monitor``, validation NDCG@10 by default). Every loss gets exactly ``trials``
   trials, each at the same ``trial_budget`` and with the same seed; a trial that fails is
   recorded (``failed.json``, as in a sweep) and counts against the budget.
2. **Retrain**: the best trial's settings, at the full ``final_budget``, once per seed;
   beside it, with ``untuned: true``, the loss's default settings at the same budget and
   seeds (what the untuned comparison would have reported).

Then ``python -m recsys.report`` over the final runs (paired tests between all of them) and
the protocol's own summary (:mod:`recsys.compare.summary`). Everything lives under
``out_dir``: ``tune/<loss>/<k>/`` (one run folder per trial, with its ``params.json`` and,
once finished, ``trial.json``), ``final/<n>_loss-<loss>__<tuned-t<k>|untuned>__seed-<s>/``.

Resumable: the same command continues where it stopped. Finished trials are not re-run
(their ``trial.json`` files are the record, and are fed back to the TPE sampler); a trial
cut short by a stopped process is re-run with the same settings and does not count; a final run with ``metrics.json`` is skipped and one
with ``checkpoints/last.ckpt`` resumes from it (exact resume). Raising ``trials`` or adding
seeds extends a finished protocol; if more trials change a loss's best trial, its
earlier tuned runs move to ``final_superseded/``.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from recsys.compare.space import Param, as_override, check_keys, loss_space, parse_space
from recsys.config import check_choices, validate
from recsys.errors import ConfigError
from recsys.outputs import one_line, write_failure, write_json_atomic

FIXED_KEYS = ("losses", "common", "trial_budget", "final_budget", "seed", "startup_trials", "shared_space", "metric")


@dataclass
class LossPlan:
    """What the protocol will do for one loss."""

    index: int
    loss: str
    space: list[Param]


def overrides_of(value) -> list[str]:
    """A list of overrides given as a list, or as one string of space-separated ones
    (``common="data=ml1m model=sasrec"``: Hydra's override syntax cannot put ``=`` inside
    an unquoted list item)."""
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value]


def compose_run(overrides: list[str]) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides``, as ``python -m recsys.run`` would."""
    from hydra import compose

    return compose("train", overrides=list(overrides))


def plan(cfg: DictConfig) -> list[LossPlan]:
    """Check the whole protocol before anything runs: loss names, every loss's config with
    the common overrides, each search space's form and keys. Returns one plan per loss."""
    losses = [str(x) for x in cfg.losses]
    if not losses or len(set(losses)) != len(losses):
        raise ConfigError(f"losses must be a non-empty list of distinct losses, got {losses}")
    check_choices([f"loss={name}" for name in losses])
    stray = [str(x) for x in cfg.get("only") or [] if str(x) not in losses]
    if stray:
        raise ConfigError(f"only names losses that are not in losses: {', '.join(stray)}; only picks a subset of losses")
    for key in ("trials", "startup_trials"):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < (1 if key == "trials" else 0):
            raise ConfigError(f"{key} must be an integer >= {1 if key == 'trials' else 0}, got {cfg[key]!r}")
    seeds = list(cfg.seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be a non-empty list of distinct integers, got {seeds}")
    for key in ("common", "trial_budget", "final_budget"):
        bad = [o for o in overrides_of(cfg[key]) if "=" not in o]
        if bad:
            raise ConfigError(f"{key} must hold overrides key=value, got {bad[0]!r}")
        check_choices(overrides_of(cfg[key]))
    shared = parse_space(cfg.shared_space, "shared_space")
    plans = []
    for i, loss in enumerate(losses):
        run_cfg = compose_run([*_base(cfg, loss, cfg.trial_budget), f"paths.output_dir={cfg.out_dir}"])
        validate(run_cfg)
        space = loss_space(run_cfg, loss) + shared
        check_keys(space, run_cfg, loss)
        if run_cfg.eval.monitor != cfg.metric:
            raise ConfigError(
                f"metric is {cfg.metric} but the runs of loss {loss} pick their checkpoint by eval.monitor={run_cfg.eval.monitor}; "
                f"set both to the same (add eval.monitor={cfg.metric} to common)"
            )
        plans.append(LossPlan(i, loss, space))
    return plans


def _base(cfg: DictConfig, loss: str, budget) -> list[str]:
    return [*overrides_of(cfg.common), f"loss={loss}", *overrides_of(budget)]


def check_same_protocol(cfg: DictConfig, out: Path) -> None:
    """A folder holds one protocol: resuming with other settings (except more ``trials``
    or ``seeds``, or ``untuned``) would mix two comparisons."""
    file = out / "protocol.json"
    mine = {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k] for k in FIXED_KEYS}
    if file.exists():
        theirs = json.loads(file.read_text())
        changed = sorted(k for k in FIXED_KEYS if theirs.get(k) != mine[k])
        if changed:
            raise ConfigError(
                f"{out} holds a protocol with other {', '.join(changed)}; resume it with the same settings, "
                f"or start another under a new name (the compare option `name`, or out_dir)"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(file, mine)


def run_training(overrides: list[str], run_dir: Path, label: list[str] | None = None) -> dict[str, float] | None:
    """One run in this process, as ``python -m recsys.run`` would do it, into ``run_dir``;
    its metrics, or None when it failed (``failed.json`` records why).

    ``.hydra/overrides.yaml`` gets ``label`` (default: the overrides), which is what
    ``python -m recsys.report`` names the run's variant by; ``.hydra/run_overrides.yaml``
    the overrides the run used."""
    from recsys.pipeline import train

    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    for name, items in (("overrides.yaml", label or overrides), ("run_overrides.yaml", overrides)):
        (run_dir / ".hydra" / name).write_text(OmegaConf.to_yaml(OmegaConf.create(list(items))))
    run_cfg = None
    try:
        run_cfg = compose_run([*overrides, f"paths.output_dir={run_dir}"])
        return train(run_cfg)
    except Exception as exc:  # a failed run is recorded and the protocol goes on, as in a sweep
        if run_cfg is None:
            write_json_atomic(run_dir / "failed.json", {"error": one_line(exc)})
        else:
            write_failure(run_cfg, exc)
        logging.getLogger(__name__).warning("run %s failed: %s", run_dir, one_line(exc))
        return None


def trial_dirs(out: Path, loss: str) -> list[Path]:
    """The loss's trial folders ``tune/<loss>/<k>/``, in order."""
    folder = out / "tune" / loss
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()) if folder.is_dir() else []


def finished_trials(out: Path, loss: str) -> list[dict]:
    """The trials that count against the budget (``trial.json`` written: done or failed),
    in order: ``{"trial", "status", "value", "params", "distributions"}``."""
    return [json.loads((d / "trial.json").read_text()) for d in trial_dirs(out, loss) if (d / "trial.json").exists()]


def best_trial(trials: list[dict]) -> dict | None:
    """The finished trial with the highest value (the earlier one on a tie); None if none."""
    done = [t for t in trials if t["status"] == "done"]
    return max(done, key=lambda t: (t["value"], -t["trial"])) if done else None


def open_study(cfg: DictConfig, p: LossPlan, trials: list[dict]):
    """An in-memory TPE study holding the loss's finished trials (the trial folders are the
    record: nothing is re-run, and the sampler sees every earlier result)."""
    import optuna
    from optuna.distributions import json_to_distribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # add_trial, enqueue_trial
    sampler = optuna.samplers.TPESampler(seed=int(cfg.seed) + p.index, n_startup_trials=int(cfg.startup_trials))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for t in trials:
        dists = {k: json_to_distribution(v) for k, v in t["distributions"].items()}
        done = t["status"] == "done"
        study.add_trial(create_trial(params=t["params"], distributions=dists, value=t["value"] if done else None,
                                     state=TrialState.COMPLETE if done else TrialState.FAIL))
    return study


def tune(cfg: DictConfig, out: Path, p: LossPlan) -> None:
    """Run this loss's trials until ``trials`` of them have finished (failed ones count).

    Trial ``k`` runs in ``tune/<loss>/<k>/``: ``params.json`` is written before it trains,
    ``trial.json`` (status, value, params) once it has finished. A folder with the first
    and not the second was cut short: it is emptied and re-run with the same settings."""
    from optuna.distributions import distribution_to_json

    trials = finished_trials(out, p.loss)
    study = open_study(cfg, p, trials)
    for k in range(len(trials), int(cfg.trials)):
        run_dir = out / "tune" / p.loss / f"{k:03d}"
        if (run_dir / "params.json").exists():  # interrupted: the same settings again
            study.enqueue_trial(json.loads((run_dir / "params.json").read_text()))
            print(f"[{p.loss}] trial {k} was cut short; running it again with the same settings")
            shutil.rmtree(run_dir)
        print(f"[{p.loss}] trial {k + 1} of {cfg.trials}")

        def objective(trial, k=k, run_dir=run_dir) -> float:
            params = {param.key: param.suggest(trial) for param in p.space}
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(run_dir / "params.json", params)
            overrides = [*_base(cfg, p.loss, cfg.trial_budget), *(as_override(k_, v) for k_, v in params.items()), f"seed={cfg.seed}"]
            metrics = run_training(overrides, run_dir)
            value = None if metrics is None else metrics.get(cfg.metric)
            ok = value is not None and value == value  # finished, not NaN
            write_json_atomic(run_dir / "trial.json", {
                "trial": k, "status": "done" if ok else "failed", "value": float(value) if ok else None, "params": params,
                "distributions": {key: distribution_to_json(d) for key, d in trial.distributions.items()},
            })
            return float(value) if ok else float("nan")  # NaN: Optuna records a failed trial, TPE ignores it

        study.optimize(objective, n_trials=1)


def final_runs(cfg: DictConfig, out: Path, p: LossPlan) -> None:
    """The best trial's settings and (``untuned``) the defaults, at the final budget, per seed."""
    best = best_trial(finished_trials(out, p.loss))
    final = out / "final"
    final.mkdir(parents=True, exist_ok=True)
    _supersede(out, p, best)
    variants = []
    if best is not None:
        tuned = [as_override(k, v) for k, v in best["params"].items()]
        variants.append((f"tuned-t{best['trial']:03d}", tuned))
    else:
        print(f"[{p.loss}] no trial finished, so there is no tuned setting to retrain")
    if cfg.untuned:
        variants.append(("untuned", []))
    for seed in cfg.seeds:
        for name, params in variants:
            run_dir = final / f"{p.index}_loss-{p.loss}__{name}__seed-{seed}"
            if (run_dir / "metrics.json").exists() or (run_dir / "failed.json").exists():
                continue
            resume = [f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"] if (run_dir / "checkpoints" / "last.ckpt").exists() else []
            overrides = [*_base(cfg, p.loss, cfg.final_budget), *params, f"seed={seed}"]
            print(f"[{p.loss}] final run {run_dir.name}")
            # the report names the variant by loss and setting (tuned | untuned) only
            label = [f"loss={p.loss}", f"setting={name.split('-')[0]}", f"seed={seed}"]
            run_training([*overrides, *resume], run_dir, label)


def _supersede(out: Path, p: LossPlan, best: dict | None) -> None:
    """Move tuned runs of an earlier best trial of this loss out of ``final/``."""
    keep = f"tuned-t{best['trial']:03d}" if best is not None else None
    for run_dir in sorted((out / "final").glob(f"{p.index}_loss-{p.loss}__tuned-t*__seed-*")):
        if keep is None or f"__{keep}__" not in run_dir.name:
            target = out / "final_superseded" / run_dir.name
            target.parent.mkdir(exist_ok=True)
            if target.exists():
                shutil.rmtree(target)
            shutil.move(str(run_dir), str(target))


def run_protocol(cfg: DictConfig) -> Path:
    """The whole protocol (resuming what an earlier call left); returns the summary's path."""
    from recsys.compare.summary import write_summary

    out = Path(cfg.out_dir)
    plans = plan(cfg)
    check_same_protocol(cfg, out)
    mine = [p for p in plans if not cfg.get("only") or p.loss in cfg.only]
    for p in mine:
        tune(cfg, out, p)
    for p in mine:
        final_runs(cfg, out, p)
    return write_summary(cfg, out, plans)
