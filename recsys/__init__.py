"""recsys: a Hydra + Lightning framework for training recommenders and comparing their losses."""

import os

# Large CPU tensors (SASRec's [rows, items] scores: 180 MB a step on ml1m) on transparent
# huge pages: torch reads this once, at its first allocation, so it is set before torch is
# imported. It cut a SASRec ml1m training step by a quarter (page faults of fresh memory);
# THP_MEM_ALLOC_ENABLE=0 in the environment turns it off.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
