"""Recommendation rows for text-generating recommenders, cut from the project's own splits.

* :func:`load_texts` - the item texts of such a dataset (only its reader is built);
* :func:`load_split` - compose ``conf/data/<name>.yaml`` through the train config, load and
  split the dataset exactly as a training run does; returns the split and the reader.
* :class:`RecommendationDataset` - one row per (user, target): the history before the
  target, the target, and negatives drawn once; ``columns()`` feeds
  ``datasets.Dataset.from_dict`` (TRL).

All item ids are the project's 0-based ids (``0..n_items-1``, the ids of
:class:`~recsys.data.interactions.SplitData` and of ``Dataset.item_texts``), so k-core
filtering, which renumbers them, is refused.

Importing this module imports no training code; :func:`load_split` builds the project's
``RecDataModule`` (a ``LightningDataModule``), so calling it imports ``pytorch_lightning``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import Tensor
from torch.utils.data import Dataset as TorchDataset

from recsys.config import CONF_DIR, _composition_message, available, check_choices, validate
from recsys.data.datasets.base import Dataset
from recsys.data.interactions import SplitData, UserItems
from recsys.data.texts import ItemTexts
from recsys.data.sampling import sample_excluding
from recsys.errors import ConfigError

SPLITS = ("train", "valid", "test")


# ---------------------------------------------------------------- the split
def load_split(
    data: str, data_dir: str | Path | None = None, overrides: Sequence[str] = ()
) -> tuple[SplitData, Dataset]:
    """Load and split a dataset as ``python -m recsys.run data=<data>`` would.

    Args:
        data: a name in ``conf/data/`` (``synthetic``, ``ml1m``, ``beauty``, ...).
        data_dir: where the dataset files are (``paths.data_dir``; default
            ``RECSYS_DATA_DIR``, else ``~/.cache/recsys``).
        overrides: more command-line overrides, e.g. ``["split=temporal"]``.

    Returns:
        ``(split, reader)``: the :class:`SplitData` (0-based ids) and the dataset reader
        (``reader.item_texts(data_dir)`` gives the item texts).

    Nothing is cached: each call loads again.
    """
    datamodule = _datamodule(data, data_dir, overrides)
    return datamodule.split, datamodule.dataset


def load_texts(data: str, data_dir: str | Path | None = None, overrides: Sequence[str] = ()) -> ItemTexts:
    """The item texts of ``conf/data/<data>.yaml``'s dataset (ids as in :func:`load_split`).

    Only the dataset reader is built (no split, no Lightning). A dataset without item
    texts raises the reader's one-line :class:`~recsys.errors.DataError`.
    """
    cfg = _data_config(data, data_dir, overrides)
    from hydra.utils import instantiate

    reader = instantiate(cfg.data.dataset)
    return reader.item_texts(cfg.paths.data_dir)


def _data_config(data: str, data_dir: str | Path | None, overrides: Sequence[str]) -> DictConfig:
    """The train config composed with ``data=<data>``, checked (names, types, no k-core)."""
    names = available("data")
    if data not in names:
        raise ConfigError(f"unknown data '{data}': available datasets are {', '.join(names)} (conf/data/)")
    overrides = [f"data={data}", *overrides]
    check_choices(overrides)
    cfg = _compose(overrides)
    if data_dir is not None:
        cfg.paths.data_dir = str(Path(data_dir).expanduser())
    _refuse_kcore(cfg.data)
    try:
        node = OmegaConf.to_container(cfg.data, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config error in conf/data/{data}.yaml: {' '.join(str(exc).split())}") from None
    validate(OmegaConf.create({"data": node}))  # unknown keys and wrong types, one line each
    return cfg


def _datamodule(data: str, data_dir: str | Path | None, overrides: Sequence[str]) -> Any:
    """The configured ``RecDataModule``, prepared (``.split``, ``.dataset``, ``.data_dir``)."""
    cfg = _data_config(data, data_dir, overrides)
    from hydra.utils import instantiate  # the RecDataModule, built as a training run builds it

    datamodule = instantiate(cfg.data)
    datamodule.prepare()
    return datamodule


def _refuse_kcore(data: DictConfig) -> None:
    for key in ("user_core", "item_core"):
        value = data.get(key, 0)
        if isinstance(value, int) and value > 1:
            raise ConfigError(
                f"data.{key}={value} asks for k-core filtering, which renumbers the item ids, but the reward "
                f"service uses the dataset's own item ids; drop the override or set data.{key}=0"
            )


def _compose(overrides: list[str]) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides`` (without Hydra's own node)."""
    from hydra import compose
    from hydra.errors import HydraException

    try:
        with _private_hydra():
            return compose("train", overrides=overrides)
    except HydraException as exc:
        text = " ".join(str(exc).split()).split(" See https")[0] or type(exc).__name__
        message = _composition_message(text, overrides, CONF_DIR)  # the run's own one-line fixes
        raise ConfigError(message or f"cannot compose the overrides {' '.join(overrides)}: {text}") from None


