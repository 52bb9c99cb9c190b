"""The Lightning data module: load once, split, serve batches by indexing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset as TorchDataset, DistributedSampler, Sampler

from recsys.data.datasets.base import Dataset
from recsys.data.files import default_data_dir
from recsys.data.interactions import SplitData, UserItems
from recsys.data.sampling import history_keys, sample_excluding
from recsys.data.splits import Split, check_not_empty, compact, kcore
from recsys.data.views import BatchView
from recsys.distributed import all_gather_objects, world_size
from recsys.errors import ConfigError

log = logging.getLogger(__name__)


class IndexBatches(Sampler[Tensor]):
    """Yields index tensors of size ``batch_size`` over ``n`` rows, reshuffled every epoch
    from ``seed + epoch`` (so a resumed run sees the same order)."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False) -> None:
        self.n, self.batch_size, self.shuffle, self.seed, self.drop_last = n, batch_size, shuffle, seed, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.n)
        for i in range(len(self)):
            yield order[i * self.batch_size : (i + 1) * self.batch_size]


class ShardedBatches(DistributedSampler):
    """One process's share of :class:`IndexBatches`' batches under DDP (``trainer=ddp``).

    It is torch's ``DistributedSampler`` over whole batches, as Lightning would shard them:
    batch ``i`` goes to rank ``i % world_size``, and the last round is padded with the first
    batches again, so that every process takes the same number of steps (the evaluator keeps
    each user once). Sharding whole batches keeps each evaluation batch what it is in a
    single process (same users, so the same scores bit for bit). Being a
    ``DistributedSampler``, Lightning does not wrap it again, and ``set_epoch`` reaches the
    batches' shuffle (every process shuffles the same way, from ``seed + epoch``, and takes
    its own batches of the order).

    Args:
        batches: every process's batches.
        num_replicas: number of processes.
        rank: this process's rank.
    """

    def __init__(self, batches: IndexBatches, num_replicas: int, rank: int) -> None:
        super().__init__(range(len(batches)), num_replicas=num_replicas, rank=rank, shuffle=False)
        self.batches = batches

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.batches.set_epoch(epoch)

    def __iter__(self):
        batches = list(self.batches)
        return (batches[i] for i in super().__iter__())


class _Batches(TorchDataset):
    """A map-style dataset whose item is a whole batch, cut by an index tensor."""

    def __init__(self, make_batch) -> None:
        self.make_batch = make_batch

    def __getitem__(self, index: Tensor) -> dict[str, Tensor]:
        return self.make_batch(index)

    def __len__(self) -> int:  # pragma: no cover - batches are addressed by the sampler
        raise TypeError("batches are addressed by index tensors")


