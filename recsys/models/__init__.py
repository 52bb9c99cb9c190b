"""Recommender models: embeddings and scores, never a loss."""

from recsys.models.base import Encoded, RecModel

__all__ = ["Encoded", "RecModel"]
