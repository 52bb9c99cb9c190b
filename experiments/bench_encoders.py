"""Text encoder speed on this CPU (issue 13, item 2).

Prints, as one JSON object: texts per second (wall and CPU) of :class:`MiniLMEncoder` and
:class:`HashingEncoder` on (a) the 3,416 ML-1M item texts (``Title (Year) | Genre, Genre``,
from ``ml-1m/item_meta.tsv``) and (b) 256 prompts of 10 such lines under a header (~150
words, ~230 word pieces), the MiniLM load time, and the peak resident memory of the
process after importing torch, after loading MiniLM and after each encoding. Best of
``--repeats`` timed passes (default 1) after a warm-up; the hashing encoder's first pass is
also given (its n-gram hash memo empty).

Usage: ``python -m experiments.bench_encoders [--threads 2] [--data ../shared/datasets]``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from pathlib import Path

import torch

from recsys.retrieval.encoders import hashing
from recsys.retrieval.encoders.hashing import HashingEncoder
from recsys.retrieval.encoders.minilm import MiniLMEncoder

REPO = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def item_texts(data: Path) -> list[str]:
    lines = (data / "ml-1m" / "item_meta.tsv").read_text(encoding="utf-8").splitlines()[1:]
    rows = [line.split("\t") for line in lines]
    return [f"{title} | {genres.replace('|', ', ')}" for _, _, title, genres in rows]


def prompts(items: list[str], n: int = 256, lines: int = 10, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    head = ("You are a movie recommender. Here is what one user watched, oldest first, with the "
            "rating they gave. Name the one movie they will watch next, as Title (Year).\n")
    return [
        head + "\n".join(f"{i + 1}. {t}, rated {rng.randint(1, 5)} of 5 stars" for i, t in enumerate(picks))
        for picks in (rng.sample(items, lines) for _ in range(n))
    ]


def texts_per_s(encoder, texts: list[str], repeats: int) -> tuple[float, float]:
    """Texts per wall second and per CPU second of the process (all threads): on a shared
    machine the second is the steadier figure (``threads`` times it bounds the first)."""
    best, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        encoder.encode(texts)
        best, cpu = min(best, time.perf_counter() - start), min(cpu, time.process_time() - start_cpu)
    return len(texts) / best, len(texts) / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    items = item_texts(args.data)
    asks = prompts(items)
    out = {"threads": args.threads, "n_items": len(items), "n_prompts": len(asks),
           "prompt_words": sum(len(p.split()) for p in asks) / len(asks), "rss_mb_torch": rss_mb()}

    h = HashingEncoder()
    hashing._hash64.cache_clear()
    start = time.perf_counter()
    h.encode(items)
    out["hashing_items_cold_per_s"] = len(items) / (time.perf_counter() - start)
    out["hashing_items_per_s"], out["hashing_items_per_cpu_s"] = texts_per_s(h, items, args.repeats)
    out["hashing_prompts_per_s"], out["hashing_prompts_per_cpu_s"] = texts_per_s(h, asks, args.repeats)

    m = MiniLMEncoder(batch_size=args.batch_size)
    start = time.perf_counter()
    m.model  # noqa: B018 - load
    out["minilm_load_s"] = time.perf_counter() - start
    out["rss_mb_minilm_loaded"] = rss_mb()
    m.encode(items[:64])
    out["minilm_items_per_s"], out["minilm_items_per_cpu_s"] = texts_per_s(m, items, args.repeats)
    out["rss_mb_after_items"] = rss_mb()
    out["minilm_prompts_per_s"], out["minilm_prompts_per_cpu_s"] = texts_per_s(m, asks, args.repeats)
    pieces = [len(ids) for ids in m.model.tokenizer(asks)["input_ids"]]
    out["minilm_prompt_pieces"] = sum(pieces) / len(pieces)
    out["minilm_prompts_cut"] = sum(n > m.max_seq_length for n in pieces)
    out["rss_mb_after_encoding"] = rss_mb()
    out["loadavg"] = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else None
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()}, indent=1))


if __name__ == "__main__":
    main()
