"""Ranking metrics: full ranking over all items by default, sampled metrics beside it."""
