"""``experiments/gsasrec_port_users.py``: the port's validation users are found by their
sequences, and NDCG@10 is computed over the full catalogue with the history excluded."""

import math

import pytest
import torch

from experiments.gsasrec_port_users import ndcg_at_10, port_validation_users, read_sequences


def write_port_files(root, lines_in, lines_out):
    (root / "val").mkdir(parents=True)
    (root / "val" / "input.txt").write_text("".join(f"{' '.join(map(str, s))}\n" for s in lines_in))
    (root / "val" / "output.txt").write_text("".join(f"{i}\n" for i in lines_out))


def test_port_users_are_matched_by_their_sequences(tmp_path):
    (tmp_path / "ml-1m.txt").write_text("1 1\n1 2\n1 3\n1 4\n2 2\n2 3\n2 4\n3 4\n3 1\n3 2\n")
    seqs = read_sequences(tmp_path / "ml-1m.txt")
    assert seqs == {1: [1, 2, 3, 4], 2: [2, 3, 4], 3: [4, 1, 2]}
    write_port_files(tmp_path / "port", [[4], [1, 2]], [1, 3])  # user 3, then user 1
    assert port_validation_users(tmp_path / "port", seqs) == [3, 1]


def test_an_unknown_port_sequence_or_a_missing_file_is_a_one_line_error(tmp_path):
    seqs = {1: [1, 2, 3, 4]}
    write_port_files(tmp_path / "port", [[1, 2]], [4])  # the input matches, the target does not
    with pytest.raises(SystemExit, match="line 1 of the port's val files matches no user"):
        port_validation_users(tmp_path / "port", seqs)
    with pytest.raises(SystemExit, match="not found; pass the port's datasets/ml1m folder"):
        port_validation_users(tmp_path / "elsewhere", seqs)


class FixedScores:
    """A stand-in model: 5 items, every user's query scores item i as ``scores[i]``."""

    n_items, max_len = 5, 3
    scores = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])

    def item_embeddings(self):
        return torch.diag(self.scores)  # [I, I]: query ones -> scores

    def user_queries(self, inputs):
        assert inputs["input"].shape[1] == self.max_len
        return torch.ones(inputs["input"].shape[0], self.n_items)


def test_ndcg_excludes_the_history_and_ranks_over_all_items():
    # 1-based ids; user 1 targets item 3 (id 2) with items 1, 2 (ids 0, 1) in its history:
    # they are excluded, so it ranks first. User 2 targets item 5 after item 4: ids 0-2 rank
    # above it, rank 3 (0-based). Validation drops the last item (drop_last=2 targets the
    # second-to-last).
    seqs = {1: [1, 2, 3, 9], 2: [4, 5, 9]}
    got = ndcg_at_10(FixedScores(), seqs, [1, 2], drop_last=2)
    assert got == pytest.approx((1 / math.log2(2) + 1 / math.log2(5)) / 2)
