"""The retrieval reward service: item texts -> text embeddings -> item scores and
NDCG/Hit/MRR rewards for text-generating recommenders (issue 13).

Served in-process or as a named Ray actor (``python -m recsys.serve``). This package reads
datasets, splits and the ranking code, and never imports training.
"""
