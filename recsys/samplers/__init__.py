"""Negative samplers: one file per sampler, chosen by ``sampler=`` (``conf/sampler/``)."""

from recsys.samplers.base import Negatives, NegativeSampler

__all__ = ["Negatives", "NegativeSampler"]
