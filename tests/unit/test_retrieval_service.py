"""RetrievalService.calculate_reward: the two modes agree, histories are masked, and every
bad input is one line (issue 13, item 3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recsys.errors import ConfigError
from recsys.retrieval.encoders.hashing import HashingEncoder
from recsys.retrieval.service import RetrievalService

ITEMS = ["red apple", "green apple", "red car", "blue car", "old book", "new book", "apple pie", "car book"]
QUERIES = ["red apple pie", "a blue car", "new old book"]


@pytest.fixture(scope="module")
def service():
    return RetrievalService(HashingEncoder(dim=64), item_texts={"toy": ITEMS, "other": ITEMS[:5]})


def test_full_mode_is_the_cosine_of_the_encodings(service):
    scores = service.calculate_reward(QUERIES, dataset_name="toy")
    encoder = HashingEncoder(dim=64)
    expected = encoder.encode(QUERIES) @ encoder.encode(ITEMS).T  # [B, I]
    assert scores.shape == (3, len(ITEMS))
    torch.testing.assert_close(scores, expected)
    assert torch.allclose(encoder.encode(ITEMS).norm(dim=1), torch.ones(len(ITEMS)))


def test_negatives_mode_rows_equal_the_same_columns_of_full_mode(service):
    targets = [0, 3, 5]
    negs = [[1, 2, 7], [0, 6, 2], [4, 7, 3]]
    full = service.calculate_reward(QUERIES, dataset_name="toy")
    sampled = service.calculate_reward(QUERIES, dataset_name="toy", targets=targets, neg_items=negs)
    assert sampled.shape == (3, 4)
    columns = torch.cat([torch.tensor(targets).unsqueeze(1), torch.tensor(negs)], 1)
    torch.testing.assert_close(sampled, full.gather(1, columns))
    as_tensor = service.calculate_reward(
        QUERIES, dataset_name="toy", targets=torch.tensor(targets), neg_items=torch.tensor(negs)
    )
    torch.testing.assert_close(as_tensor, sampled)


def test_full_mode_masks_each_history_except_the_target(service):
    histories = [[1, 2, 0], [], [4, 4]]
    targets = [0, 3, 5]
    full = service.calculate_reward(QUERIES, dataset_name="toy")
    masked = service.calculate_reward(QUERIES, dataset_name="toy", targets=targets, histories=histories)
    expected = full.clone()
    expected[0, [1, 2]] = float("-inf")  # item 0 is row 0's target: kept
    expected[2, 4] = float("-inf")
    torch.testing.assert_close(masked, expected)
    no_targets = service.calculate_reward(QUERIES, dataset_name="toy", histories=histories)
    assert no_targets[0, 0] == float("-inf")


def test_one_service_holds_several_datasets(service):
    assert service.datasets() == {"toy": 8, "other": 5}
    assert service.calculate_reward(QUERIES, dataset_name="other").shape == (3, 5)
    single = RetrievalService(HashingEncoder(dim=16), item_texts={"toy": ITEMS})
    assert single.calculate_reward(QUERIES).shape == (3, 8)  # the only dataset is the default


def test_precomputed_vectors_are_used_as_given():
    vectors = F.normalize(torch.randn(4, 16), dim=1)
    svc = RetrievalService(HashingEncoder(dim=16), item_vectors={"v": vectors})
    torch.testing.assert_close(svc.calculate_reward(["x y"]), HashingEncoder(dim=16).encode(["x y"]) @ vectors.T)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(texts=QUERIES, dataset_name="nope"), "unknown dataset 'nope': this service holds toy, other"),
        (dict(texts=QUERIES), "dataset_name is needed"),
        (dict(texts=QUERIES, dataset_name="toy", targets=[0, 1, 8], neg_items=[[2], [3], [4]]),
         "targets holds item id 8, outside this dataset's ids 0..7"),
        (dict(texts=QUERIES, dataset_name="toy", targets=[0, 1, 2], neg_items=[[2], [3], [-1]]),
         "neg_items holds item id -1"),
        (dict(texts=QUERIES, dataset_name="toy", histories=[[0], [9], []]), "histories holds item id 9"),
        (dict(texts=QUERIES, dataset_name="toy", targets=[0, 1, 2], neg_items=[[3, 4], [5], [6, 7]]),
         "neg_items is ragged: rows have [1, 2] items"),
        (dict(texts=QUERIES, dataset_name="toy", targets=[0, 1, 2], neg_items=[[3, 4], [5, 1], [6, 7]]),
         "row 1's target 1 is among its own neg_items"),
        (dict(texts=QUERIES, dataset_name="toy", neg_items=[[3], [4], [5]]), "neg_items needs targets"),
        (dict(texts=[], dataset_name="toy"), "texts is empty"),
        (dict(texts=["ok", "  "], dataset_name="toy"), "texts[1] is empty"),
        (dict(texts=["ok", 3], dataset_name="toy"), "texts[1] is a int, not a string"),
        (dict(texts="one string", dataset_name="toy"), "got one string"),
        (dict(texts=QUERIES, dataset_name="toy", targets=[0, 1]), "targets has 2 rows but there are 3 texts"),
        (dict(texts=QUERIES, dataset_name="toy", targets=[0, 1, 2], neg_items=[[3], [4]]),
         "neg_items has 2 rows but there are 3 texts"),
        (dict(texts=QUERIES, dataset_name="toy", histories=[[0]]), "histories has 1 rows but there are 3 texts"),
        (dict(texts=QUERIES, dataset_name="toy", targets=[0, 1, 2], neg_items=[3, 4, 5]),
         "neg_items must be a [B, N] table"),
    ],
)
def test_bad_calls_fail_with_one_line(service, kwargs, message):
    texts = kwargs.pop("texts")
    with pytest.raises(ConfigError) as info:
        service.calculate_reward(texts, **kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_service_without_datasets_is_refused():
    with pytest.raises(ConfigError, match="at least one dataset"):
        RetrievalService(HashingEncoder(dim=8), item_texts={})


class BatchNoise(HashingEncoder):
    """A hashing encoder whose rows, like a batched model's, depend slightly on the batch."""

    def _encode(self, texts, progress):
        out = super()._encode(texts, progress)  # [N, D]
        return torch.nn.functional.normalize(out + 1e-4 * len(texts) * torch.arange(len(texts)).unsqueeze(1), dim=1)


def test_items_with_the_same_text_tie_exactly_so_the_target_ranks_below_its_twins():
    """Equal texts are encoded once (bit-identical rows): a perfect description of an item
    that shares its text with two others ranks third, never first by float noise."""
    from recsys.retrieval.rewards import RecRewardFunction

    items = ["lipstick red", "shampoo", "lipstick red", "mascara", "lipstick red"]
    service = RetrievalService(BatchNoise(dim=64), item_texts={"toy": items})
    vectors = service.catalogs["toy"]
    assert torch.equal(vectors[0], vectors[2]) and torch.equal(vectors[0], vectors[4])
    for target in (0, 2, 4):
        hit1 = RecRewardFunction(dataset_name="toy", reward_type="hit", k=1, service=service)
        mrr = RecRewardFunction(dataset_name="toy", reward_type="mrr", k=10, service=service)
        assert hit1(generated_texts=["lipstick red"], targets=[target]) == [0.0]
        assert mrr(generated_texts=["lipstick red"], targets=[target]) == pytest.approx([1 / 3])
