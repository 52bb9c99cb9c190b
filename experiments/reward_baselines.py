"""Reference rewards of the retrieval reward service on real data (README "Reward service").

For each dataset, on every test row (the user's training + validation history, the test
target), with the encoder of ``conf/serve/encoder/<name>.yaml``:

* **oracle**: the generated text is the target's own item text. Its reward is the
  ceiling: items whose text equals the target's tie with it and rank above it
  (pessimistic ties). ``ceiling`` is that bound computed from the texts alone.
* **zero-shot**: the generated text is the history prompt itself (``PromptGenerator``,
  the last 10 items): what a generator earns by repeating its input.

Each is rewarded over the full catalogue (the history masked) and over the target plus
99 negatives pre-sampled by ``RecommendationDataset`` (seed 42), as NDCG@10, HR@10 and
MRR@10 (means over test rows).

Usage: ``python -m experiments.reward_baselines --data ml1m beauty --encoder minilm``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recsys.config import CONF_DIR
from recsys.retrieval.data import RecommendationDataset, load_split, load_texts
from recsys.retrieval.prompts import PromptGenerator
from recsys.retrieval.rewards import rewards_from_scores
from recsys.retrieval.service import RetrievalService

K = 10
TYPES = {"ndcg@10": "ndcg", "hr@10": "hit", "mrr@10": "mrr"}


def encoder_from_config(name: str):
    return instantiate(OmegaConf.load(CONF_DIR / "serve" / "encoder" / f"{name}.yaml"))


def reward_table(service, name, texts, rows, histories, batch: int = 256) -> dict[str, dict[str, float]]:
    """Mean rewards of ``texts`` (one per row) in full-catalogue and 1+99 modes."""
    sums = {mode: {m: 0.0 for m in TYPES} for mode in ("full", "sampled99")}
    n = len(texts)
    for lo in range(0, n, batch):
        chunk = texts[lo : lo + batch]
        targets = rows.target[lo : lo + batch]  # [b]
        full = service.calculate_reward(
            chunk, dataset_name=name, targets=targets, histories=histories[lo : lo + batch]
        )  # [b, I]
        sampled = service.calculate_reward(
            chunk, dataset_name=name, targets=targets, neg_items=rows.neg_items[lo : lo + batch]
        )  # [b, 100]
        for mode, scores, columns in (("full", full, targets), ("sampled99", sampled, torch.zeros_like(targets))):
            for metric, kind in TYPES.items():
                sums[mode][metric] += float(rewards_from_scores(scores, columns, kind, K).sum())
    return {mode: {m: v / n for m, v in values.items()} for mode, values in sums.items()}


def ceiling(item_texts: list[str], rows) -> dict[str, float]:
    """NDCG@10 / HR@10 / MRR@10 if the target's own text always scored highest: its rank is
    1 + the number of other non-history items with the same text."""
    index: dict[str, int] = {}
    text_id = torch.tensor([index.setdefault(t, len(index)) for t in item_texts])  # [I]
    same = torch.bincount(text_id)[text_id[rows.target]] - 1  # [R] other items sharing the text
    # items of the history that share the text are masked: take them out of the count
    hist_rows = torch.repeat_interleave(torch.arange(rows.target.numel()), rows.history.indptr.diff())
    hist_same = (text_id[rows.history.items] == text_id[rows.target][hist_rows]) & (
        rows.history.items != rows.target[hist_rows]
    )
    # a repeated history item is masked once: count distinct (row, item) pairs
    pairs = torch.unique(hist_rows[hist_same] * len(item_texts) + rows.history.items[hist_same])
    masked = torch.bincount(pairs // len(item_texts), minlength=rows.target.numel())
    rank = (1 + same - masked).float()  # [R]
    inside = rank <= K
    return {
        "ndcg@10": float((inside / torch.log2(rank + 1)).mean()),
        "hr@10": float(inside.float().mean()),
        "mrr@10": float((inside / rank).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", default=["ml1m", "beauty"])
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "recsys" / "embeddings"))
    parser.add_argument("--out", default="bench_results/reward_baselines.json")
    args = parser.parse_args()
    encoder = encoder_from_config(args.encoder)
    results = {}
    for name in args.data:
        start = time.perf_counter()
        item_texts = load_texts(name)
        split, _ = load_split(name)
        rows = RecommendationDataset(split, "test", num_negs=99, seed=42)
        prompts = PromptGenerator(item_texts, k=10)
        texts = item_texts.texts()
        service = RetrievalService(encoder, item_texts={name: texts}, cache_dir=args.cache_dir)
        history = rows.histories()
        oracle_texts = [texts[int(t)] or "(no text)" for t in rows.target]
        zero_shot = [prompts(h) for h in history]
        results[name] = {
            "rows": len(rows),
            "items": len(texts),
            "items_sharing_text": item_texts.n_shared(),
            "ceiling_full": ceiling(texts, rows),
            "oracle": reward_table(service, name, oracle_texts, rows, history),
            "zero_shot_prompt": reward_table(service, name, zero_shot, rows, history),
            "seconds": time.perf_counter() - start,
        }
        print(json.dumps({name: results[name]}, indent=1), flush=True)
    results["encoder"] = args.encoder
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
