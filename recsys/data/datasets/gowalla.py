"""Gowalla check-ins with the fixed train/test split of LightGCN.

Source: X. He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for
Recommendation", SIGIR 2020, github.com/gusye1234/LightGCN-PyTorch (``data/gowalla/``); the
check-ins are from E. Cho et al., "Friendship and Mobility", KDD 2011 (10-core subset).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.data.datasets.base import Dataset, Stats
from recsys.data.datasets.parsing import make_interactions, no_interactions, read_sequences
from recsys.data.files import RemoteFile
from recsys.data.interactions import RawData

_UPSTREAM = "https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/947ca2b3b1d2d3545b114145710cb06c4e57b3d2/data/gowalla/"


class Gowalla(Dataset):
    """Gowalla, LightGCN split: ``train.txt`` and ``test.txt``.

    Each line is ``user item item ...`` with 0-based ids (a line may name a user and no
    item). There are no timestamps: ``time`` is the position in the line, and test events
    are numbered after the user's training events so that train + test stays in order.
    The training file is verified by its statistics, not its bytes (``sha256=None``): the
    upstream within-line item order differs from the copy the statistics were taken on.
    """

    name = "gowalla"
    subdir = "gowalla"
    files = (
        RemoteFile("train.txt", _UPSTREAM + "train.txt", None),
        RemoteFile(
            "test.txt",
            _UPSTREAM + "test.txt",
            "099a2a73924e4b754dc6efd730d764f492321b53c38eb93298850c83acf57be3",
        ),
    )
    stats = Stats(users=29_858, items=40_981, interactions=1_027_370)
    source = "github.com/gusye1234/LightGCN-PyTorch (data/gowalla/)"

    def parse(self, paths: dict[str, Path]) -> RawData:
        train_lines, train_user, train_item, train_pos = read_sequences(paths["train.txt"], first_id=0)
        test_lines, test_user, test_item, test_pos = read_sequences(paths["test.txt"], first_id=0)
        for path, user in ((paths["train.txt"], train_user), (paths["test.txt"], test_user)):
            if user.size == 0:
                raise no_interactions(path)
        n_users = int(max(train_lines.max(), test_lines.max())) + 1
        n_items = int(max(train_item.max(), test_item.max())) + 1
        n_train = np.bincount(train_user, minlength=n_users)  # [U]
        train = make_interactions(train_user, train_item, train_pos, n_users, n_items)
        test = make_interactions(test_user, test_item, test_pos + n_train[test_user], n_users, n_items)
        return RawData(interactions=train, fixed_test=test)
