"""Bounded memory on a large synthetic catalogue (issue 17; part of ``make bench``).

A matrix-factorization model (d=64) over 1,000,000 items, untrained, on this machine's
default device and threads. Prints, for the chunked paths (``loss.item_chunk``,
``eval.item_chunk``, 65,536 items at a time) and for the plain ones that score
``[rows, I]`` at once:

* one training step of full-softmax cross-entropy (``RecModule.objective`` then
  ``backward``; no optimizer step, whose Adam state is ``2 x I x D`` either way) for 1,024
  rows, chunked; and for 256 rows, chunked and plain (the plain step for 1,024 rows needs
  about 11 GB; it is measured too when the machine has more than 3 times its estimate free);
* one full-ranking evaluation of 10,000 users (batches of 1,024, one target and 20 excluded
  items each, every metric; ``RecModule.test_step`` then ``compute``), chunked and plain.

Each figure comes from a fresh subprocess: time is the wall time of the second of two
steps (the first one warms the allocator up) or of the one evaluation; peak memory is the
process's peak resident set (``ru_maxrss``) minus its resident set just before the
measured work, so it counts everything the work allocates (scores, softmax, gradients,
including the 256 MB gradient of the item table) and not the model, the data or torch
itself. On a GPU it is ``torch.cuda.max_memory_allocated`` minus the memory allocated
before. Usage: ``python -m experiments.bench_bounded [--items N] [--item-chunk N]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from functools import partial

import torch

ITEMS, DIM, CHUNK, USERS, EVAL_BATCH, EXCLUDED = 1_000_000, 64, 65_536, 10_000, 1024, 20


def _rss_mb() -> float:
    """Current resident set of this process (Linux)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _available_mb() -> float:
    with open("/proc/meminfo") as f:
        line = next(line for line in f if line.startswith("MemAvailable:"))
    return int(line.split()[1]) / 1024


def _module(n_users: int, n_items: int, item_chunk: int | None, eval_item_chunk: int | None, device: str):
    from recsys.losses.ce import CE
    from recsys.models.mf import MF
    from recsys.module import RecModule
    from recsys.samplers.full import FullSampler

    torch.manual_seed(0)
    model = MF(n_users, n_items, embedding_dim=DIM).to(device)
    return RecModule(model, CE(item_chunk=item_chunk), FullSampler(), partial(torch.optim.Adam), n_items=n_items,
                     ks=[10, 20], eval_item_chunk=eval_item_chunk).to(device)


def _measure(work, device: str, repeats: int) -> dict[str, float]:
    """Seconds of the last of ``repeats`` calls of ``work`` and the peak memory they added."""
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        before = _rss_mb()
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _peak_mb()
    return {"s": seconds, "peak_mb": peak - before}


def case_train(rows: int, n_items: int, item_chunk: int | None, device: str) -> dict[str, float]:
    module = _module(rows, n_items, item_chunk, None, device)
    g = torch.Generator().manual_seed(1)
    batch = {"user": torch.arange(rows).to(device), "item": torch.randint(0, n_items, (rows,), generator=g).to(device)}

    def step():
        module.zero_grad(set_to_none=True)
        module.objective(batch).total.backward()

    return _measure(step, device, repeats=2)


def case_eval(n_users: int, n_items: int, item_chunk: int | None, device: str) -> dict[str, float]:
    module = _module(n_users, n_items, None, item_chunk, device).eval()
    g = torch.Generator().manual_seed(2)
    batches = []
    for lo in range(0, n_users, EVAL_BATCH):
        users = torch.arange(lo, min(lo + EVAL_BATCH, n_users))
        target = torch.randint(0, n_items, (users.numel(), 1), generator=g)
        excluded = (target + torch.randint(1, n_items, (users.numel(), EXCLUDED), generator=g)) % n_items  # never the target
        batch = {"user": users, "target": target, "exclude_row": torch.arange(users.numel()).repeat_interleave(EXCLUDED),
                 "exclude_item": excluded.flatten()}
        batches.append({k: v.to(device) for k, v in batch.items()})

    @torch.no_grad()
    def evaluate():
        module.evaluator.reset()
        for i, batch in enumerate(batches):
            module.test_step(batch, i)
        return module.evaluator.compute("test")

    return _measure(evaluate, device, repeats=1)


def run_case(args: list[str]) -> dict[str, float]:
    """One case in a fresh process (its own peak memory); its figures as a dict."""
    command = [sys.executable, "-m", "experiments.bench_bounded", "--case", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_bounded(n_items: int = ITEMS, item_chunk: int = CHUNK, device: str | None = None) -> dict[str, float]:
    """The figures of the module docstring, keys ``bounded_*``."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    chunk = str(item_chunk)
    results: dict[str, float] = {"bounded_items": n_items, "bounded_item_chunk": item_chunk}
    plain_rows = [1024, 256] if device == "cuda" or _available_mb() > 3 * 12 * 1024 * n_items / ITEMS else [256]
    cases = {
        "train_r1024_chunked": ["train", "1024", chunk],
        "train_r256_chunked": ["train", "256", chunk],
        **{f"train_r{r}_plain": ["train", str(r), "none"] for r in plain_rows},
        f"eval_{USERS // 1000}k_users_chunked": ["eval", str(USERS), chunk],
        f"eval_{USERS // 1000}k_users_plain": ["eval", str(USERS), "none"],
    }
    for name, args in cases.items():
        figures = run_case([*args, "--items", str(n_items), "--device", device])
        results[f"bounded_{name}_s"] = figures["s"]
        results[f"bounded_{name}_peak_mb"] = figures["peak_mb"]
    for what in ("train_r256", f"eval_{USERS // 1000}k_users"):
        results[f"bounded_{what}_peak_ratio_plain_chunked"] = (
            results[f"bounded_{what}_plain_peak_mb"] / results[f"bounded_{what}_chunked_peak_mb"])
        results[f"bounded_{what}_time_ratio_chunked_plain"] = (
            results[f"bounded_{what}_chunked_s"] / results[f"bounded_{what}_plain_s"])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", nargs=3, metavar=("KIND", "ROWS", "CHUNK"), help="run one case (internal)")
    parser.add_argument("--items", type=int, default=ITEMS)
    parser.add_argument("--item-chunk", type=int, default=CHUNK)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    if args.case:
        kind, rows, chunk = args.case
        run = case_train if kind == "train" else case_eval
        print(json.dumps(run(int(rows), args.items, None if chunk == "none" else int(chunk), args.device or "cpu")))
        return
    for key, value in bench_bounded(args.items, args.item_chunk, args.device).items():
        print(f"{key:52s} {value:12.3f}" if isinstance(value, float) else f"{key:52s} {value:12d}")


if __name__ == "__main__":
    main()
