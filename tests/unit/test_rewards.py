"""RecRewardFunction: rewards are the evaluator's metrics on the same ranks, ties are
pessimistic, group normalization, and TRL's call shape (issue 13, item 4)."""

from __future__ import annotations

import math

import pytest
import torch

from recsys.errors import ConfigError
from recsys.metrics.evaluator import RankingEvaluator
from recsys.retrieval.encoders.base import TextEncoder
from recsys.retrieval.rewards import RecRewardFunction, group_normalize, rewards_from_scores
from recsys.retrieval.service import RetrievalService


class FixedScores:
    """A stand-in service that returns given full-catalogue scores (history masked)."""

    def __init__(self, scores: torch.Tensor) -> None:
        self.scores = scores
        self.calls = 0

    def calculate_reward(self, texts, dataset_name=None, targets=None, neg_items=None, histories=None):
        self.calls += 1
        rows = torch.tensor([int(t.split()[-1]) for t in texts])  # "text <row>" picks a score row
        scores = self.scores[rows].clone()  # [B, I]
        if histories is not None:
            for b, history in enumerate(histories):
                for item in history:
                    if item != int(targets[b]):
                        scores[b, item] = float("-inf")
        if neg_items is not None:
            columns = torch.cat([torch.as_tensor(targets).view(-1, 1), torch.as_tensor(neg_items)], 1)
            return scores.gather(1, columns)
        return scores


class ConstantEncoder(TextEncoder):
    name = "constant"
    dim = 4

    def fingerprint(self) -> str:
        return "constant"

    def _encode(self, texts, progress: bool = False) -> torch.Tensor:
        return torch.full((len(texts), 4), 0.5)  # [N, 4] unit rows, the same for every text


def test_rewards_equal_the_evaluators_metrics_on_the_same_ranks():
    gen = torch.Generator().manual_seed(0)
    b, n, k = 64, 50, 10
    scores = torch.randint(0, 8, (b, n), generator=gen).float()  # many ties
    targets = torch.randint(0, n, (b,), generator=gen)
    histories = [[int(i) for i in torch.randint(0, n, (5,), generator=gen)] for _ in range(b)]
    texts = [f"text {i}" for i in range(b)]

    evaluator = RankingEvaluator([k], n)
    rows = torch.repeat_interleave(torch.arange(b), 5)
    items = torch.tensor(histories).view(-1)
    keep = items != targets[rows]
    batch = {"user": torch.arange(b), "target": targets.view(-1, 1), "exclude_row": rows[keep],
             "exclude_item": items[keep]}
    evaluator.update(scores.clone(), batch, "test")
    table = evaluator.per_user_table()

    service = FixedScores(scores)
    for reward_type, metric in (("ndcg", f"test/ndcg@{k}"), ("hit", f"test/hr@{k}")):
        fn = RecRewardFunction(dataset_name="x", reward_type=reward_type, k=k, service=service)
        got = torch.tensor(fn(generated_texts=texts, targets=targets.tolist(), histories=histories))
        torch.testing.assert_close(got, table[metric])
    fn = RecRewardFunction(dataset_name="x", reward_type="mrr", k=k, service=service)
    mrr = torch.tensor(fn(generated_texts=texts, targets=targets, histories=histories))
    within = table[f"test/hr@{k}"] > 0
    torch.testing.assert_close(mrr, torch.where(within, table["test/mrr"], torch.zeros(b)))


def test_sampled_rewards_equal_the_evaluators_sampled_metrics():
    gen = torch.Generator().manual_seed(1)
    b, n, k = 32, 40, 5
    scores = torch.randn(b, n, generator=gen)
    targets = torch.arange(b) % n
    negs = torch.stack([torch.randperm(n - 1, generator=gen)[:9] for _ in range(b)])  # [B, 9]
    negs = negs + (negs >= targets.view(-1, 1)).long()  # skip the target
    evaluator = RankingEvaluator([k], n)
    batch = {"user": torch.arange(b), "target": targets.view(-1, 1), "exclude_row": torch.empty(0, dtype=torch.long),
             "exclude_item": torch.empty(0, dtype=torch.long), "sampled9": negs}
    evaluator.update(scores.clone(), batch, "test")
    fn = RecRewardFunction(dataset_name="x", reward_type="ndcg", k=k, service=FixedScores(scores))
    got = torch.tensor(fn(generated_texts=[f"t {i}" for i in range(b)], targets=targets, neg_items=negs))
    torch.testing.assert_close(got, evaluator.per_user_table()[f"test_sampled9/ndcg@{k}"])


