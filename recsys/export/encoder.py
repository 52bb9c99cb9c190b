"""The query encoder of an export: the model's evaluation query as a TorchScript module.

A model encodes users for evaluation from a dict of tensors (``model.user_queries``,
built by its view's ``user_inputs``). The exported module takes the tensors the queries
actually depend on as positional arguments, in a recorded key order (``user`` for MF and
LightGCN, ``input`` - the left-padded history - for SASRec and BERT4Rec, both for a model
with user features or a user tower), and returns float32 ``[B, D]`` queries whose inner
products with the exported item vectors are the checkpoint's scores.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.models.base import RecModel


class QueryEncoder(nn.Module):
    """``forward(*inputs)`` -> ``model.user_queries(dict(zip(keys, inputs)))`` in float32;
    for a cosine model the query is normalized and divided by the score temperature (the
    items are exported normalized), so that ``query @ items.T`` is the model's score.

    Shape:
        each input ``[B, ...]`` -> ``[B, D]``.
    """

    def __init__(self, model: RecModel, keys: list[str], cosine: bool, temperature: float) -> None:
        super().__init__()
        self.model, self.keys = model, tuple(keys)
        self.cosine, self.temperature = cosine, float(temperature)

    def forward(self, *inputs: Tensor) -> Tensor:
        query = self.model.user_queries(dict(zip(self.keys, inputs))).float()  # [B, D]
        if self.cosine:
            query = F.normalize(query, dim=-1) / self.temperature  # [B, D]
        return query


def exported_items(model: RecModel) -> Tensor:
    """``[I, D]`` float32 the item vectors that the queries score by inner product."""
    items = model.item_embeddings().detach().float()  # [I, D]
    return F.normalize(items, dim=-1) if model.score_kind == "cosine" else items


def query_keys(model: RecModel, inputs: dict[str, Tensor]) -> list[str]:
    """The keys of ``inputs`` that the model's queries depend on, in the view's order: a key
    is kept when leaving it out fails or changes the queries (SASRec reads ``user`` only
    with user features)."""
    with torch.no_grad():
        full = model.user_queries(inputs)
        keys = []
        for key in inputs:
            try:
                same = torch.equal(model.user_queries({k: v for k, v in inputs.items() if k != key}), full)
            except Exception:  # noqa: BLE001 - any failure means the key is needed
                same = False
            if not same:
                keys.append(key)
    return keys


def trace(model: RecModel, inputs: dict[str, Tensor], keys: list[str], trace_rows: int = 2) -> torch.jit.ScriptModule:
    """Trace :class:`QueryEncoder` on the first ``trace_rows`` rows of ``inputs`` and freeze
    it (parameters become constants, unused ones are dropped). Tracing records the ops of
    one call: the export's check then runs it on a whole batch of another size.

    Recorded ops must not depend on the traced batch, so while tracing: a model part that
    encodes a batch in groups of similar length (``seq_buckets``/``buckets``: BERT4Rec, the
    two-tower sequence encoder; a speed-up with the same outputs) encodes it as one group,
    and PyTorch's fused transformer fast path (whose traced masks keep the batch's shape)
    is off.
    """
    bucketed = [(m, name, getattr(m, name)) for m in model.modules() for name in ("seq_buckets", "buckets")
                if isinstance(getattr(m, name, None), int) and not isinstance(getattr(m, name), bool)]
    fast_path = torch.backends.mha.get_fastpath_enabled()
    encoder = QueryEncoder(model, keys, model.score_kind == "cosine", model.score_temperature).eval()
    example = tuple(inputs[k][:trace_rows] for k in keys)
    try:
        for module, name, _ in bucketed:
            setattr(module, name, 1)
        torch.backends.mha.set_fastpath_enabled(False)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the check on another batch is the test
            traced = torch.jit.trace(encoder, example, check_trace=False)
            return torch.jit.freeze(traced, optimize_numerics=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
        for module, name, value in bucketed:
            setattr(module, name, value)


def input_spec(model: RecModel, inputs: dict[str, Tensor], keys: list[str], view: str) -> list[dict]:
    """Name, dtype, shape and meaning of each encoder input (for ``manifest.json``)."""
    spec = []
    for key in keys:
        t = inputs[key]
        entry = {"name": key, "dtype": str(t.dtype).removeprefix("torch."), "shape": ["batch", *t.shape[1:]]}
        if key == "user" and t.dim() == 1:
            entry["meaning"] = "0-based user ids"
        elif t.dim() == 2:
            entry["meaning"] = (
                f"each user's most recent item ids (0-based), oldest first, left-padded with {model.pad_id}, "
                f"as recsys.data.views.{view}.user_inputs builds them"
            )
            entry["pad_id"] = model.pad_id
            if model.mask_id is not None:
                entry["mask_id"] = model.mask_id
                entry["meaning"] += f" (the last position holds the [MASK] token {model.mask_id})"
        else:
            entry["meaning"] = f"the '{key}' input of recsys.data.views.{view}.user_inputs"
        spec.append(entry)
    return spec
