"""Scores of a training step's rows, in the form its loss takes: the glue between the
model's queries and item vectors, the sampler's negatives and the loss."""

from __future__ import annotations

import torch

from recsys.losses.base import RecLoss, Scores
from recsys.losses.catalogue import CatalogueScores
from recsys.models.base import Encoded, RecModel
from recsys.samplers.base import Negatives


def score_rows(model: RecModel, loss: RecLoss, enc: Encoded, negatives: Negatives) -> Scores | CatalogueScores:
    """Score every row's positive and negatives (shapes in :class:`Scores`).

    Full softmax (``negatives.items`` is None) scores the whole catalogue
    (``model.item_embeddings()``), or leaves that to a loss that scores it itself
    (:class:`CatalogueScores`: ``loss=ce``, ``loss=poly``); sampled and in-batch negatives score only the
    positives and the negatives, whose vectors come from one ``model.item_vectors(ids)``
    call (a tower encodes only those items).
    """
    if negatives.items is None and loss.takes_catalogue():  # the loss scores the catalogue itself
        return CatalogueScores(enc.query, model.item_embeddings(), enc.target, model.score,
                               dot=model.scores_by_dot_product)
    if negatives.items is None:  # the whole catalogue; the positive's column is masked
        neg = model.score(enc.query, model.item_embeddings())  # [R, I]
        pos = neg.gather(1, enc.target.unsqueeze(1)).squeeze(1)  # [R]
        return Scores(pos=pos, neg=neg, pos_column=enc.target, query=enc.query)
    neg_items = negatives.items  # [N] shared or [R, N] per row
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