@contextmanager
def _private_hydra() -> Iterator[None]:
    """Initialize Hydra on ``conf/`` for the block, then put back whatever another caller had
    initialized (a test's or an app's GlobalHydra is left as it was)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    theirs = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            yield
    finally:
        GlobalHydra.instance().hydra = theirs


# ---------------------------------------------------------------- the rows
class RecommendationDataset(TorchDataset):
    """(history, target) rows of one split, for RL training and evaluation of a
    text-generating recommender.

    Rows (``T_u``: user ``u``'s training events in time order, ``V_u``/``S_u`` the
    validation/test targets of :class:`SplitData`):

    * ``"train"``: users with ``|T_u| >= 2``; history ``T_u`` without its last event, target
      that last event;
    * ``"valid"``: history ``T_u``, one row per item of ``V_u``;
    * ``"test"``: history ``T_u`` followed by ``V_u``, one row per item of ``S_u``
      (leave-one-out: one row per user).

    Item ids are the project's 0-based ids (those of :class:`SplitData` and of
    ``Dataset.item_texts``); user ids too.

    Args:
        data: a dataset name in ``conf/data/`` (loaded with :func:`load_split`) or a loaded
            :class:`SplitData`.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        num_negs: negatives per row: uniform over the items outside the row's whole
            history (before any ``max_history`` cut) and its target, drawn once here from
            ``torch.Generator().manual_seed(seed)``: the same seed gives the same negatives.
        seed: seed of the negatives.
        prompt_generator: ``history -> str`` (e.g. a
            :class:`~recsys.retrieval.prompts.PromptGenerator`); ``"default"`` builds one
            over the dataset's own ``item_texts`` (needs ``data`` to be a name); None gives
            ``""``.
        data_dir: where the files are, when ``data`` is a name.
        max_history: keep only the last ``max_history`` events of each history (None: all).

    Attributes:
        split_data: the :class:`SplitData` the rows come from.
        reader: the dataset reader (None when ``data`` was a :class:`SplitData`).
        user: ``[R]`` user id of each row.
        target: ``[R]`` target item of each row.
        history: rows' histories (after ``max_history``) in CSR form: row ``r`` owns
            ``history.items[history.indptr[r]:history.indptr[r + 1]]``, oldest first.
        neg_items: ``[R, num_negs]`` negatives.
    """

    def __init__(
        self,
        data: str | SplitData,
        split: Literal["train", "valid", "test"] = "train",
        num_negs: int = 0,
        seed: int = 42,
        prompt_generator: Callable[[list[int]], str] | Literal["default"] | None = None,
        data_dir: str | Path | None = None,
        max_history: int | None = None,
    ) -> None:
        _check_args(split, num_negs, max_history)
        self.reader: Dataset | None = None
        if isinstance(data, SplitData):
            self.split_data = data
        else:
            datamodule = _datamodule(data, data_dir, ())
            self.split_data, self.reader, data_dir = datamodule.split, datamodule.dataset, datamodule.data_dir
        self.split_name, self.num_negs, self.seed, self.max_history = split, num_negs, seed, max_history
        self.prompt_generator = self._prompts(prompt_generator, data_dir)

        seq, self.user, self.target, starts, lengths = _rows(self.split_data, split)
        full = UserItems(indptr=_indptr(lengths), items=seq.items[_ranges(starts, lengths)])  # [H] every history
        if max_history is not None:
            cut = lengths.clamp(max=max_history)  # [R]
            starts, lengths = starts + lengths - cut, cut
        self.history = UserItems(indptr=_indptr(lengths), items=seq.items[_ranges(starts, lengths)])
        self.neg_items = self._negatives(full)  # [R, num_negs]

    def _prompts(self, prompt_generator: Any, data_dir: str | Path | None) -> Callable[[list[int]], str] | None:
        if not isinstance(prompt_generator, str):
            return prompt_generator
        if prompt_generator != "default":
            raise ConfigError(
                f"prompt_generator must be a callable, 'default' or None, got the string {prompt_generator!r}"
            )
        if self.reader is None:
            raise ConfigError(
                "prompt_generator='default' needs the dataset's item texts: pass the dataset's name as data, "
                "or a PromptGenerator built on its ItemTexts"
            )
        from recsys.retrieval.prompts import PromptGenerator

        return PromptGenerator(self.reader.item_texts(data_dir))

    def _negatives(self, full: UserItems) -> Tensor:
        """``[R, num_negs]`` items outside each row's whole history and target."""
        n_rows, n_items = self.user.numel(), self.split_data.n_items
        if self.num_negs == 0:
            return torch.empty(n_rows, 0, dtype=torch.long)
        rows = torch.arange(n_rows)  # [R]
        hist_row, hist_item = full.rows(rows)  # [H], [H]
        forbidden = torch.unique(torch.cat([hist_row * n_items + hist_item, rows * n_items + self.target]))  # sorted
        allowed = n_items - torch.bincount(forbidden // n_items, minlength=n_rows)  # [R]
        if n_rows and int(allowed.min()) < self.num_negs:
            row = int(allowed.argmin())
            raise ConfigError(
                f"num_negs={self.num_negs} negatives per row, but a row of the {self.split_name} split "
                f"(user {int(self.user[row])}) has only {int(allowed[row])} items outside its history and "
                f"target; lower num_negs"
            )
        generator = torch.Generator().manual_seed(self.seed)
        return sample_excluding(rows, self.num_negs, n_items, forbidden, generator, "num_negs")

    def __len__(self) -> int:
        return int(self.user.numel())

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} of a RecommendationDataset of {len(self)} rows")
        i = i % len(self)
        history = self.history.items[self.history.indptr[i] : self.history.indptr[i + 1]].tolist()
        return {
            "prompt": self.prompt_generator(history) if self.prompt_generator else "",
            "history": history,
            "target": int(self.target[i]),
            "user_id": int(self.user[i]),
            "neg_items": self.neg_items[i].tolist(),
        }

    def histories(self) -> list[list[int]]:
        """Every row's history as a list of item ids, oldest first."""
        flat, bounds = self.history.items.tolist(), self.history.indptr.tolist()
        return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def columns(self) -> dict[str, list]:
        """Every row as columns (``prompt``, ``history``, ``target``, ``user_id``,
        ``neg_items``), for ``datasets.Dataset.from_dict``."""
        histories = self.histories()
        generate = self.prompt_generator
        return {
            "prompt": [generate(h) for h in histories] if generate else [""] * len(histories),
            "history": histories,
            "target": self.target.tolist(),
            "user_id": self.user.tolist(),
            "neg_items": self.neg_items.tolist(),
        }


