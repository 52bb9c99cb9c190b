"""How a model consumes training data.

A model declares its view (``RecModel.make_view``); the data module only asks the view for
batches by index. Every view turns the training split into tensors once; a batch is then
one indexing operation, with no per-sample Python.

* :class:`PairView` - one row per (user, item) training event, or per uniformly drawn
  user and one of their items (MF, LightGCN).
* :class:`SequenceView` - one row per user: the last ``max_len`` training items as input
  and the next item at every position as target (SASRec-style next-item prediction).
* :class:`MaskedItemView` - one row per user: the last ``max_len`` training items with a
  random fraction replaced by a ``[MASK]`` token, each masked item the target of its
  position (BERT4Rec's Cloze task).
"""

from __future__ import annotations

import torch
from torch import Tensor

from recsys.data.interactions import Interactions, SplitData, UserItems
from recsys.distributed import stream_name
from recsys.errors import ConfigError, check_number
from recsys.rng import stream_generator


class BatchView:
    """Training rows of a split and the inputs a model needs to encode users.

    A view that draws at random (``PairView(rows="users")``) draws from a generator of its
    own, seeded by the data module with the run's seed (:meth:`set_seed`) and saved in
    checkpoints with the data module's state (:meth:`state_dict`).
    """

    def set_seed(self, seed: int, rank: int = 0) -> None:
        """Seed the view's random draws (process ``rank``'s own stream under DDP); a view
        that draws nothing ignores it."""

    def state_dict(self) -> dict:
        """What changes while training (a generator's state); empty for a view without draws."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def batch(self, index: Tensor) -> dict[str, Tensor]:  # pragma: no cover - abstract
        """The training batch made of rows ``index`` (``[B]``)."""
        raise NotImplementedError

    def user_inputs(self, users: Tensor, stage: str) -> dict[str, Tensor]:
        """Inputs that encode ``users`` for evaluation at ``stage`` ("val" or "test")."""
        return {"user": users}


class DrawingView(BatchView):
    """A view whose batches are random draws from its own generator, named ``stream``
    (seeded with the run's seed by the data module, saved in checkpoints)."""

    stream: str = ""

    def set_seed(self, seed: int, rank: int = 0) -> None:
        self.generator = stream_generator(seed, stream_name(self.stream, rank))

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def check_train_rows(rows: object) -> str:
    """``rows`` if it names a :class:`PairView` row scheme, else a clear error."""
    if rows not in ("events", "users"):
        raise ConfigError(f"model.train_rows must be one of events, users, got {rows!r}")
    return rows  # type: ignore[return-value]


class PairView(DrawingView):
    """Rows are (user, item) training pairs.

    ``rows="events"``: every training event once per epoch, in shuffled order (users weigh
    by their activity). ``rows="users"``: each row draws a user uniformly among the users
    with training events and then one of that user's training items uniformly, as the
    LightGCN reference code samples (He et al. 2020, ``UniformSample_original``); an epoch
    still has one row per event. Every user then weighs the same, as in the per-user
    averages of the metrics. The draws come from the view's own generator, seeded with the
    run's seed by the data module (:meth:`set_seed`) and saved in checkpoints.

    Args:
        split: the data split.
        rows: ``events`` or ``users``.
        seed: seed of the ``users`` draws (the data module sets the run's seed).
    """

    stream = "pair_view"

    def __init__(self, split: SplitData, rows: str = "events", seed: int = 0) -> None:
        self.rows = check_train_rows(rows)
        self.user = split.train.user
        self.item = split.train.item
        if self.rows == "users":
            self.by_user = split.train.csr()  # each user's items
            self.active = self.by_user.users_with_items()  # [U']
        self.set_seed(seed)

    def __len__(self) -> int:
        return int(self.user.numel())

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        if self.rows == "events":
            return {"user": self.user[index], "item": self.item[index]}  # [B], [B]
        n, gen = index.numel(), self.generator
        users = self.active[torch.randint(self.active.numel(), (n,), generator=gen)]  # [B] uniform over users
        start = self.by_user.indptr[users]  # [B]
        count = self.by_user.indptr[users + 1] - start  # [B]
        offset = (torch.rand(n, generator=gen) * count).long().clamp(max=count - 1)  # [B] uniform within the user
        return {"user": users, "item": self.by_user.items[start + offset]}  # [B], [B]


def last_items(user: Tensor, item: Tensor, n_users: int, length: int, pad: int) -> Tensor:
    """``[U, length]`` each user's last ``length`` items, right-aligned, left-padded.

    ``user``/``item`` must be sorted by user and then by time.
    """
    counts = torch.bincount(user, minlength=n_users)  # [U]
    start = torch.cumsum(counts, 0) - counts  # [U]
    from_end = counts[user] - 1 - (torch.arange(user.numel()) - start[user])  # [E]
    keep = from_end < length
    out = torch.full((n_users, length), pad, dtype=torch.long)  # [U, L]
    out[user[keep], length - 1 - from_end[keep]] = item[keep]
    return out


class SequenceView(BatchView):
    """Next-item prediction over each user's training sequence (Kang & McAuley 2018).

    Args:
        split: the data split.
        max_len: number of positions; longer histories keep their most recent items.
        pad: padding item id (the models use ``n_items``).
    """

    def __init__(self, split: SplitData, max_len: int, pad: int) -> None:
        train = split.train
        self.max_len, self.pad = max_len, pad
        window = last_items(train.user, train.item, train.n_users, max_len + 1, pad)  # [U, L+1]
        inputs, targets = window[:, :-1], window[:, 1:].clone()  # [U, L], [U, L]
        targets[inputs == pad] = pad  # a target needs at least one item of context
        has_rows = (targets != pad).any(1)  # [U]
        self.users = torch.nonzero(has_rows).flatten()  # [R]
        self.inputs, self.targets = inputs[self.users], targets[self.users]  # [R, L]
        self._history = {"val": window[:, 1:]}  # [U, L] all training items
        test_events = _append(train, split.valid)
        self._history["test"] = last_items(test_events.user, test_events.item, train.n_users, max_len, pad)

    def __len__(self) -> int:
        return int(self.users.numel())

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        return {"user": self.users[index], "input": self.inputs[index], "target": self.targets[index]}

    def user_inputs(self, users: Tensor, stage: str) -> dict[str, Tensor]:
        return {"user": users, "input": self._history[stage][users]}  # [B], [B, L]


class MaskedItemView(DrawingView):
    """The Cloze task of BERT4Rec (Sun et al., CIKM 2019): each training row is a user's
    last ``max_len`` training items in which every item is replaced by ``mask`` with
    probability ``mask_prob`` (always by ``[MASK]``, as in the reference code of Sun et al.
    and of Klenitskiy & Vasilev 2023: no 80/10/10 split); the masked positions are the
    rows' training targets. Padding is never masked. A row whose draw masks nothing gets
    its last item masked, so that every row trains (with ``mask_prob=0.2`` and ml1m's
    histories of 20 or more items this touches about 1% of rows).

    For evaluation a user's input is their last ``max_len - 1`` items followed by
    ``[MASK]``: the query is the output at that last position (the item after the
    history). The masks are drawn from the view's own generator, seeded with the run's
    seed and saved in checkpoints.

    Batches hold ``input`` (masked, ``[B, L]``), ``target`` (``[B, L]``: the item at masked
    positions, ``pad`` elsewhere), ``sequence`` (unmasked, ``[B, L]``) and ``user``.

    Args:
        split: the data split.
        max_len: number of positions ``L``.
        pad: padding id (``n_items``).
        mask: the ``[MASK]`` id (``n_items + 1``).
        mask_prob: probability that an item is masked, in (0, 1].
        seed: seed of the draws (the data module sets the run's seed).
    """

    stream = "masked_item_view"

    def __init__(self, split: SplitData, max_len: int, pad: int, mask: int, mask_prob: float, seed: int = 0) -> None:
        check_number("model.mask_prob", mask_prob, 0, 1, low_open=True)
        train = split.train
        self.max_len, self.pad, self.mask, self.mask_prob = max_len, pad, mask, float(mask_prob)
        window = last_items(train.user, train.item, train.n_users, max_len, pad)  # [U, L]
        self.users = torch.nonzero((window != pad).any(1)).flatten()  # [R] users with training items
        self.sequences = window[self.users]  # [R, L]
        history = {"val": last_items(train.user, train.item, train.n_users, max_len - 1, pad)}  # [U, L-1]
        test_events = _append(train, split.valid)
        history["test"] = last_items(test_events.user, test_events.item, train.n_users, max_len - 1, pad)
        masks = torch.full((train.n_users, 1), mask, dtype=torch.long)  # [U, 1]
        self._inputs = {stage: torch.cat([h, masks], 1) for stage, h in history.items()}  # [U, L] history + [MASK]
        self.set_seed(seed)

    def __len__(self) -> int:
        return int(self.users.numel())

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        sequence = self.sequences[index]  # [B, L]
        real = sequence != self.pad  # [B, L]
        masked = (torch.rand(sequence.shape, generator=self.generator) < self.mask_prob) & real  # [B, L]
        masked[:, -1] |= ~masked.any(1)  # a row with no mask drawn masks its last (always real) item
        return {
            "user": self.users[index],
            "input": sequence.masked_fill(masked, self.mask),  # [B, L]
            "target": sequence.masked_fill(~masked, self.pad),  # [B, L]
            "sequence": sequence,  # [B, L]
        }

    def user_inputs(self, users: Tensor, stage: str) -> dict[str, Tensor]:
        return {"user": users, "input": self._inputs[stage][users]}  # [B], [B, L]


def _append(train: Interactions, extra: UserItems) -> Interactions:
    """Training events followed, for each user, by ``extra``'s items (for test inputs)."""
    users = torch.arange(train.n_users)
    row, item = extra.rows(users)
    big = int(train.time.max()) + 1 if len(train) else 0
    merged = Interactions(
        user=torch.cat([train.user, users[row]]),
        item=torch.cat([train.item, item]),
        time=torch.cat([train.time, torch.full_like(item, big)]),
        n_users=train.n_users,
        n_items=train.n_items,
    )
    return merged.sorted()


class EventHistoryView(BatchView):
    """One row per training event, with the ``max_len`` items the user had consumed
    *before* it as input (so the target never leaks into its own input), cut from a flat
    item array by one gather per batch. Used by models that encode a user from their
    recent history and predict one item per row (the two-tower model).

    Args:
        split: the data split.
        max_len: number of history positions.
        pad: padding item id.
    """

    def __init__(self, split: SplitData, max_len: int, pad: int) -> None:
        train = split.train  # sorted by user, then time
        self.max_len, self.pad = max_len, pad
        self.user, self.item = train.user, train.item  # [E]
        counts = torch.bincount(train.user, minlength=train.n_users)  # [U]
        self.start = torch.cumsum(counts, 0) - counts  # [U] first event of each user
        self._history = {"val": last_items(train.user, train.item, train.n_users, max_len, pad)}
        test_events = _append(train, split.valid)
        self._history["test"] = last_items(test_events.user, test_events.item, train.n_users, max_len, pad)

    def __len__(self) -> int:
        return int(self.user.numel())

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        user = self.user[index]  # [B]
        offsets = torch.arange(-self.max_len, 0)  # [L]
        source = index.unsqueeze(1) + offsets  # [B, L] flat positions of the preceding events
        before_start = source < self.start[user].unsqueeze(1)
        history = self.item[source.clamp(min=0)].masked_fill(before_start, self.pad)  # [B, L]
        return {"user": user, "item": self.item[index], "input": history}

    def user_inputs(self, users: Tensor, stage: str) -> dict[str, Tensor]:
        return {"user": users, "input": self._history[stage][users]}  # [B], [B, L]
