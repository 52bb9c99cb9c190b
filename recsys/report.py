"""``python -m recsys.report <sweep dir>``: compare the runs of a sweep, honestly.

Reads every job folder of a Hydra multirun (``<sweep dir>/<n>_<overrides>/``), whether the
sweep has finished or is still running, and writes into ``<sweep dir>/report/``:

- ``report.csv`` and ``report.md``: one row per variant (the job overrides that vary across
  the sweep, seed excluded, e.g. ``loss=nss``): number of finished / failed / unfinished
  seeds, mean and standard deviation over seeds of each metric in ``metrics.json``, and a
  paired significance test of the variant against the best one on per-user test NDCG@10
  (per-user values averaged over seeds, users paired): Wilcoxon signed-rank and paired
  t-test, both Holm-corrected over the variants compared (``--metric`` picks another
  per-user column, e.g. ``test/novelty@10``: the variant with the highest mean is then the
  reference); ``report.md`` adds a table of the popularity-bias and beyond-accuracy
  metrics (``coverage@K``, ``gini@K``, ``arp@K``, ``aplt@K``, ``novelty@K``; definitions
  in :mod:`recsys.metrics.popularity`), whose lower ARP and Gini and higher APLT, novelty
  and coverage mean less popularity bias;
- ``jobs.csv``: every job with its status (``done``, ``failed`` with the error from its
  ``failed.json``, or ``unfinished``: still running, or killed) and final metrics;
- ``train_loss.png`` and ``val_<metric>.png``: per-epoch curves (from each job's
  ``epochs.csv``), one line per variant (mean over seeds) with a band from the lowest to
  the highest seed.

``--max-target-count K`` restricts the test metrics and the paired tests to the users
whose test target has at most ``K`` training interactions (cold targets, where side
features should matter most): each job's test metrics are then the means of its
``test_per_user.csv`` over those users.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.errors import RecsysError

SEED_KEYS = ("seed",)
RESUME_KEYS = ("ckpt_path",)  # a run resumed from its last.ckpt is the same variant
SHOWN = ("test/ndcg@10", "test/hr@10", "test/ndcg@20", "test/hr@20", "test/mrr", "val/ndcg@10")
BEYOND = ("coverage", "gini", "arp", "aplt", "novelty")  # test/<name>@K, the beyond-accuracy table


@dataclass
class Job:
    path: Path
    overrides: dict[str, str]
    status: str  # done | failed | unfinished
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    epochs: pd.DataFrame | None = None
    per_user: pd.DataFrame | None = None
    variant: str = ""
    seed: str = ""


def _read_overrides(job_dir: Path) -> dict[str, str]:
    from omegaconf import OmegaConf

    file = job_dir / ".hydra" / "overrides.yaml"
    if not file.exists():
        return {}
    out = {}
    for item in OmegaConf.load(file):
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def _read_csv(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError):  # written at this moment
        return None


def read_job(job_dir: Path) -> Job:
    overrides = _read_overrides(job_dir)
    metrics_file, failed_file = job_dir / "metrics.json", job_dir / "failed.json"
    if metrics_file.exists():
        job = Job(job_dir, overrides, "done", metrics=json.loads(metrics_file.read_text()))
    elif failed_file.exists():
        job = Job(job_dir, overrides, "failed", error=json.loads(failed_file.read_text()).get("error", ""))
    else:
        job = Job(job_dir, overrides, "unfinished")
    job.epochs = _read_csv(job_dir / "epochs.csv")
    job.per_user = _read_csv(job_dir / "test_per_user.csv")
    return job


def collect(sweep_dir: Path) -> list[Job]:
    """Every job of the sweep, with its variant and seed set."""
    if not sweep_dir.is_dir():
        raise RecsysError(f"sweep directory {sweep_dir} does not exist; pass the folder a `-m` run printed (logs/<task>/multiruns/<time>)")
    job_dirs = sorted(
        (p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()),
        key=lambda p: (int(p.name.split("_", 1)[0]) if p.name.split("_", 1)[0].isdigit() else 1 << 30, p.name),
    )
    if not job_dirs:
        raise RecsysError(f"{sweep_dir} holds no sweep jobs (no <n>_<overrides>/.hydra folders); is it a multirun directory?")
    jobs = [read_job(p) for p in job_dirs]
    keys = sorted({k for j in jobs for k in j.overrides})
    varying = [k for k in keys if k not in SEED_KEYS + RESUME_KEYS and len({j.overrides.get(k) for j in jobs}) > 1]
    for j in jobs:
        j.variant = ",".join(f"{k}={j.overrides[k]}" for k in varying if k in j.overrides) or "all"
        j.seed = next((j.overrides[k] for k in SEED_KEYS if k in j.overrides), "")
    return jobs


def restrict_to_cold_targets(jobs: list[Job], max_count: int) -> int:
    """Keep, in every finished job, only the users whose test target has at most
    ``max_count`` training interactions; their per-user means replace the job's test
    metrics (test metrics without a per-user column, coverage and gini, are dropped).

    Returns:
        The number of users kept (of the first finished job).
    """
    kept = None
    for j in jobs:
        if j.status != "done" or j.per_user is None:
            continue
        if "target_train_count" not in j.per_user:
            raise RecsysError(
                f"{j.path / 'test_per_user.csv'} has no target_train_count column (runs before it was added); "
                f"evaluate the run again with fit=false ckpt_path=/path/to/run/checkpoints/best.ckpt"
            )
        count = j.per_user["target_train_count"]
        j.per_user = j.per_user[(count >= 0) & (count <= max_count)]
        j.metrics = {k: v for k, v in j.metrics.items() if not k.startswith("test/")}
        j.metrics.update({c: float(j.per_user[c].mean()) for c in j.per_user.columns if c.startswith("test/")})
        kept = len(j.per_user) if kept is None else kept
    if kept == 0:
        raise RecsysError(f"no user's test target has at most {max_count} training interactions; raise --max-target-count")
    return kept or 0


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[idx]))
        adjusted[idx] = running
    return adjusted.tolist()


def _per_user_mean(jobs: list[Job], column: str) -> pd.Series | None:
    frames = [j.per_user.set_index("user")[column] for j in jobs if j.status == "done" and j.per_user is not None and column in j.per_user]
    if not frames:
        return None
    return pd.concat(frames, axis=1).mean(axis=1)


def significance(jobs: list[Job], variants: list[str], best: str, metric: str) -> pd.DataFrame:
    """Paired tests of every variant against ``best`` on per-user ``metric`` (Holm-corrected)."""
    from scipy import stats

    per_user_columns = {c for j in jobs if j.per_user is not None for c in j.per_user.columns}
    column = metric if metric in per_user_columns else metric.split("/", 1)[-1]
    per_user = {v: _per_user_mean([j for j in jobs if j.variant == v], column) for v in variants}
    rows, p_w, p_t = [], [], []
    reference = per_user.get(best)
    for v in variants:
        if v == best or reference is None or per_user[v] is None:
            continue
        a, b = reference.align(per_user[v], join="inner")
        diff = (a - b).to_numpy()
        if len(diff) < 2 or not np.any(diff):
            pw = pt = 1.0
        else:
            pw = float(stats.wilcoxon(a.to_numpy(), b.to_numpy(), zero_method="wilcox").pvalue)
            pt = float(stats.ttest_rel(a.to_numpy(), b.to_numpy()).pvalue)
        rows.append({"variant": v, "users_paired": len(diff), "mean_diff_vs_best": float(diff.mean()) if len(diff) else float("nan")})
        p_w.append(pw)
        p_t.append(pt)
    out = pd.DataFrame(rows, columns=["variant", "users_paired", "mean_diff_vs_best"])
    if rows:
        out["p_wilcoxon_holm"] = holm(p_w)
        out["p_ttest_holm"] = holm(p_t)
        out["significant_0.05"] = out["p_wilcoxon_holm"] < 0.05
    return out


def summarize(jobs: list[Job], metric: str = "test/ndcg@10") -> tuple[pd.DataFrame, str | None]:
    """One row per variant: counts, mean and std over seeds, and the significance columns."""
    variants = list(dict.fromkeys(j.variant for j in jobs))
    done = [j for j in jobs if j.status == "done"]
    metric_names = [m for m in SHOWN if any(m in j.metrics for j in done)]
    metric_names += sorted({m for j in done for m in j.metrics if m.startswith("test") and m not in metric_names})
    rows = []
    for v in variants:
        mine = [j for j in jobs if j.variant == v]
        row: dict = {
            "variant": v,
            "done": sum(j.status == "done" for j in mine),
            "failed": sum(j.status == "failed" for j in mine),
            "unfinished": sum(j.status == "unfinished" for j in mine),
        }
        finished = [j for j in mine if j.status == "done"]
        for m in metric_names + ["epochs"]:
            values = [j.metrics[m] for j in finished if m in j.metrics]
            row[f"{m} mean"] = float(np.mean(values)) if values else float("nan")
            row[f"{m} std"] = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows)
    key = f"{metric} mean"
    best = None
    if key in table and table[key].notna().any():
        lower = lower_is_better(metric)
        best = str(table.loc[table[key].idxmin() if lower else table[key].idxmax(), "variant"])
        sig = significance(jobs, variants, best, metric)
        table = table.merge(sig, on="variant", how="left")
        table = table.sort_values(key, ascending=lower, na_position="last").reset_index(drop=True)
    return table, best


LOWER_IS_BETTER = ("arp", "gini")  # popularity concentration: less is better; every other metric, more


def lower_is_better(metric: str) -> bool:
    """True for metrics where the best variant has the lowest mean (``test/arp@10``, ``test/gini@20``)."""
    return metric.split("/")[-1].split("@")[0] in LOWER_IS_BETTER


def _curves(jobs: list[Job], column: str, out: Path, title: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for v in dict.fromkeys(j.variant for j in jobs):
        series = [j.epochs.set_index("epoch")[column].dropna() for j in jobs if j.variant == v and j.epochs is not None and column in j.epochs]
        if not series:
            continue
        frame = pd.concat(series, axis=1).dropna(how="all")  # [epochs, seeds], epochs without validation dropped
        mean = frame.mean(axis=1)
        label = textwrap.fill(f"{v} ({frame.shape[1]} seed{'s' if frame.shape[1] > 1 else ''})", 90)
        ax.plot(mean.index, mean.values, label=label)
        if frame.shape[1] > 1:
            ax.fill_between(mean.index, frame.min(axis=1).values, frame.max(axis=1).values, alpha=0.2)
        drawn = True
    if drawn:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(column)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        # below the axes: variant names (the swept overrides) can be long
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
        fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return drawn


def _fmt(mean: float, std: float, digits: int = 4) -> str:
    if np.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" if np.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(table: pd.DataFrame, jobs: list[Job], best: str | None, metric: str, plots: list[str], sweep_dir: Path) -> str:
    metrics = [c[: -len(" mean")] for c in table.columns if c.endswith(" mean")]
    shown = [m for m in metrics if m in SHOWN or m == "epochs"]
    lines = [f"# Sweep report: {sweep_dir}", ""]
    counts = {s: sum(j.status == s for j in jobs) for s in ("done", "failed", "unfinished")}
    lines.append(f"{len(jobs)} jobs: {counts['done']} done, {counts['failed']} failed, {counts['unfinished']} unfinished (running or killed).")
    order = "lowest" if lower_is_better(metric) else "highest"
    lines.append(f"Values are mean ± standard deviation over the finished seeds. Best by {metric} ({order} mean): **{best}**."
                 if best else "No finished job yet.")
    lines.append(
        "Significance: per-user test values averaged over seeds, each variant paired with the best on the same users; "
        "Wilcoxon signed-rank and paired t-test p-values, Holm-corrected; `yes` = different from the best at 0.05 (Wilcoxon)."
    )
    lines.append("")
    header = ["variant", "seeds (done/failed/unfinished)"] + shown + ["p Wilcoxon (Holm)", "p t-test (Holm)", "differs from best"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for _, r in table.iterrows():
        cells = [str(r["variant"]), f"{r['done']}/{r['failed']}/{r['unfinished']}"]
        cells += [_fmt(r[f"{m} mean"], r[f"{m} std"], 1 if m == "epochs" else 4) for m in shown]
        if r["variant"] == best:
            cells += ["(best)", "(best)", ""]
        elif "p_wilcoxon_holm" in r and not pd.isna(r.get("p_wilcoxon_holm")):
            cells += [f"{r['p_wilcoxon_holm']:.2g}", f"{r['p_ttest_holm']:.2g}", "yes" if r["significant_0.05"] else "no"]
        else:
            cells += ["–", "–", ""]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _beyond_accuracy_table(table, metrics, best)
    failed = [j for j in jobs if j.status == "failed"]
    if failed:
        lines += ["", "## Failed jobs", ""]
        lines += [f"- `{j.path.name}`: {j.error}" for j in failed]
    unfinished = [j for j in jobs if j.status == "unfinished"]
    if unfinished:
        lines += ["", "## Unfinished jobs (running, or stopped before the end)", ""]
        lines += [f"- `{j.path.name}` ({0 if j.epochs is None else len(j.epochs)} epochs so far)" for j in unfinished]
    if plots:
        lines += ["", "## Curves", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def beyond_accuracy_columns(metrics: list[str]) -> list[str]:
    """The ``test/<name>@K`` metrics of :data:`BEYOND` among ``metrics``, by K, then in
    :data:`BEYOND`'s order."""
    found = []
    for m in metrics:
        name, _, k = m.removeprefix("test/").partition("@")
        if m.startswith("test/") and name in BEYOND and k.isdigit():
            found.append((int(k), BEYOND.index(name), m))
    return [m for _, _, m in sorted(found)]


