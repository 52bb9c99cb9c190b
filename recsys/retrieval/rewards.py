"""``RecRewardFunction``: NDCG / Hit / MRR @ k of generated texts, for RL (GRPO) training.

A generated text is scored against the items by the :class:`RetrievalService` (a named
Ray actor, or an in-process service), and the target's rank becomes the reward. Ranks
come from :func:`recsys.metrics.ranking.target_ranks`, the evaluator's own code, so ties
are pessimistic: an item scoring exactly as high as the target is ranked above it, and an
encoder that gives every item the same score earns 0.

Rewards (``r`` = the target's 1-based rank among the scored items):

* ``ndcg``: ``1 / log2(r + 1)`` if ``r <= k`` else 0 (the evaluator's ``ndcg@k``);
* ``hit``: 1 if ``r <= k`` else 0 (``hr@k``);
* ``mrr``: ``1 / r`` if ``r <= k`` else 0 (the evaluator's ``mrr`` cut at ``k``);
* ``mixed``: the mean of the three.

``normalize="group"`` turns the rewards of the completions of one prompt into
``(r - mean) / (std + 1e-4)`` within that group (GRPO's group-relative advantage).

Two call conventions:

* ``reward_fn(generated_texts=..., targets=..., histories=..., neg_items=...)``;
* TRL's (``trl.GRPOTrainer(reward_funcs=[reward_fn])``): ``reward_fn(prompts=...,
  completions=..., completion_ids=..., target=..., history=..., neg_items=..., **other
  dataset columns)``, completions plain strings or chat messages. Groups are the
  completions that share a prompt. Returns a list of floats.

An empty generation gets reward 0 (before normalization) without being sent to the
service.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from recsys.errors import ConfigError
from recsys.metrics.ranking import metrics_from_ranks, target_ranks

REWARD_TYPES = ("ndcg", "hit", "mrr", "mixed")
GROUP_EPS = 1e-4


def rewards_from_scores(scores: Tensor, target_columns: Tensor, reward_type: str, k: int) -> Tensor:
    """``[B]`` rewards from ``[B, C]`` scores and ``[B]`` target column indices."""
    ranks = target_ranks(scores, target_columns.view(-1, 1))  # [B, 1]
    metrics = metrics_from_ranks(ranks, [k])
    within = (ranks[:, 0] <= k).float()  # [B]
    parts = {"ndcg": metrics[f"ndcg@{k}"], "hit": metrics[f"hr@{k}"], "mrr": metrics["mrr"] * within}
    if reward_type == "mixed":
        return (parts["ndcg"] + parts["hit"] + parts["mrr"]) / 3
    return parts[reward_type]


def group_normalize(rewards: Tensor, groups: Sequence[Any]) -> Tensor:
    """``(r - mean) / (std + 1e-4)`` within each group of equal keys (a lone member gets 0)."""
    index: dict[Any, int] = {}
    group = torch.tensor([index.setdefault(g, len(index)) for g in groups], dtype=torch.long)  # [B]
    n = len(index)
    count = torch.zeros(n).index_add_(0, group, torch.ones_like(rewards))  # [G]
    mean = torch.zeros(n).index_add_(0, group, rewards) / count  # [G]
    var = torch.zeros(n).index_add_(0, group, (rewards - mean[group]) ** 2) / (count - 1).clamp(min=1)  # [G]
    return (rewards - mean[group]) / (var.sqrt()[group] + GROUP_EPS)  # [B]


class RecRewardFunction:
    """Rewards generated texts by the rank of the target item.

    Args:
        retrieval_service_name: name of the Ray actor (``python -m recsys.serve`` starts it).
        namespace: its Ray namespace.
        dataset_name: the catalogue to score against.
        reward_type: ``ndcg``, ``hit``, ``mrr`` or ``mixed``.
        k: the cut-off.
        normalize: None, or ``"group"`` for GRPO's per-prompt normalization.
        group_size: without ``prompts``, consecutive blocks of this many completions form
            a group (needed for ``normalize="group"`` in the keyword call).
        service: an in-process :class:`RetrievalService` or an actor handle to use instead
            of looking the actor up by name.
    """

    def __init__(
        self,
        retrieval_service_name: str = "RetrievalService",
        namespace: str = "rl4rec",
        dataset_name: str | None = None,
        reward_type: str = "ndcg",
        k: int = 10,
        normalize: str | None = None,
        group_size: int | None = None,
        service: Any = None,
    ) -> None:
        if reward_type not in REWARD_TYPES:
            raise ConfigError(f"unknown reward_type {reward_type!r}: use one of {', '.join(REWARD_TYPES)}")
        if normalize not in (None, "group"):
            raise ConfigError(f"unknown normalize {normalize!r}: use None or 'group'")
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        self.retrieval_service_name, self.namespace = retrieval_service_name, namespace
        self.dataset_name, self.reward_type, self.k = dataset_name, reward_type, k
        self.normalize, self.group_size = normalize, group_size
        self._service = service
        self.__name__ = f"rec_{reward_type}@{k}"  # TRL logs each reward function under its __name__

    # ------------------------------------------------------------------ calling
    def __call__(
        self,
        generated_texts: Sequence[str] | None = None,
        targets: Sequence[int] | Tensor | None = None,
        histories: Sequence[Sequence[int]] | None = None,
        neg_items: Sequence[Sequence[int]] | Tensor | None = None,
        *,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        **columns: Any,
    ) -> list[float]:
        """Rewards, one float per text (see the module docstring for both conventions)."""
        if completions is not None:  # TRL: dataset columns arrive under their own names
            generated_texts = [_completion_text(c) for c in completions]
            targets = targets if targets is not None else columns.get("target")
            histories = histories if histories is not None else columns.get("history")
        if generated_texts is None or targets is None:
            raise ConfigError(
                "RecRewardFunction needs generated_texts and targets (or TRL's completions with a 'target' column)"
            )
        rewards = self.rewards(list(generated_texts), targets, histories, neg_items)  # [B]
        if self.normalize == "group":
            rewards = group_normalize(rewards, self._groups(prompts, len(rewards)))
        return rewards.tolist()

    def rewards(self, texts: list[str], targets, histories=None, neg_items=None) -> Tensor:
        """``[B]`` raw rewards (empty texts get 0 and are not sent to the service)."""
        b = len(texts)
        targets = torch.as_tensor(targets, dtype=torch.long).view(-1)
        if targets.numel() != b:
            raise ConfigError(f"targets has {targets.numel()} entries but there are {b} texts; give one per text")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ConfigError(f"generated text {i} is a {type(text).__name__}, not a string")
        keep = [i for i, text in enumerate(texts) if text.strip()]
        out = torch.zeros(b)
        if not keep:
            return out
        kept = torch.tensor(keep, dtype=torch.long)  # [B']

        def pick(rows):
            if rows is None or len(keep) == b:
                return rows
            return rows[kept] if isinstance(rows, Tensor) else [rows[i] for i in keep]

        kept_texts = [texts[i] for i in keep]
        scores = self._scores(kept_texts, targets[kept], pick(histories), pick(neg_items))  # [B', C]
        columns = torch.zeros(len(keep), dtype=torch.long) if neg_items is not None else targets[kept]  # [B']
        out[kept] = rewards_from_scores(scores, columns, self.reward_type, self.k)
        return out

    def _scores(self, texts, targets: Tensor, histories, neg_items) -> Tensor:
        service = self.service
        kwargs = dict(dataset_name=self.dataset_name, targets=targets, neg_items=neg_items, histories=histories)
        if hasattr(service.calculate_reward, "remote"):  # a Ray actor handle
            import ray

            return ray.get(service.calculate_reward.remote(texts, **kwargs))
        return service.calculate_reward(texts, **kwargs)

    def _groups(self, prompts, b: int) -> list:
        if prompts is not None:
            if len(prompts) != b:
                raise ConfigError(f"prompts has {len(prompts)} entries but there are {b} completions")
            return [repr(p) for p in prompts]  # chat prompts are lists of dicts
        if self.group_size is None or b % self.group_size:
            raise ConfigError(
                f"group normalization needs prompts, or a group_size that divides the batch ({b} texts, group_size "
                f"{self.group_size})"
            )
        return [i // self.group_size for i in range(b)]

    # ------------------------------------------------------------------ the service
    @property
    def service(self) -> Any:
        """The in-process service, or the named Ray actor (looked up on first use)."""
        if self._service is None:
            self._service = lookup_actor(self.retrieval_service_name, self.namespace)
        return self._service

    def __getstate__(self) -> dict:  # an actor handle is looked up again after pickling
        state = dict(self.__dict__)
        if state["_service"] is not None and hasattr(state["_service"].calculate_reward, "remote"):
            state["_service"] = None
        return state


def lookup_actor(name: str, namespace: str) -> Any:
    """The named Ray actor; connects to the running cluster first if needed."""
    try:
        import ray
    except ImportError:
        raise ConfigError("the reward service needs Ray: pip install 'ray>=2.9' (or make install)") from None
    if not ray.is_initialized():
        try:
            ray.init(address="auto", namespace=namespace, log_to_driver=False)
        except (ConnectionError, RuntimeError) as exc:
            raise ConfigError(
                f"no Ray cluster to find actor {name!r} on ({exc}); start the service first: "
                f"python -m recsys.serve (it prints the address of its Ray cluster)"
            ) from None
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        raise ConfigError(
            f"no actor {name!r} in Ray namespace {namespace!r}; start it with python -m recsys.serve"
        ) from None


def _completion_text(completion: Any) -> str:
    """A TRL completion: a string, or chat messages whose last one holds the text."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise ConfigError(f"cannot read a completion of type {type(completion).__name__}: expected a string or chat messages")
