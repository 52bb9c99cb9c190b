"""How a gSASRec run ranks the validation users of the authors' PyTorch port (README
"gSASRec on ml1m").

The port (github.com/asash/gSASRec-pytorch) validates on 512 users drawn once into its data
files (``datasets/ml1m/val/input.txt`` and ``output.txt``) and names its checkpoint after the
best validation NDCG@10 on them (0.1974 for the released t=0.75 model). To see how far that
number is from ours because of the users rather than the model, this evaluates one of our
``experiment=gsasrec_ml1m`` checkpoints the same way on three sets of users: the port's 512
(found in ``ml-1m.txt`` by their sequences), every user, and the test targets of every
user. The validation target is a user's second-to-last item, its input the items before
it (the last ``max_len``); the items of the input are excluded from the ranking; full
ranking over all items, ranks and NDCG@10 from ``recsys.metrics.ranking`` (ties pessimistic,
as in every evaluation of ours).

Usage::

    python -m experiments.gsasrec_port_users RUN_DIR PORT_ML1M_DIR [--ckpt best.ckpt]

with ``RUN_DIR`` a run folder (``config_resolved.yaml``, ``checkpoints/``) and
``PORT_ML1M_DIR`` the port's ``datasets/ml1m``; ``ml-1m.txt`` is read from
``$RECSYS_DATA_DIR/ml-1m``.
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import torch
from omegaconf import OmegaConf

from recsys.data.datasets.parsing import read_int_columns
from recsys.metrics.ranking import metrics_from_ranks, target_ranks
from recsys.wiring import build_model


def read_sequences(path: Path) -> dict[int, list[int]]:
    """``ml-1m.txt`` (``user item`` lines in each user's order) -> {user: [items]}, 1-based ids."""
    seqs: dict[int, list[int]] = defaultdict(list)
    for user, item in read_int_columns(path, 2, "'user item' integers >= 1", low=1).tolist():
        seqs[user].append(item)
    return dict(seqs)


def port_validation_users(port_dir: Path, seqs: dict[int, list[int]]) -> list[int]:
    """The users of the port's validation files: the user whose sequence without its last
    two items is the input line and whose second-to-last item is the output line."""
    for name in ("input.txt", "output.txt"):
        if not (port_dir / "val" / name).is_file():
            raise SystemExit(f"{port_dir / 'val' / name} not found; pass the port's datasets/ml1m folder")
    inputs = [tuple(map(int, line.split())) for line in (port_dir / "val" / "input.txt").read_text().splitlines()]
    outputs = [int(line) for line in (port_dir / "val" / "output.txt").read_text().splitlines()]
    by_input = {tuple(items[:-2]): user for user, items in seqs.items()}
    users = []
    for line, (inp, out) in enumerate(zip(inputs, outputs), 1):
        user = by_input.get(inp)
        if user is None or seqs[user][-2] != out:
            raise SystemExit(f"line {line} of the port's val files matches no user of ml-1m.txt; "
                             "pass the port's datasets/ml1m folder and the ml-1m.txt it was built from")
        users.append(user)
    return users


def ndcg_at_10(model, seqs: dict[int, list[int]], users: list[int], drop_last: int, batch: int = 256) -> float:
    """Mean NDCG@10 of ``users``' item ``drop_last`` from the end, given the items before it."""
    pad, max_len = model.n_items, model.max_len
    items = model.item_embeddings()  # [I, D]
    gains = []
    for start in range(0, len(users), batch):
        chunk = users[start:start + batch]
        histories = [[i - 1 for i in seqs[u][:-drop_last]] for u in chunk]  # 0-based ids
        target = torch.tensor([seqs[u][-drop_last] - 1 for u in chunk])  # [B]
        inputs = torch.full((len(chunk), max_len), pad)  # [B, L] left-padded
        for row, history in enumerate(histories):
            tail = history[-max_len:]
            inputs[row, max_len - len(tail):] = torch.tensor(tail)
        scores = model.user_queries({"input": inputs}) @ items.T  # [B, I]
        rows = torch.cat([torch.full((len(h),), r) for r, h in enumerate(histories)])
        scores[rows, torch.tensor([i for h in histories for i in h])] = -torch.inf  # history excluded
        ranks = target_ranks(scores, target[:, None])  # [B, 1] 1-based
        gains.append(metrics_from_ranks(ranks, [10])["ndcg@10"])  # [B]
    return torch.cat(gains).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("port_dir", type=Path)
    parser.add_argument("--ckpt", default="best.ckpt")
    args = parser.parse_args()
    seqs = read_sequences(Path(os.environ.get("RECSYS_DATA_DIR", "data")) / "ml-1m" / "ml-1m.txt")
    port_users = port_validation_users(args.port_dir, seqs)
    cfg = OmegaConf.load(args.run_dir / "config_resolved.yaml")

    no_features = SimpleNamespace(user_features=None, item_features=None, feature_cardinality=None)
    facts = SimpleNamespace(n_users=len(seqs), n_items=max(max(s) for s in seqs.values()), train=no_features)
    model = build_model(cfg.model, facts)  # an ID-only SASRec (the gsasrec_ml1m runs use no side features)
    state = torch.load(args.run_dir / "checkpoints" / args.ckpt, map_location="cpu", weights_only=False)
    model.load_state_dict({k.removeprefix("model."): v for k, v in state["state_dict"].items() if k.startswith("model.")})
    model.eval()
    everyone = sorted(u for u, s in seqs.items() if len(s) >= 3)
    with torch.no_grad():
        print(f"checkpoint {args.ckpt} (epoch {state['epoch']})")
        print(f"validation NDCG@10, the port's {len(port_users)} users: {ndcg_at_10(model, seqs, port_users, 2):.4f}")
        print(f"validation NDCG@10, all {len(everyone)} users: {ndcg_at_10(model, seqs, everyone, 2):.4f}")
        print(f"test NDCG@10, all {len(everyone)} users: {ndcg_at_10(model, seqs, everyone, 1):.4f}")


if __name__ == "__main__":
    main()