def test_hand_checked_rewards():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.1]])  # target column 2 has rank 3
    column = torch.tensor([2])
    assert rewards_from_scores(scores, column, "ndcg", 10).item() == pytest.approx(1 / math.log2(4))
    assert rewards_from_scores(scores, column, "hit", 2).item() == 0.0
    assert rewards_from_scores(scores, column, "mrr", 10).item() == pytest.approx(1 / 3)
    assert rewards_from_scores(scores, column, "mrr", 2).item() == 0.0
    mixed = (1 / math.log2(4) + 1 + 1 / 3) / 3
    assert rewards_from_scores(scores, column, "mixed", 3).item() == pytest.approx(mixed)
    tie = torch.tensor([[0.5, 0.5, 0.5]])  # ties rank the target last
    assert rewards_from_scores(tie, torch.tensor([0]), "mrr", 10).item() == pytest.approx(1 / 3)


@pytest.mark.parametrize("reward_type", ["ndcg", "hit", "mrr", "mixed"])
def test_a_constant_encoder_earns_nothing(reward_type):
    items = [f"item {i}" for i in range(30)]
    service = RetrievalService(ConstantEncoder(), item_texts={"toy": items})
    fn = RecRewardFunction(dataset_name="toy", reward_type=reward_type, k=10, service=service)
    texts = ["anything", "item 3"]
    assert fn(generated_texts=texts, targets=[3, 4]) == [0.0, 0.0]
    assert fn(generated_texts=texts, targets=[3, 4], neg_items=[list(range(10, 30))] * 2) == [0.0, 0.0]


def test_empty_generations_get_zero_without_a_call():
    service = FixedScores(torch.tensor([[1.0, 0.0, 0.0]]))
    fn = RecRewardFunction(dataset_name="x", reward_type="hit", k=1, service=service)
    assert fn(generated_texts=["", "t 0", "  "], targets=[0, 0, 0]) == [0.0, 1.0, 0.0]
    assert fn(generated_texts=[""], targets=[0]) == [0.0] and service.calls == 1


def test_group_normalization_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 2.0])
    out = group_normalize(rewards, ["a", "a", "b", "b", "c"])
    std = math.sqrt(0.5)  # unbiased std of [1, 0]
    expected = torch.tensor([0.5 / (std + 1e-4), -0.5 / (std + 1e-4), 0.0, 0.0, 0.0])
    torch.testing.assert_close(out, expected)


def test_trl_call_shape_with_group_normalization():
    """The call ``trl.GRPOTrainer`` makes: prompts, completions, completion_ids, every other
    dataset column under its own name, and ``trainer_state``; a list of floats back."""
    scores = torch.tensor([[0.9, 0.1, 0.2], [0.1, 0.9, 0.2], [0.3, 0.2, 0.1], [0.1, 0.2, 0.9]])
    fn = RecRewardFunction(dataset_name="x", reward_type="hit", k=1, normalize="group", service=FixedScores(scores))
    assert fn.__name__ == "rec_hit@1"
    prompts = ["p0", "p0", "p1", "p1"]  # two prompts, two completions each (num_generations=2)
    completions = ["t 0", "t 1", [{"role": "assistant", "content": "t 2"}], [{"role": "assistant", "content": "t 3"}]]
    out = fn(
        prompts=prompts, completions=completions, completion_ids=[[1], [2], [3], [4]],
        target=[0, 0, 2, 2], history=[[1], [1], [], []], neg_items=[[1, 2], [1, 2], [0, 1], [0, 1]],
        user_id=[7, 7, 8, 8], trainer_state=object(),
    )
    assert isinstance(out, list) and all(isinstance(v, float) for v in out)
    raw = [1.0, 0.0, 0.0, 1.0]  # hit@1 of each completion
    z = 0.5 / (math.sqrt(0.5) + 1e-4)
    assert out == pytest.approx([z if r else -z for r in raw])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(reward_type="ndgc"), "unknown reward_type 'ndgc'"),
        (dict(normalize="batch"), "unknown normalize 'batch'"),
        (dict(k=0), "k must be a positive integer"),
    ],
)
def test_bad_settings_fail_with_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RecRewardFunction(dataset_name="x", **kwargs)


def test_group_normalization_without_prompts_needs_a_group_size():
    fn = RecRewardFunction(dataset_name="x", reward_type="hit", k=1, normalize="group",
                           service=FixedScores(torch.eye(3)))
    with pytest.raises(ConfigError, match="group normalization needs prompts, or a group_size"):
        fn(generated_texts=["t 0", "t 1", "t 2"], targets=[0, 1, 2])
    fn.group_size = 3
    expected = group_normalize(torch.tensor([1.0, 1.0, 0.0]), [0, 0, 0]).tolist()  # hits of rows 0, 1 only
    assert fn(generated_texts=["t 0", "t 1", "t 2"], targets=[0, 1, 0]) == pytest.approx(expected)
    with pytest.raises(ConfigError, match="targets has 2 entries"):
        fn(generated_texts=["t 0", "t 1", "t 2"], targets=[0, 1])
