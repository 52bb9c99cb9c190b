"""Speed benchmark on ML-1M (``make bench``).

Prints, for the real ml1m data on this machine:

* seconds to load and split (leave-one-out);
* SASRec training (d=64, 2 blocks, max length 200, full cross-entropy, batch 128, Adam):
  target positions per second and seconds for one whole epoch, and where the epoch goes
  (``epoch_profile_*``: data, attention blocks, output layer and softmax, optimizer);
* seconds per SASRec training step with each main loss on its default negatives
  (``loss_step_*``: ce and poly over all items, bce with one uniform negative per
  position, gbce with 256 per position, scored as columns of the catalogue's scores
  (``recsys.scoring.scores_through_catalogue``), infonce and nss on at most 1,024 in-batch
  negatives, ssm_mixed on those plus a uniform pool of 256): what an equal-wall-time
  loss comparison (``python -m recsys.compare``) gives each loss in epochs;
* seconds for one full-ranking evaluation of all 6,040 users, end to end (SASRec
  encoding of every user, scoring all items, excluding history, all metrics) and the
  ranking part alone (scores -> metrics, given the user vectors);
* seconds for one full-ranking evaluation of all 6,040 users by NeuMF (default sizes,
  untrained), whose scores run the network on all 6,040 x 3,416 (user, item) pairs in
  tiles of ``model.eval_chunk`` pairs: end to end and the scoring + ranking part alone;
* the same for Wide & Deep (default sizes, ml1m's user and item features, untrained): the
  wide part one matrix product, the tower on every pair in tiles;
* peak resident memory of the process;
* LightGCN on Gowalla (when its files are in the data directory; ``--no-gowalla`` skips
  it): seconds per BPR training step (3 layers, d=64, batch 8192: one propagation over
  the 70k-node graph, forward and backward) and one full-ranking evaluation of all
  29,858 test users (up to hundreds of targets each);
* the two first commands of the README, run one after the other as subprocesses on the
  synthetic data (``--no-default-runs`` skips them, ``--default-runs-only`` runs only
  them): ``python -m recsys.run`` (SASRec + CE) and ``python -m recsys.run
  model=two_tower loss=nss``, each with its wall time and test NDCG@10, and the ratio of
  the two wall times;
* the retrieval reward service (:mod:`experiments.bench_reward`; ``--no-reward`` skips
  it, ``--reward-only`` runs only it): ``calculate_reward`` texts per second at batch 256
  on ml1m and beauty prompts, full catalogue and target + 99 negatives, in-process and
  through the Ray actor, with the encoder's share and peak memory, for the hashing and
  MiniLM encoders;
* bounded memory on a synthetic catalogue of 1M items (:mod:`experiments.bench_bounded`;
  ``--no-bounded`` skips it, ``--bounded-only`` runs only it): peak memory and time of one
  full-softmax training step (1,024 and 256 rows) and of one full-ranking evaluation of
  10,000 users, with ``loss.item_chunk``/``eval.item_chunk`` and without.

With ``--baseline REF`` (``make bench``: ``BENCH_BASELINE``, the previous main) the bench of
commit ``REF`` runs too, in the same run on an export of that commit, and each figure is
printed beside the previous one with the ratio new / previous: ratios, because this
machine's speed varies by about a third from one hour to the next.

Targets on a 2-core CPU: load+split <= 5 s, evaluation <= 1 s, epoch <= 20 s, NeuMF
and Wide & Deep evaluation <= 10 s;
Gowalla: step <= 0.5 s, evaluation <= 60 s; two-tower/SASRec default-run time <= 1.5.
Usage: ``python -m experiments.bench [--steps N]`` (``--steps 0``, the default, times a
whole epoch; ``N`` times N steps and extrapolates).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from recsys.data.datamodule import RecDataModule
from recsys.data.datasets.movielens import ML1M
from recsys.data.files import default_data_dir
from recsys.data.splits import LeaveOneOut
from recsys.losses.bce import BCE
from recsys.losses.ce import CE
from recsys.losses.gbce import GBCE
from recsys.losses.infonce import InfoNCE
from recsys.losses.nss import NSS
from recsys.losses.poly import Poly1
from recsys.losses.ssm import SSM
from recsys.models.neumf import NeuMF
from recsys.models.sasrec import SASRec
from recsys.models.wide_deep import WideDeep
from recsys.module import RecModule
from recsys.samplers.full import FullSampler
from recsys.samplers.in_batch import InBatchSampler
from recsys.samplers.mixed import MixedSampler
from recsys.samplers.uniform import UniformSampler


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bench_training(module: RecModule, dm: RecDataModule, steps: int) -> dict[str, float]:
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    module.train()
    loader = dm.train_dataloader()
    n_batches = len(loader.sampler)
    positions, seconds = 0, 0.0
    for i, batch in enumerate(loader):
        if steps and i >= steps:
            break
        start = time.perf_counter()
        step = module.objective(batch)  # the same step as training_step
        optimizer.zero_grad(set_to_none=True)
        step.total.backward()
        optimizer.step()
        seconds += time.perf_counter() - start
        positions += step.rows
    done = min(steps, n_batches) if steps else n_batches
    return {
        "train_positions_per_s": positions / seconds,
        "epoch_s": seconds * n_batches / done,
        "batches_per_epoch": n_batches,
        "measured_batches": done,
    }


def profile_sasrec_epoch(module: RecModule, dm: RecDataModule, steps: int = 12) -> dict[str, float]:
    """Where a SASRec training epoch goes, from ``steps`` timed batches scaled to the whole
    epoch: data (the loader), the attention blocks (``model.encode`` forward, and the
    backward from the queries' gradient down), the output layer and softmax
    cross-entropy (scores of every item and the loss forward, and their backward down to
    the queries' gradient), and the optimizer step. The phases run in order and sum to the
    step; the first batch is a warm-up."""
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    module.train()
    n_batches = len(dm.train_dataloader().sampler)
    phases = dict.fromkeys(("data", "attention_blocks", "output_layer_and_softmax", "optimizer"), 0.0)
    loader = iter(dm.train_dataloader())
    timed_steps = 0
    for i in range(min(steps, n_batches) + 1):
        start = time.perf_counter()
        batch = next(loader)
        fetched = time.perf_counter()
        enc = module.model.encode(batch)  # the transformer's forward
        encoded = time.perf_counter()
        main = module.loss(module.scores(enc, module.sampler.sample(enc.target, enc.user)))  # [R, I] scores, CE
        scored = time.perf_counter()
        reached_queries = []
        enc.query.register_hook(lambda grad: reached_queries.append(time.perf_counter()))
        optimizer.zero_grad(set_to_none=True)
        main.backward()
        backward = time.perf_counter()
        optimizer.step()
        stepped = time.perf_counter()
        if i == 0:
            continue  # warm-up
        timed_steps += 1
        phases["data"] += fetched - start
        phases["attention_blocks"] += (encoded - fetched) + (backward - reached_queries[0])
        phases["output_layer_and_softmax"] += (scored - encoded) + (reached_queries[0] - scored)
        phases["optimizer"] += stepped - backward
    scale = n_batches / timed_steps
    figures = {f"epoch_profile_{name}_s": seconds * scale for name, seconds in phases.items()}
    figures["epoch_profile_total_s"] = sum(phases.values()) * scale
    return figures


def bench_loss_steps(split, dm: RecDataModule, steps: int = 5) -> dict[str, float]:
    """Seconds per SASRec ml1m training step (the :func:`bench_training` model, batch 128)
    for each main loss on its config's default negatives, ``steps`` timed steps after one
    warm-up step, each loss on a fresh model."""
    cases = {
        "ce": lambda: (CE(), FullSampler()),
        "poly": lambda: (Poly1(1.0), FullSampler()),
        "bce": lambda: (BCE(), UniformSampler(1)),
        "gbce": lambda: (GBCE(0.75), UniformSampler(256)),
        "infonce": lambda: (InfoNCE(0.1), InBatchSampler(1024)),
        "nss": lambda: (NSS(), InBatchSampler(1024)),
        "ssm_mixed": lambda: (SSM(1.0), MixedSampler(256, max_negatives=1024)),
    }
    figures = {}
    for name, make in cases.items():
        torch.manual_seed(0)
        model = SASRec(split.n_items, embedding_dim=64, num_blocks=2, num_heads=1, max_len=200, dropout=0.2)
        loss, sampler = make()
        for part in (model, sampler, loss):
            part.setup(split)
        module = RecModule(model, loss, sampler, optimizer=None, n_items=split.n_items).train()
        module.objective(next(iter(dm.train_dataloader()))).total.backward()  # warm-up, untimed
        timed = bench_training(module, dm, steps)
        figures[f"loss_step_{name}_s"] = timed["epoch_s"] / timed["batches_per_epoch"]
    return figures


@torch.no_grad()
def bench_eval(module: RecModule, dm: RecDataModule, warm_up: bool = True) -> dict[str, float]:
    """Full-ranking evaluation time; ``warm_up=False`` times one cold pass and skips the
    ranking-only figure (for the long Gowalla evaluation)."""
    module.eval()
    evaluator = module.evaluator
    batches = list(dm.test_dataloader())
    n_users = sum(b["user"].numel() for b in batches)

    def end_to_end():
        evaluator.reset()
        for b in batches:
            module._eval_step(b, "test")
        return evaluator.compute("test")

    if warm_up:
        end_to_end()
    metrics, total = timed(end_to_end)
    if not warm_up:
        return {"eval_users": n_users, "eval_end_to_end_s": total}
    queries = [module.model.user_queries(b) for b in batches]

    def ranking_only():
        evaluator.reset()
        items = module.model.item_embeddings()
        for q, b in zip(queries, batches):
            evaluator.update(module.model.score(q, items), b, "test")

    _, ranking = timed(ranking_only)
    return {"eval_users": n_users, "eval_end_to_end_s": total, "eval_ranking_only_s": ranking, "test/ndcg@10_untrained": metrics["test/ndcg@10"]}


def bench_lightgcn_gowalla(data_dir: str, steps: int = 10) -> dict[str, float]:
    from recsys.data.datasets.gowalla import Gowalla
    from recsys.data.splits import FixedSplit
    from recsys.losses.bpr import BPR
    from recsys.models.lightgcn import LightGCN
    from recsys.samplers.uniform import UniformSampler

    dm = RecDataModule(Gowalla(download=False), FixedSplit(), data_dir=data_dir, batch_size=8192, eval_batch_size=1024)
    split = dm.prepare()
    model = LightGCN(split.n_users, split.n_items, embedding_dim=64, num_layers=3)
    sampler, loss = UniformSampler(num_negatives=1), BPR()
    for part in (model, sampler, loss):
        part.setup(split)
    dm.attach(model.make_view(split))
    module = RecModule(model, loss, sampler, optimizer=None, n_items=split.n_items, ks=[20])
    train = bench_training(module, dm, steps)
    evaluation = bench_eval(module, dm, warm_up=False)
    return {"gowalla_step_s": train["epoch_s"] / train["batches_per_epoch"],
            "gowalla_epoch_s": train["epoch_s"], "gowalla_eval_users": evaluation["eval_users"],
            "gowalla_eval_end_to_end_s": evaluation["eval_end_to_end_s"]}


def _pair_model_eval(model, split, dm: RecDataModule) -> dict[str, float]:
    """Full-ranking evaluation of a model whose score runs a network on every pair."""
    sampler, loss = UniformSampler(num_negatives=4), BCE()
    for part in (model, sampler, loss):
        part.setup(split)
    dm.attach(model.make_view(split))
    return bench_eval(RecModule(model, loss, sampler, optimizer=None, n_items=split.n_items), dm)


def bench_neumf_eval(split, dm: RecDataModule) -> dict[str, float]:
    """NeuMF's chunked full-ranking evaluation (every user x item pair through the network)."""
    figures = _pair_model_eval(NeuMF(split.n_users, split.n_items), split, dm)  # conf/model/neumf.yaml's defaults
    return {"neumf_eval_pairs": split.n_users * split.n_items, "neumf_eval_end_to_end_s": figures["eval_end_to_end_s"],
            "neumf_eval_ranking_only_s": figures["eval_ranking_only_s"]}


def bench_wide_deep_eval(split, dm: RecDataModule) -> dict[str, float]:
    """Wide & Deep's full-ranking evaluation (wide: one matrix product; deep: every pair
    through the tower, in tiles), with ml1m's user and item features."""
    train = split.train
    model = WideDeep(split.n_users, split.n_items, train.user_features, train.item_features, train.feature_cardinality)
    figures = _pair_model_eval(model, split, dm)
    return {"wide_deep_eval_end_to_end_s": figures["eval_end_to_end_s"],
            "wide_deep_eval_ranking_only_s": figures["eval_ranking_only_s"]}


DEFAULT_RUNS = {"sasrec": [], "two_tower": ["model=two_tower", "loss=nss"]}


def bench_default_runs(data_dir: str) -> dict[str, float]:
    """Wall time and test NDCG@10 of each default command (run as a user would, in a fresh
    process writing into a temporary folder, no logger), and the two-tower/SASRec ratio."""
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="recsys_bench_") as tmp:
        for name, overrides in DEFAULT_RUNS.items():
            log_dir = Path(tmp) / name
            command = [sys.executable, "-m", "recsys.run", *overrides, "logger=none", f"paths.data_dir={data_dir}",
                       f"paths.log_dir={log_dir}"]
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
            (metrics_file,) = log_dir.glob("**/metrics.json")
            metrics = json.loads(metrics_file.read_text())
            results[f"default_{name}_s"] = seconds
            results[f"default_{name}_test_ndcg@10"] = metrics["test/ndcg@10"]
            results[f"default_{name}_test_hr@10"] = metrics["test/hr@10"]
    results["default_time_ratio_two_tower_sasrec"] = results["default_two_tower_s"] / results["default_sasrec_s"]
    return results


SECTION_FLAGS = ("no_gowalla", "no_default_runs", "default_runs_only", "no_reward", "reward_only", "no_bounded",
                 "bounded_only")


def bench_baseline(ref: str, args: argparse.Namespace) -> dict[str, float]:
    """The figures of commit ``ref`` (the previous main), measured now on this machine:
    its own ``experiments/bench.py`` runs in a subprocess on an export of that commit
    (``git archive``), with the same sections, steps and data, so that each figure can be
    set beside the previous one measured under the same conditions (this machine's speed
    varies by about a third from hour to hour)."""
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(root), "archive", ref], capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"--baseline {ref}: git archive failed ({archive.stderr.decode().strip()}); "
                         f"give a commit of this repository (git log --oneline) or --baseline none")
    with tempfile.TemporaryDirectory(prefix="recsys_bench_baseline_") as tmp:
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        out = Path(tmp) / "baseline.json"
        flags = [f"--{name.replace('_', '-')}" for name in SECTION_FLAGS if getattr(args, name)]
        command = [sys.executable, "-m", "experiments.bench", "--steps", str(args.steps), "--data-dir", args.data_dir,
                   "--out", str(out), *flags]
        print(f"baseline {ref}: {' '.join(command[1:])} (in an export of {ref})", flush=True)
        done = subprocess.run(command, cwd=tmp, env={**os.environ, "PYTHONPATH": tmp})  # its recsys, not this one
        if done.returncode != 0:
            raise SystemExit(f"--baseline {ref}: its bench failed ({done.returncode}); see its output above")
        return json.loads(out.read_text())


