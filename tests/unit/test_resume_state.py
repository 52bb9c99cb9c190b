"""The state a checkpoint must hold for exact resume: samplers' generators, the adaptive
temperature of eainfonce, the global generators, and the best checkpoint of a run resumed
in a new folder (the end-to-end check is tests/integration/test_resume.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from recsys.config import available
from recsys.data.interactions import Interactions, SplitData
from recsys.errors import ConfigError
from recsys.losses.base import Scores
from recsys.losses.bpr import BPR
from recsys.losses.eainfonce import EntropyAdaptiveInfoNCE
from recsys.models.mf import MF
from recsys.module import RecModule
from recsys.samplers.in_batch import InBatchSampler
from recsys.samplers.mixed import MixedSampler
from recsys.samplers.popularity import PopularitySampler
from recsys.samplers.presampled import PresampledSampler
from recsys.samplers.uniform import UniformSampler
from recsys.wiring import build

N_USERS, N_ITEMS = 6, 40


@pytest.fixture
def split() -> SplitData:
    gen = torch.Generator().manual_seed(0)
    user = torch.arange(N_USERS).repeat_interleave(5)  # [30] five events per user
    item = torch.randint(N_ITEMS, (user.numel(),), generator=gen)
    train = Interactions(user, item, torch.arange(user.numel()), n_users=N_USERS, n_items=N_ITEMS)
    return SplitData(train=train, valid=train.csr(), test=train.csr())


SAMPLERS = {
    "uniform per row": lambda seed: UniformSampler(num_negatives=4, seed=seed),
    "uniform shared": lambda seed: UniformSampler(num_negatives=4, shared=True, seed=seed),
    "popularity": lambda seed: PopularitySampler(num_negatives=4, shared=False, seed=seed),
    "in_batch subset": lambda seed: InBatchSampler(max_negatives=3, seed=seed),
    "mixed uniform": lambda seed: MixedSampler(num_negatives=4, max_negatives=3, seed=seed),
    "mixed popularity": lambda seed: MixedSampler(num_negatives=4, pool="popularity", max_negatives=3, seed=seed),
}
POS = torch.tensor([0, 5, 9, 12, 3, 3, 7, 1])  # [B]
USER = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])  # [B]


def draws(sampler, steps: int = 3) -> list[torch.Tensor]:
    return [sampler.sample(POS, USER).items for _ in range(steps)]


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampler_draws_continue_exactly_after_load_state_dict(split, name):
    sampler = SAMPLERS[name](7)
    sampler.setup(split)
    draws(sampler)  # some training steps
    state = sampler.state_dict()
    expected = draws(sampler)
    for drawn_before_loading in (0, 2):  # a resumed run builds a fresh sampler, then loads the checkpoint
        restored = SAMPLERS[name](7)
        restored.setup(split)
        draws(restored, drawn_before_loading)
        restored.load_state_dict(state)
        assert all(torch.equal(a, b) for a, b in zip(draws(restored), expected))
        assert torch.equal(restored.state_dict()["generators"]["cpu"], sampler.state_dict()["generators"]["cpu"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["uniform per row", "in_batch subset", "mixed uniform", "mixed popularity"])
def test_sampler_draws_on_the_batch_device_and_its_cuda_state_round_trips(split, name):
    sampler = SAMPLERS[name](7)
    sampler.setup(split)
    pos, user = POS.cuda(), USER.cuda()
    assert sampler.sample(pos, user).items.device.type == "cuda"
    state = sampler.state_dict()
    assert "cuda:0" in state["generators"]
    expected = sampler.sample(pos, user).items
    restored = SAMPLERS[name](7)
    restored.setup(split)
    restored.load_state_dict(state)
    assert torch.equal(restored.sample(pos, user).items, expected)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampler_draws_depend_on_its_seed_not_on_the_global_generator(split, name):
    runs = {}
    for key, seed, global_seed in (("a", 1, 0), ("b", 1, 99), ("c", 2, 0)):
        torch.manual_seed(global_seed)
        sampler = SAMPLERS[name](seed)
        sampler.setup(split)
        runs[key] = torch.cat([d.flatten() for d in draws(sampler, 5)])
    assert torch.equal(runs["a"], runs["b"]) and not torch.equal(runs["a"], runs["c"])


def test_presampled_table_is_drawn_again_identically_and_its_state_round_trips(split):
    a, b = PresampledSampler(3, seed=4), PresampledSampler(3, seed=4)
    a.setup(split)
    b.setup(split)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.table, b.table)
    assert torch.equal(a.generator().get_state(), b.generator().get_state())


def test_sampler_seed_must_be_an_integer():
    for bad in ("1", 1.5, True, None):
        with pytest.raises(ConfigError, match="sampler.seed must be an integer"):
            UniformSampler(seed=bad)


def test_every_drawing_sampler_option_takes_the_run_seed(cfg_factory):
    for name in available("sampler"):
        cfg = cfg_factory([f"sampler={name}", "seed=7"])
        if name == "full":  # draws nothing
            assert "seed" not in cfg.sampler
        else:
            assert cfg.sampler.seed == 7, name


def test_presampled_training_negatives_are_not_the_sampled_evaluation_negatives(cfg_factory):
    """Both used to come from torch.Generator().manual_seed(seed): 98% of a user's training
    negatives were the negatives that val_sampled100 ranks the target against (ml-sized data)."""
    tiny = ["data.dataset.n_users=200", "data.dataset.n_items=120", "data.dataset.n_clusters=4"]
    cfg = cfg_factory(["model=mf", "loss=bce", "sampler=presampled", "sampler.num_negatives=20",
                       "data.sampled_eval=[20]", *tiny])
    datamodule, module = build(cfg)
    train_negatives = module.sampler.table  # [U, 20]
    for stage in ("val", "test"):
        evaluation = datamodule._eval[stage]["sampled20"]  # [U, 20]
        assert float((train_negatives == evaluation).float().mean()) < 0.05  # position-wise matches


def test_eainfonce_temperature_is_a_buffer_that_survives_a_state_dict_round_trip():
    loss = EntropyAdaptiveInfoNCE(temperature=0.2, momentum=0.5)
    gen = torch.Generator().manual_seed(0)
    scores = Scores(pos=torch.randn(8, generator=gen), neg=torch.randn(8, 5, generator=gen),
                    query=torch.randn(8, 4, generator=gen))
    for _ in range(3):
        loss(scores)  # training mode: each call moves tau
    moved = loss.temperature
    assert isinstance(moved, float) and moved != 0.2
    assert loss.schedule_values() == {"temperature": moved}
    fresh = EntropyAdaptiveInfoNCE(temperature=0.2, momentum=0.5)
    fresh.load_state_dict(loss.state_dict())
    assert fresh.temperature == moved
    assert float(fresh(scores)) == float(loss(scores))  # and the next step is the same step
    fresh.temperature = 0.3  # a callback may still set it as a float
    assert fresh.temperature == 0.3 and fresh.state_dict()["tau"].item() == 0.3


def test_eainfonce_loads_a_state_dict_written_before_tau_was_a_buffer():
    loss = EntropyAdaptiveInfoNCE(temperature=0.3)
    loss.load_state_dict({})  # strict: no missing key
    assert loss.temperature == 0.3


def test_eainfonce_temperature_is_in_the_module_checkpoint():
    module = RecModule(MF(3, 5, 2), EntropyAdaptiveInfoNCE(temperature=0.3), UniformSampler(2), optimizer=None,
                       n_items=5)
    assert float(module.state_dict()["loss.tau"]) == pytest.approx(0.3)


def test_module_checkpoint_restores_the_sampler_and_the_global_generators(split):
    sampler = UniformSampler(3, seed=5)
    sampler.setup(split)
    module = RecModule(MF(N_USERS, N_ITEMS, 2), BPR(), sampler, optimizer=None, n_items=N_ITEMS)
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    expected = (sampler.sample(POS, USER).items, torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(123), np.random.seed(123), random.seed(123)  # what a fresh process would hold
    again = UniformSampler(3, seed=5)
    again.setup(split)
    resumed = RecModule(MF(N_USERS, N_ITEMS, 2), BPR(), again, optimizer=None, n_items=N_ITEMS)
    resumed.on_load_checkpoint(checkpoint)
    resumed.on_fit_start()
    got = (again.sample(POS, USER).items, torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert np.array_equal(got[2], expected[2]) and got[3] == expected[3]


def test_module_checkpoint_loads_with_torch_weights_only(tmp_path, split):
    sampler = UniformSampler(3)
    sampler.setup(split)
    module = RecModule(MF(N_USERS, N_ITEMS, 2), BPR(), sampler, optimizer=None, n_items=N_ITEMS)
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "c.ckpt")
    loaded = torch.load(tmp_path / "c.ckpt", weights_only=True)  # torch's default, used by Lightning
    assert set(loaded) == {"sampler", "rng"}


def test_run_checkpoint_copies_the_best_checkpoint_of_the_run_it_resumes(tmp_path):
    from recsys.callbacks.run_checkpoint import RunCheckpoint

    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    (old / "best.ckpt").write_bytes(b"weights of epoch 0")
    score = torch.tensor(0.25)
    best = str(old / "best.ckpt")
    state = {"monitor": "val/ndcg@10", "best_model_score": score, "best_model_path": best,
             "current_score": torch.tensor(0.2), "dirpath": str(old), "best_k_models": {best: score},
             "kth_best_model_path": best, "kth_value": score, "last_model_path": str(old / "last.ckpt")}
    callback = RunCheckpoint(dirpath=str(new), filename="best", monitor="val/ndcg@10", mode="max", save_last=True)
    callback.load_state_dict(state)
    assert (new / "best.ckpt").read_bytes() == b"weights of epoch 0"
    assert callback.best_model_path == str(new / "best.ckpt") and callback.best_model_score == score
    # the resumed run writes (and later overwrites) last.ckpt in its own folder, never last-v1.ckpt
    assert callback.best_k_models == {str(new / "best.ckpt"): score}
    assert callback.last_model_path == str(new / "last.ckpt")
    # a checkpoint written by Lightning's ModelCheckpoint resumes with it, and back
    from pytorch_lightning.callbacks import ModelCheckpoint

    assert callback.state_key == ModelCheckpoint(dirpath=str(new), monitor="val/ndcg@10", mode="max").state_key

    (old / "best.ckpt").unlink()  # gone: ModelCheckpoint's behaviour, with a warning
    with pytest.warns(UserWarning, match="missing"):
        RunCheckpoint(dirpath=str(tmp_path / "other"), monitor="val/ndcg@10", mode="max").load_state_dict(state)


def test_early_stopping_keeps_the_configured_patience_and_the_count_on_resume():
    """A run that stopped early is extended by resuming it with a larger eval.patience:
    Lightning's EarlyStopping would restore the old patience and stop again at once."""
    from pytorch_lightning.callbacks import EarlyStopping as LightningEarlyStopping

    from recsys.callbacks.early_stopping import EarlyStopping

    stopped = LightningEarlyStopping(monitor="val/ndcg@10", mode="max", patience=20)
    stopped.wait_count, stopped.best_score, stopped.stopped_epoch = 20, torch.tensor(0.15), 135
    extended = EarlyStopping(monitor="val/ndcg@10", mode="max", patience=60)
    assert extended.state_key == stopped.state_key  # checkpoints of either class resume with the other
    extended.load_state_dict(stopped.state_dict())
    assert extended.patience == 60 and extended.wait_count == 20 and extended.best_score == 0.15
    shorter = EarlyStopping(monitor="val/ndcg@10", mode="max", patience=5)
    shorter.load_state_dict(stopped.state_dict())
    assert shorter.patience == 5 and shorter.wait_count == 20


def test_the_default_callbacks_use_the_resumable_early_stopping(cfg_factory):
    assert cfg_factory([], keep_callbacks=True).callbacks.early_stopping._target_ == "recsys.callbacks.early_stopping.EarlyStopping"