class RecDataModule(pl.LightningDataModule):
    """Loads a dataset, filters and splits it, and serves training and evaluation batches.

    Args:
        dataset: a dataset reader (``conf/data/*.yaml`` picks it by ``_target_``).
        split: the split protocol (leave-one-out, fixed, temporal).
        data_dir: where dataset files are looked up (``paths.data_dir``).
        user_core, item_core: k-core filtering thresholds (0 = none).
        batch_size: training rows per batch.
        eval_batch_size: users per evaluation batch.
        sampled_eval: sizes ``N`` of the sampled evaluations to run beside full ranking
            (``N`` uniform negatives per user outside their history, drawn once with
            ``seed``); empty for none.
        seed: seed of the shuffling, of the view's draws and of the sampled-evaluation
            negatives.

    Resume: the shuffling is a function of ``seed`` and the epoch (:class:`IndexBatches`);
    the view's draws continue from its generator's state, which :meth:`state_dict` puts in
    the checkpoint (Lightning saves and restores a data module's state).

    Several processes (``trainer=ddp``): each process loads the data, serves its share of the
    batches (:class:`ShardedBatches`) and draws from its own stream (rank 0 keeps the
    single-process one, :func:`recsys.distributed.stream_name`); the checkpoint holds every
    process's view state (``view_by_rank``), and each process restores its own.
    """

    def __init__(
        self,
        dataset: Dataset,
        split: Split,
        data_dir: str | None = None,
        user_core: int = 0,
        item_core: int = 0,
        batch_size: int = 128,
        eval_batch_size: int = 1024,
        sampled_eval: list[int] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise ConfigError(f"data.{name} must be >= 1, got {value}")
        self.dataset, self.split_fn = dataset, split
        self.data_dir = Path(data_dir).expanduser() if data_dir else default_data_dir()
        self.user_core, self.item_core = user_core, item_core
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.sampled_eval = list(sampled_eval or [])
        self.seed = seed
        self.split: SplitData | None = None
        self.view: BatchView | None = None
        self.rank = 0  # the process whose draws the view makes (setup)

    def prepare(self) -> SplitData:
        """Load, filter and split (once); returns the split."""
        if self.split is not None:
            return self.split
        raw = self.dataset.load(self.data_dir)
        if self.user_core > 1 or self.item_core > 1:
            raw.interactions = compact(kcore(raw.interactions, self.user_core, self.item_core))
        self.split = self.split_fn(raw)
        check_not_empty(self.split, self.dataset.name)
        self._eval = {stage: self._eval_tables(stage) for stage in ("val", "test")}
        return self.split

    def attach(self, view: BatchView) -> None:
        """Use the model's view of the training data, its draws seeded with ``seed``."""
        view.set_seed(self.seed)
        self.view = view

    def setup(self, stage: str) -> None:
        """Lightning's hook, in every process: the view draws from this process's stream."""
        rank = self.trainer.global_rank if self.trainer is not None else 0
        if self.view is not None and rank != self.rank:
            self.view.set_seed(self.seed, rank)
            self.rank = rank

    def state_dict(self) -> dict:
        """The view's generator state (saved in checkpoints by Lightning); under DDP also
        every process's (a collective: Lightning builds a checkpoint in every process)."""
        if self.view is None:
            return {}
        state = {"view": self.view.state_dict()}
        if world_size() > 1:
            state["view_by_rank"] = all_gather_objects(state["view"])
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore this process's view state (a process the checkpoint has none for, after
        a resume with more processes, keeps its fresh stream)."""
        by_rank = state_dict.get("view_by_rank") or ([state_dict["view"]] if "view" in state_dict else [])
        if self.view is not None and self.rank < len(by_rank):
            self.view.load_state_dict(by_rank[self.rank])

    def _eval_tables(self, stage: str) -> dict:
        split = self.split
        targets = split.valid if stage == "val" else split.test
        exclude = split.train.csr() if stage == "val" else split.train.csr().merge(split.valid)
        exclude = _without(exclude, targets, split.n_items)
        users = split.validated_users() if stage == "val" else targets.users_with_items()  # [V] increasing ids
        tables = {"targets": targets, "exclude": exclude, "users": users}
        gen = torch.Generator().manual_seed(self.seed + (0 if stage == "val" else 1))
        keys = history_keys(split) if self.sampled_eval else None
        for n in self.sampled_eval:
            tables[f"sampled{n}"] = sample_excluding(
                torch.arange(split.n_users), n, split.n_items, keys, gen, f"data.sampled_eval=[{n}]"
            )
        return tables

    def eval_batch(self, users: Tensor, stage: str) -> dict[str, Tensor]:
        tables = self._eval[stage]
        batch = dict(self.view.user_inputs(users, stage))
        batch["target"] = tables["targets"].padded(users)  # [B, T]
        batch["exclude_row"], batch["exclude_item"] = tables["exclude"].rows(users)  # [nnz], [nnz]
        for n in self.sampled_eval:
            batch[f"sampled{n}"] = tables[f"sampled{n}"][users]  # [B, N]
        return batch

    def target_train_counts(self, stage: str = "test") -> Tensor:
        """``[n_users]`` the number of training interactions of each user's ``stage``
        target (the least of them when a user has several; -1 for a user without one):
        how cold the item to be found is, for cuts such as ``python -m recsys.report
        --max-target-count``."""
        split = self.prepare()
        targets = split.valid if stage == "val" else split.test
        row, item = targets.rows(torch.arange(split.n_users))
        counts = split.train.item_counts()[item]  # [nnz]
        out = torch.full((split.n_users,), torch.iinfo(torch.long).max, dtype=torch.long)
        out.scatter_reduce_(0, row, counts, reduce="amin")
        return out.masked_fill(out == torch.iinfo(torch.long).max, -1)

    def train_dataloader(self) -> DataLoader:
        if self.view is None:
            raise RuntimeError("RecDataModule.attach(model.make_view(split)) must be called before training")
        sampler = IndexBatches(len(self.view), self.batch_size, shuffle=True, seed=self.seed)
        return DataLoader(_Batches(self.view.batch), sampler=self._shard(sampler), batch_size=None)

    def _eval_loader(self, stage: str) -> DataLoader:
        users = self._eval[stage]["users"]  # [U] increasing ids
        sampler = IndexBatches(users.numel(), self.eval_batch_size, shuffle=False)
        return DataLoader(_Batches(lambda idx: self.eval_batch(users[idx], stage)), sampler=self._shard(sampler), batch_size=None)

    def _shard(self, batches: IndexBatches) -> Sampler:
        """This process's share of ``batches`` when the trainer runs several processes."""
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1:
            return batches
        return ShardedBatches(batches, trainer.world_size, trainer.global_rank)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


def _without(exclude: UserItems, targets: UserItems, n_items: int) -> UserItems:
    """``exclude`` minus each user's own targets (a target is never hidden from ranking)."""
    users = torch.arange(exclude.n_users)
    row, item = exclude.rows(users)
    t_row, t_item = targets.rows(users)
    keep = ~torch.isin(row * n_items + item, t_row * n_items + t_item)
    return UserItems.from_pairs(row[keep], item[keep], exclude.n_users)