def print_table(results: dict, previous: dict | None, ref: str | None) -> None:
    """Each figure, its target, and with a baseline the previous figure and the ratio new / previous."""
    targets = {"load_and_split_s": 5.0, "epoch_s": 20.0, "eval_end_to_end_s": 1.0, "neumf_eval_end_to_end_s": 10.0,
               "wide_deep_eval_end_to_end_s": 10.0,
               "gowalla_step_s": 0.5, "gowalla_eval_end_to_end_s": 60.0, "default_time_ratio_two_tower_sasrec": 1.5}
    header = f"{'figure':52s} {'value':>12s}"
    if previous is not None:
        header += f" {'previous ' + ref:>18s} {'new/prev':>9s}"
    print(header + "  target")
    for key, value in results.items():
        target = f"<= {targets[key]:g} {'ok' if value <= targets[key] else 'MISSED'}" if key in targets else ""
        line = f"{key:52s} {value:12.3f}" if isinstance(value, float) else f"{key:52s} {value:12d}"
        if previous is not None:
            before = previous.get(key)
            if isinstance(before, (int, float)) and not isinstance(before, bool):
                ratio = f"{value / before:9.2f}" if before else f"{'-':>9s}"
                line += f" {before:18.3f} {ratio}"
            else:
                line += f" {'(not measured)':>18s} {'':9s}"
        print(f"{line}  {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=0, help="training steps to time (0 = one whole epoch)")
    parser.add_argument("--data-dir", default=str(default_data_dir()))
    parser.add_argument("--out", default="bench_results/bench.json")
    parser.add_argument("--no-gowalla", action="store_true", help="skip the LightGCN-on-Gowalla figures")
    parser.add_argument("--no-default-runs", action="store_true",
                        help="skip the two default commands (SASRec and two-tower on the synthetic data)")
    parser.add_argument("--default-runs-only", action="store_true", help="run only the two default commands")
    parser.add_argument("--no-reward", action="store_true", help="skip the reward service figures")
    parser.add_argument("--reward-only", action="store_true", help="run only the reward service figures")
    parser.add_argument("--no-bounded", action="store_true", help="skip the bounded-memory figures (1M items)")
    parser.add_argument("--bounded-only", action="store_true", help="run only the bounded-memory figures")
    parser.add_argument("--baseline", default="none",
                        help="a commit (make bench: the previous main) whose bench runs in this run too, each figure "
                             "printed beside it with the ratio new / previous; none: no baseline")
    args = parser.parse_args()
    torch.manual_seed(0)
    results = {"torch_threads": torch.get_num_threads()}
    only = args.default_runs_only or args.reward_only or args.bounded_only
    if not only:
        results.update(bench_ml1m(args))
    if args.default_runs_only or not (args.no_default_runs or only):
        results.update(bench_default_runs(args.data_dir))
    if args.reward_only or not (args.no_reward or only):
        from experiments.bench_reward import bench_reward

        os.environ.setdefault("RECSYS_DATA_DIR", args.data_dir)
        results.update(bench_reward())
    if args.bounded_only or not (args.no_bounded or only):
        from experiments.bench_bounded import bench_bounded

        results.update(bench_bounded())  # each case in its own process: not in this one's peak memory
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    previous = None if args.baseline == "none" else bench_baseline(args.baseline, args)
    print_table(results, previous, args.baseline)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    record = results if previous is None else {**results, "baseline": {"commit": args.baseline, **previous}}
    Path(args.out).write_text(json.dumps(record, indent=2))


def bench_ml1m(args: argparse.Namespace) -> dict[str, float]:
    """The ML-1M figures (load, SASRec epoch, evaluation) and, when its files are there,
    LightGCN on Gowalla."""
    dataset = ML1M(download=False)
    raw, load_s = timed(lambda: dataset.load(args.data_dir))
    split, split_s = timed(lambda: LeaveOneOut()(raw))
    dm = RecDataModule(dataset, LeaveOneOut(), data_dir=args.data_dir, batch_size=128, eval_batch_size=1024)
    dm.split = split
    dm._eval = {stage: dm._eval_tables(stage) for stage in ("val", "test")}
    model = SASRec(split.n_items, embedding_dim=64, num_blocks=2, num_heads=1, max_len=200, dropout=0.2)
    view, view_s = timed(lambda: model.make_view(split))
    dm.attach(view)
    sampler, loss = FullSampler(), CE()
    for part in (model, sampler, loss):
        part.setup(split)
    module = RecModule(model, loss, sampler, optimizer=None, n_items=split.n_items)

    results = {"load_s": load_s, "split_s": split_s, "load_and_split_s": load_s + split_s, "sequence_view_s": view_s}
    results.update(bench_training(module, dm, args.steps))
    results.update(profile_sasrec_epoch(module, dm))
    results.update(bench_loss_steps(split, dm))
    results.update(bench_eval(module, dm))
    results.update(bench_neumf_eval(split, dm))
    results.update(bench_wide_deep_eval(split, dm))
    if not args.no_gowalla and (Path(args.data_dir) / "gowalla" / "train.txt").exists():
        results.update(bench_lightgcn_gowalla(args.data_dir))
    return results


if __name__ == "__main__":
    main()
