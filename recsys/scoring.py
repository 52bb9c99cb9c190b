"""Scores of a training step's rows, in the form its loss takes: the glue between the
model's queries and item vectors, the sampler's negatives and the loss."""

from __future__ import annotations

import torch
from torch import Tensor

from recsys.losses.base import RecLoss, Scores
from recsys.losses.catalogue import CatalogueScores
from recsys.models.base import Encoded, RecModel
from recsys.samplers.base import Negatives

# Per-row negatives are scored through the whole catalogue (one ``[R, I]`` matmul, then a
# gather of each row's columns) when the catalogue has at most this many items per
# negative: gathering ``R * N`` item vectors of width D and their gradient is memory-bound,
# a matmul is not. Measured on 2 CPU cores (R 4,096, D 64 and 128, N 32 and 256): the
# catalogue path is 3-34x faster at I/N <= 62, about equal at I/N 125-250, and 3-50x slower
# at I/N >= 500 (gSASRec on ml1m, I/N = 13: a training step 6.5 s -> 0.7 s).
CATALOGUE_SCORING_MAX_ITEMS_PER_NEGATIVE = 64


def score_rows(
    model: RecModel, loss: RecLoss, enc: Encoded, negatives: Negatives, n_items: int
) -> Scores | CatalogueScores:
    """Score every row's positive and negatives (shapes in :class:`Scores`) among the
    ``n_items`` items of the catalogue.

    Full softmax (``negatives.items`` is None) scores the whole catalogue
    (``model.item_embeddings()``), or leaves that to a loss that scores it itself
    (:class:`CatalogueScores`: ``loss=ce``, ``loss=poly``); sampled and in-batch negatives score only the
    positives and the negatives, whose vectors come from one ``model.item_vectors(ids)``
    call (a tower encodes only those items); many per-row negatives from a small catalogue
    are read from the catalogue's scores instead (:func:`scores_through_catalogue`: the
    same scores and gradients, faster).
    """
    if negatives.items is None and loss.takes_catalogue():  # the loss scores the catalogue itself
        return CatalogueScores(enc.query, model.item_embeddings(), enc.target, model.score,
                               dot=model.scores_by_dot_product)
    neg_items = negatives.items  # None (every item), [N] shared or [R, N] per row
    if neg_items is None or scores_through_catalogue(model, neg_items, n_items):
        catalogue = model.score(enc.query, model.item_embeddings())  # [R, I]
        pos = catalogue.gather(1, enc.target.unsqueeze(1)).squeeze(1)  # [R]
        if neg_items is None:  # the whole catalogue; the positive's column is masked
            return Scores(pos=pos, neg=catalogue, pos_column=enc.target, query=enc.query)
        neg = catalogue.gather(1, neg_items)  # [R, N]
    else:
        rows = enc.target.numel()
        vectors = model.item_vectors(torch.cat([enc.target, neg_items.flatten()]))  # [R + N or R + R*N, D]
        pos = model.score(enc.query, vectors[:rows].unsqueeze(1)).squeeze(1)  # [R]
        neg = model.score(enc.query, vectors[rows:].view(*neg_items.shape, -1))  # [R, N]
    if neg_items.dim() == 1:
        neg_items = neg_items.unsqueeze(0).expand(neg.shape[0], -1)  # [R, N]
    neg_log_q = negatives.log_q
    if neg_log_q is not None and neg_log_q.dim() == 1:
        neg_log_q = neg_log_q.unsqueeze(0).expand_as(neg)  # [R, N]
    return Scores(
        pos=pos,
        neg=neg,
        neg_mask=neg_items != enc.target.unsqueeze(1),  # accidental hits
        pos_log_q=negatives.pos_log_q,
        neg_log_q=neg_log_q,
        query=enc.query,
    )


def scores_through_catalogue(model: RecModel, neg_items: Tensor, n_items: int) -> bool:
    """Whether per-row negatives ``neg_items`` (``[R, N]``) are cheaper to score as columns
    of the whole catalogue's (``n_items``) ``[R, I]`` dot-product scores than by gathering their ``R * N``
    item vectors (see :data:`CATALOGUE_SCORING_MAX_ITEMS_PER_NEGATIVE`). A tower then
    encodes the whole catalogue, as for a full softmax, instead of the step's items."""
    return (
        neg_items.dim() == 2
        and model.scores_by_dot_product
        and n_items <= CATALOGUE_SCORING_MAX_ITEMS_PER_NEGATIVE * neg_items.shape[1]
    )
