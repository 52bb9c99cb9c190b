"""Bad configuration fails before training with one line that names the problem."""

from __future__ import annotations

import pytest
from omegaconf import open_dict

from recsys.config import available, check_choices, check_composes, check_ks, validate
from recsys.errors import ConfigError


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize(
    "override, listed",
    [
        ("data=nope", "ml1m"),
        ("model=nope", "sasrec"),
        ("loss=nope", "bpr"),
        ("sampler=nope", "popularity"),
        ("loss=bpr,nope", "ce"),  # a multirun list
    ],
)
def test_unknown_group_option_lists_the_available_ones(override, listed):
    with pytest.raises(ConfigError) as info:
        check_choices([override])
    message = one_line(info)
    assert "nope" in message and listed in message


def test_known_options_and_plain_keys_pass():
    check_choices(["data=ml1m", "model=mf", "loss=bpr,ce", "sampler=uniform", "trainer.max_epochs=3", "seed=1"])


def test_every_group_has_options():
    for group in ("data", "model", "loss", "sampler", "split", "callbacks", "trainer", "logger", "paths"):
        assert available(group), group


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.embedding_dim=abc", "model.embedding_dim"),
        ("model.dropout=[1,2]", "model.dropout"),
        ("data.batch_size=1.5", "data.batch_size"),
        ("sampler=uniform", None),  # valid: sanity check of the parametrization
        ("seed=notanint", "seed"),
        ("eval.ks=[ten]", "eval.ks"),
        ("optimizer.lr=fast", "optimizer.lr"),
        ("trainer.max_epochs=many", "trainer.max_epochs"),
    ],
)
def test_wrong_value_types_name_the_key(cfg_factory, override, key):
    cfg = cfg_factory([override])
    if key is None:
        validate(cfg)
        return
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert key.split(".")[-1] in one_line(info)


@pytest.mark.parametrize("limit, ok", [(0, False), (0.0, False), (1, True), (0.5, True)])
def test_switching_validation_off_is_refused(cfg_factory, limit, ok):
    cfg = cfg_factory([f"+trainer.limit_val_batches={limit}"])
    if ok:
        validate(cfg)
        return
    with pytest.raises(ConfigError) as info:  # it crashed with an IndexError after training
        validate(cfg)
    assert "trainer.limit_val_batches" in one_line(info)


def test_unknown_key_is_named_with_the_valid_ones(cfg_factory):
    cfg = cfg_factory(["+model.embeding_dim=32"])  # typo
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    message = one_line(info)
    assert "model.embeding_dim" in message and "embedding_dim" in message


def test_unimportable_target_is_reported(cfg_factory):
    cfg = cfg_factory([])
    with open_dict(cfg):
        cfg.loss._target_ = "recsys.losses.nope.Nope"
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert "loss._target_" in one_line(info)


def test_default_configs_of_every_option_validate(cfg_factory):
    for group in ("model", "loss", "sampler", "split", "data"):
        for option in available(group):
            overrides = [f"{group}={option}"]
            if option == "custom":
                overrides.append("data.dataset.path=/tmp/x.csv")
            validate(cfg_factory(overrides))


@pytest.mark.parametrize("ks", [[10, 5000], [0], [-1]])
def test_k_must_fit_the_catalogue(ks):
    with pytest.raises(ConfigError) as info:
        check_ks(ks, n_items=1000)
    assert "eval.ks" in one_line(info)


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["trainer.max_epochs=0"], "trainer.max_epochs=0"),
        (["trainer.max_epochs=-2"], "trainer.max_epochs=-2"),
        (["trainer.max_epochs=2", "trainer.check_val_every_n_epoch=3"], "trainer.check_val_every_n_epoch=3"),
        (["trainer.max_epochs=3", "trainer.check_val_every_n_epoch=3"], None),  # validates after epoch 3
        (["trainer.max_epochs=1"], None),
        (["trainer.max_epochs=-1", "+trainer.max_steps=5"], None),  # Lightning's "no epoch limit"
        (["trainer.max_epochs=0", "fit=false", "ckpt_path=/runs/x/best.ckpt"], None),  # evaluates a checkpoint
    ],
)
def test_a_fit_that_never_validates_is_refused(cfg_factory, overrides, named):
    """Validation picks the checkpoint metrics.json reports: without one, metrics.json would
    hold untrained or never-selected weights."""
    cfg = cfg_factory(overrides)
    if named is None:
        validate(cfg)
        return
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    message = one_line(info)
    assert named in message and "set trainer.max_epochs=" in message


def test_a_model_with_nothing_to_fit_needs_no_epoch(cfg_factory, monkeypatch):
    """``RecModel.trainable = False`` (model=pop): the run only evaluates."""
    from recsys.models.mf import MF

    cfg = cfg_factory(["model=mf", "trainer.max_epochs=0"])
    with pytest.raises(ConfigError):
        validate(cfg)
    monkeypatch.setattr(MF, "trainable", False)
    validate(cfg)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["model.embeding_dim=32"], "model.embeding_dim is not in the config; check the spelling, or add it with +model.embeding_dim=32"),
        (["sampler.num_negatives=8"], "(the options that have it: sampler=mixed, sampler=popularity, sampler=presampled"),
        (["aux.orthogonal.weight=2"], "(the options that have it: aux=[orthogonal])"),
        (["+seed=3"], "+seed adds a key, but seed is already in the config; drop the +"),
        (["~callbacks.nope"], "~callbacks.nope removes a key, but callbacks.nope is not in the config"),
        (["eval.ks=[10,20"], "cannot parse an override"),
        (["loss=infonce", "loss.temperature=0.1", "+model.embeding_dim=32", "aux=[orthogonal]"], None),
    ],
)
def test_overrides_hydra_cannot_apply_are_one_line(overrides, expected):
    if expected is None:
        check_composes(overrides)  # composes (the unknown +key is validate's to report)
        return
    with pytest.raises(ConfigError) as info:
        check_composes(overrides)
    assert expected in one_line(info)