def _beyond_accuracy_table(table: pd.DataFrame, metrics: list[str], best: str | None) -> list[str]:
    """Markdown lines of the popularity-bias table (none when no run reported those metrics)."""
    columns = beyond_accuracy_columns(metrics)
    if not columns:
        return []
    lines = [
        "", "## Popularity bias and beyond accuracy (test, full ranking)", "",
        "coverage@K: share of the catalogue in some user's top K; gini@K: Gini index of the items' exposure in "
        "all top-K lists (0 = even, towards 1 = all on one item); arp@K: mean training interactions of the "
        "recommended items; aplt@K: share of recommended items outside the short head (the most popular items "
        "holding `eval.short_head_share` of training interactions); novelty@K: mean self-information "
        "-log2 p(i) in bits, p(i) = (training users of i + 1) / (training users + 1). Less popularity bias: "
        "lower arp and gini, higher aplt, novelty and coverage.",
        "",
    ]
    header = ["variant"] + [c.removeprefix("test/") for c in columns]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for _, r in table.iterrows():
        name = f"{r['variant']} (best)" if r["variant"] == best else str(r["variant"])
        lines.append("| " + " | ".join([name] + [_fmt(r[f"{c} mean"], r[f"{c} std"], _digits(c)) for c in columns]) + " |")
    return lines


