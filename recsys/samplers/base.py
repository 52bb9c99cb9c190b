"""The sampler contract and shared helpers."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from recsys.data.interactions import SplitData
from recsys.distributed import stream_name
from recsys.errors import ConfigError
from recsys.rng import stream_generator


@dataclass
class Negatives:
    """Negative items for a batch of ``B`` training rows.

    Attributes:
        items: ``[B, N]`` per-row negatives, ``[N]`` negatives shared by every row, or
            ``None`` meaning every item of the catalogue (full softmax).
        log_q: log sampling probability of each negative (same shape as ``items``), for
            logQ correction; ``None`` when the sampler does not define one.
        pos_log_q: ``[B]`` log probability with which the positives would be sampled.
    """

    items: Tensor | None
    log_q: Tensor | None = None
    pos_log_q: Tensor | None = None


class NegativeSampler:
    """Base class. :meth:`setup` sees the training split once; :meth:`sample` is called on
    every training step with the positives and their users.

    Every draw comes from :meth:`generator`, seeded from ``seed`` (the run's seed in
    ``conf/sampler/``), one generator per device, so draws are made where the batch is (a
    CPU draw of 256 negatives per SASRec position is millions of ids per step, tens of
    milliseconds plus the copy to the GPU). A seed gives the same negatives in every run
    on the same kind of device. The generators' states are saved in checkpoints
    (:meth:`state_dict`, by :class:`~recsys.module.RecModule`), so a resumed run draws
    what the uninterrupted run would have drawn.

    Under DDP (``trainer=ddp``) every process draws from its own stream (:meth:`set_rank`):
    rank 0 the single-process one, rank ``r`` ``sampler/rank<r>``, so processes never draw the
    same negatives; the checkpoint holds every process's states (``sampler_by_rank``).
    Negatives drawn once at :meth:`setup` (``sampler=presampled``) come from rank 0's stream
    in every process, so every process holds the same table.

    Args:
        seed: seed of the sampler's generators.
    """

    def __init__(self, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"sampler.seed must be an integer, got {seed!r}")
        self.seed = seed
        self.rank = 0  # the process whose stream the generators draw (set_rank)
        self._generators: dict[str, torch.Generator] = {}
        self._restored: dict[str, Tensor] = {}  # loaded states of generators not created yet

    def generator(self, device: torch.device | str = "cpu") -> torch.Generator:
        """The sampler's generator on ``device``, created (seeded, or from a loaded state)
        at its first use."""
        key = str(torch.device(device))
        if key not in self._generators:
            self._generators[key] = stream_generator(self.seed, stream_name("sampler", self.rank), key)
            if key in self._restored:
                self._generators[key].set_state(self._restored.pop(key))
        return self._generators[key]

    def set_rank(self, rank: int) -> None:
        """Draw from process ``rank``'s stream from now on (called in every process by
        :class:`~recsys.module.RecModule` once Lightning knows the ranks; loaded states,
        restored afterwards, still win)."""
        if rank != self.rank:
            self.rank, self._generators = rank, {}

    def setup(self, split: SplitData) -> None:
        self.n_items = split.n_items

    def sample(self, pos: Tensor, user: Tensor) -> Negatives:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict:
        """What changes while training: the generators' states, by device."""
        return {"generators": {**self._restored, **{k: g.get_state() for k, g in self._generators.items()}}}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`: each generator restarts from its saved state."""
        self._generators, self._restored = {}, dict(state["generators"])


def check_count(num_negatives: int) -> None:
    if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
        raise ConfigError(f"sampler.num_negatives must be a positive integer, got {num_negatives!r}")


def item_log_frequency(split: SplitData, alpha: float = 1.0) -> Tensor:
    """``[I]`` log of each item's training frequency raised to ``alpha``, normalized to a
    distribution; items never seen in training get probability 0 (``-inf``)."""
    weight = split.train.item_counts().double().pow(alpha)  # [I]
    weight[split.train.item_counts() == 0] = 0.0
    return (weight / weight.sum()).log().float()
