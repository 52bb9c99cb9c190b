"""The random number generators of a run and their state, for exact resume.

* :func:`stream_generator` - the generator of one named stream of draws (a sampler's
  negatives, a view's training rows), seeded from the run's ``seed``. Every object that
  draws during training owns one and saves its state in the checkpoint.
* :func:`global_states` / :func:`set_global_states` - the states of torch's (CPU and
  CUDA), numpy's and python's global generators (dropout and anything else drawing from
  them). Lightning seeds them once (``seed_everything``) but does not restore them from a
  checkpoint; :class:`~recsys.module.RecModule` saves and restores them.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for ``stream`` derived from the run's ``seed``: streams of one run (and
    the same stream under different seeds) get unrelated seeds, so two objects seeded from
    one run seed never draw the same numbers."""
    digest = hashlib.blake2b(f"{seed}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def stream_generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` for ``stream``, seeded with :func:`stream_seed`."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream))


def global_states() -> dict:
    """The states of torch's CPU (and, when initialized, CUDA), numpy's and python's global
    generators, as tensors and plain python values (a checkpoint then loads with
    ``torch.load(weights_only=True)``, torch's default)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))
    states = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_global_states(states: dict) -> None:
    """Restore what :func:`global_states` returned (CUDA only when saved and available)."""
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(states["python"])
    if "torch.cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch.cuda"])
