"""Export a trained run for serving (``python -m recsys.export``, config ``conf/export/``).

    python -m recsys.export ckpt_path=<run>/checkpoints/best.ckpt index=hnsw out_dir=/srv/ml1m

writes the item vectors (``items.npy``, ``item_ids.npy``), the query encoder as
TorchScript (``query_encoder.pt``), an exact faiss index and the chosen approximate one
(``index_<name>.faiss``), and ``manifest.json`` (shapes, inputs, index settings, the
export-time check and the recall/latency measurements). See :mod:`recsys.export.exporter`.
Models that score with their own function (NeuMF, Wide & Deep, Pop) are refused: an index
of item vectors cannot serve them.
"""