def _check_args(split: str, num_negs: int, max_history: int | None) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r} of a RecommendationDataset: use one of {', '.join(SPLITS)}")
    if isinstance(num_negs, bool) or not isinstance(num_negs, int) or num_negs < 0:
        raise ConfigError(f"num_negs must be an integer >= 0 (negatives per row), got {num_negs!r}")
    bad_cut = isinstance(max_history, bool) or not isinstance(max_history, int) or max_history < 1
    if max_history is not None and bad_cut:
        raise ConfigError(f"max_history must be None (the whole history) or an integer >= 1, got {max_history!r}")


def _rows(split: SplitData, which: str) -> tuple[UserItems, Tensor, Tensor, Tensor, Tensor]:
    """``(seq, user, target, start, length)``: row ``r``'s history is
    ``seq.items[start[r] : start[r] + length[r]]``; ``user``, ``target``, ``start``,
    ``length`` are ``[R]``."""
    seq = split.train.csr()  # per-user training items, in time order
    if which == "train":
        counts = seq.counts()  # [U]
        user = torch.nonzero(counts >= 2).flatten()  # [R]
        target = seq.items[seq.indptr[user + 1] - 1]  # [R] the last training event
        return seq, user, target, seq.indptr[user], counts[user] - 1
    if which == "test":
        seq = seq.merge(split.valid)  # training events, then the validation items
    held = split.valid if which == "valid" else split.test
    user = torch.repeat_interleave(torch.arange(held.n_users), held.counts())  # [R] one row per target
    target = held.items.clone()  # [R]
    if which == "valid":  # only the users validation evaluates (split.valid_users: a subset)
        kept = torch.isin(user, split.validated_users())  # [R]
        user, target = user[kept], target[kept]
    return seq, user, target, seq.indptr[user], seq.counts()[user]


def _ranges(starts: Tensor, lengths: Tensor) -> Tensor:
    """``[sum(lengths)]`` the positions ``starts[r] .. starts[r] + lengths[r] - 1`` of every row."""
    offsets = torch.cumsum(lengths, 0) - lengths  # [R] where each row begins in the output
    return torch.arange(int(lengths.sum())) + torch.repeat_interleave(starts - offsets, lengths)


def _indptr(lengths: Tensor) -> Tensor:
    """``[R + 1]`` CSR row pointers of rows of ``lengths``."""
    return torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(lengths, 0)])