def _digits(metric: str) -> int:
    """ARP is a count of interactions (1 decimal is enough); the rest are shares or bits."""
    return 1 if metric.startswith("test/arp@") else 4


def report(sweep_dir: str | Path, out_dir: str | Path | None = None, metric: str = "test/ndcg@10", curve: str = "val/ndcg@10",
           max_target_count: int | None = None) -> Path:
    """Write the report files; returns the path of ``report.md``. With
    ``max_target_count`` the test results cover only users whose test target has at most
    that many training interactions (default folder ``report_cold<K>``)."""
    sweep_dir = Path(sweep_dir)
    jobs = collect(sweep_dir)
    cut = ""
    if max_target_count is not None:
        users = restrict_to_cold_targets(jobs, max_target_count)
        cut = f"Test results restricted to the {users} users whose test target has at most {max_target_count} training interactions."
    default_out = sweep_dir / ("report" if max_target_count is None else f"report_cold{max_target_count}")
    out = Path(out_dir) if out_dir else default_out
    out.mkdir(parents=True, exist_ok=True)
    table, best = summarize(jobs, metric)
    table.to_csv(out / "report.csv", index=False)
    pd.DataFrame(
        [{"job": j.path.name, "variant": j.variant, "seed": j.seed, "status": j.status, "error": j.error, **j.metrics} for j in jobs]
    ).to_csv(out / "jobs.csv", index=False)
    plots = []
    if _curves(jobs, "train/loss", out / "train_loss.png", "training loss (epoch mean)"):
        plots.append("train_loss.png")
    curve_file = f"{curve.replace('/', '_')}.png"
    if _curves(jobs, curve, out / curve_file, curve):
        plots.append(curve_file)
    md = out / "report.md"
    text = markdown(table, jobs, best, metric, plots, sweep_dir)
    if cut:
        head, rest = text.split("\n", 1)
        text = f"{head}\n{cut}\n{rest}"
    md.write_text(text)
    return md


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recsys.report", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", help="a multirun folder, e.g. logs/loss_comparison/multiruns/<time>")
    parser.add_argument("--out", default=None, help="output folder (default <sweep_dir>/report)")
    parser.add_argument("--metric", default="test/ndcg@10",
                        help="metric that picks the best variant (highest mean; lowest for arp and gini) and is tested "
                             "per user; any per-user test column, e.g. test/novelty@10, test/aplt@10 or test/arp@10")
    parser.add_argument("--curve", default="val/ndcg@10", help="per-epoch validation metric to plot")
    parser.add_argument("--max-target-count", type=int, default=None,
                        help="only users whose test target has at most this many training interactions (cold targets)")
    args = parser.parse_args(argv)
    try:
        md = report(args.sweep_dir, args.out, args.metric, args.curve, args.max_target_count)
    except RecsysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(md.read_text())
    print(f"written: {md.parent}/(report.md, report.csv, jobs.csv, *.png)")


if __name__ == "__main__":
    main()
