"""The protocol's report: per loss, the tuning it got, the settings it chose, and what
tuning changed; beside ``python -m recsys.report`` over the final runs (paired tests).

Writes into ``<out_dir>/``:

- ``compare.md`` / ``compare.csv``: one row per loss: trials finished / failed (equal for
  every loss by construction), the best validation value and the trial that reached it,
  its settings, test NDCG@10 of the tuned and the untuned runs (mean ± std over seeds)
  and their difference, and the rank of each loss before and after tuning;
- ``tuning_curves.png``: the best validation value so far against the trial number, one
  line per loss (a curve still rising at the last trial says the budget was too small);
- ``final/report/``: the sweep report of the final runs (variants ``loss=<l>,setting=tuned``
  and ``setting=untuned``; paired Wilcoxon and t-tests against the best, Holm-corrected).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from recsys.compare.protocol import LossPlan, best_trial, finished_trials, overrides_of
from recsys.report import collect, report

TEST_METRIC = "test/ndcg@10"


def tuning_curve(trials: list[dict]) -> pd.DataFrame:
    """``trial`` (1-based), ``value`` (NaN if failed), ``best_so_far`` of finished trials in order."""
    values = [t["value"] if t["status"] == "done" else np.nan for t in trials]
    frame = pd.DataFrame({"trial": np.arange(1, len(trials) + 1), "value": values})
    frame["best_so_far"] = frame["value"].cummax()
    return frame


def _seed_stats(frame: pd.DataFrame, loss: str, setting: str) -> tuple[float, float, int]:
    rows = frame[(frame["loss"] == loss) & (frame["setting"] == setting)][TEST_METRIC].dropna() if len(frame) else []
    if len(rows) == 0:
        return np.nan, np.nan, 0
    return float(np.mean(rows)), float(np.std(rows, ddof=1)) if len(rows) > 1 else np.nan, len(rows)


def final_results(out: Path) -> pd.DataFrame:
    """Test metric of every finished final run: ``loss``, ``setting``, ``seed``, value."""
    final = out / "final"
    if not final.is_dir() or not any(final.iterdir()):
        return pd.DataFrame(columns=["loss", "setting", "seed", TEST_METRIC])
    rows = []
    for job in collect(final):
        if job.status == "done":
            rows.append({**{k: job.overrides.get(k) for k in ("loss", "setting", "seed")}, TEST_METRIC: job.metrics.get(TEST_METRIC)})
    return pd.DataFrame(rows, columns=["loss", "setting", "seed", TEST_METRIC])


def summary_table(cfg: DictConfig, out: Path, trials_by_loss: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per loss (in protocol order) from its finished trials and final runs."""
    results = final_results(out)
    rows = []
    for loss, trials in trials_by_loss.items():
        best = best_trial(trials)
        tuned = _seed_stats(results, loss, "tuned")
        untuned = _seed_stats(results, loss, "untuned")
        rows.append({
            "loss": loss,
            "trials_finished": sum(t["status"] == "done" for t in trials),
            "trials_failed": sum(t["status"] == "failed" for t in trials),
            f"best {cfg.metric}": best["value"] if best else np.nan,
            "best_trial": best["trial"] if best else None,
            "settings": ", ".join(f"{k}={_short(v)}" for k, v in best["params"].items()) if best else "",
            "tuned mean": tuned[0], "tuned std": tuned[1], "tuned seeds": tuned[2],
            "untuned mean": untuned[0], "untuned std": untuned[1], "untuned seeds": untuned[2],
        })
    table = pd.DataFrame(rows)
    table["gain from tuning"] = table["tuned mean"] - table["untuned mean"]
    table["rank tuned"] = table["tuned mean"].rank(ascending=False, method="min")
    table["rank untuned"] = table["untuned mean"].rank(ascending=False, method="min")
    return table


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _fmt(mean: float, std: float) -> str:
    if mean != mean:
        return "–"
    return f"{mean:.4f}" if std != std else f"{mean:.4f} ± {std:.4f}"


def plot_curves(trials_by_loss: dict[str, list[dict]], path: Path, metric: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for loss, trials in trials_by_loss.items():
        curve = tuning_curve(trials)
        if curve["best_so_far"].notna().any():
            ax.step(curve["trial"], curve["best_so_far"], where="post", label=f"loss={loss}")
            ax.plot(curve["trial"], curve["value"], "o", alpha=0.35, color=ax.lines[-1].get_color())
            drawn = True
    if drawn:
        ax.set_xlabel("trial (finished, in order)")
        ax.set_ylabel(f"best {metric} so far (dots: each trial)")
        ax.set_title("tuning curves: the same number of trials for every loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return drawn


def write_summary(cfg: DictConfig, out: Path, plans: list[LossPlan]) -> Path:
    """Write ``compare.md``, ``compare.csv``, ``tuning_curves.png`` and the final runs'
    report; returns the path of ``compare.md``."""
    trials_by_loss = {p.loss: finished_trials(out, p.loss) for p in plans}  # read once, for the table and the plot
    table = summary_table(cfg, out, trials_by_loss)
    table.to_csv(out / "compare.csv", index=False)
    plotted = plot_curves(trials_by_loss, out / "tuning_curves.png", cfg.metric)
    final_report = report(out / "final") if (out / "final").is_dir() and any((out / "final").iterdir()) else None
    lines = [
        f"# Loss comparison at an equal tuning budget: {out}",
        "",
        f"Every loss: {cfg.trials} Optuna (TPE) trials on {cfg.metric}, each with `{' '.join(overrides_of(cfg.trial_budget))}`, seed {cfg.seed}; "
        f"then its best setting (and, as `untuned`, its default one) with `{' '.join(overrides_of(cfg.final_budget))}` on seeds "
        f"{', '.join(str(s) for s in cfg.seeds)}. Common overrides: `{' '.join(overrides_of(cfg.common)) or '(none)'}`. "
        f"Test values: {TEST_METRIC}, mean ± std over seeds.",
        "",
        "| loss | trials finished / failed | best validation (trial) | chosen settings | tuned | untuned | gain from tuning | rank tuned / untuned |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        best = f"{r[f'best {cfg.metric}']:.4f} (#{int(r['best_trial'])})" if r["best_trial"] is not None and r["best_trial"] == r["best_trial"] else "–"
        gain = "–" if r["gain from tuning"] != r["gain from tuning"] else f"{r['gain from tuning']:+.4f}"
        ranks = "/".join("–" if v != v else str(int(v)) for v in (r["rank tuned"], r["rank untuned"]))
        lines.append(
            f"| {r['loss']} | {r['trials_finished']} / {r['trials_failed']} | {best} | {r['settings'] or '–'} | "
            f"{_fmt(r['tuned mean'], r['tuned std'])} | {_fmt(r['untuned mean'], r['untuned std'])} | {gain} | {ranks} |"
        )
    if plotted:
        lines += ["", "![tuning curves](tuning_curves.png)"]
    if final_report is not None:
        lines += ["", f"Paired tests and the other metrics of the final runs: [{final_report.relative_to(out)}]({final_report.relative_to(out)})"]
    md = out / "compare.md"
    md.write_text("\n".join(lines) + "\n")
    return md
