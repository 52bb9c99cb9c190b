"""recsys: a Hydra + Lightning framework for training recommenders and comparing their losses."""

__version__ = "0.1.0"
