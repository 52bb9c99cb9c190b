"""``python -m recsys.compare``: losses compared at an equal tuning budget (see :mod:`recsys.compare.protocol`)."""
