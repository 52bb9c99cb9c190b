"""The shared option checks of ``recsys.errors``: hand-checked accepts and one-line refusals."""

from __future__ import annotations

import math

import pytest

from recsys.errors import ConfigError, check_number, check_positive, is_number


@pytest.mark.parametrize("value, expected", [
    (0, True), (1.5, True), (-3, True), (True, False), ("0.5", False), (None, False),
    (math.inf, False), (-math.inf, False), (math.nan, False),
])
def test_is_number_counts_finite_ints_and_floats_but_not_bools(value, expected):
    assert is_number(value) is expected


@pytest.mark.parametrize("kwargs, accepted, refused, message", [
    ({"low": 0, "high": 1}, [0, 0.5, 1], [-0.1, 1.5], "x must be a number in [0, 1], got {!r}"),
    ({"low": 0, "high": 1, "low_open": True}, [1e-9, 1], [0, 1.1], "x must be a number in (0, 1], got {!r}"),
    ({"low": 0, "high": 1, "high_open": True}, [0, 0.999], [1, -1], "x must be a number in [0, 1), got {!r}"),
    ({"low": 0}, [0, 7], [-1e-9], "x must be a number >= 0, got {!r}"),
    ({"low": 0, "low_open": True}, [1e-9], [0, -2], "x must be a number > 0, got {!r}"),
    ({"high": 2.5}, [-5, 2.5], [2.6], "x must be a number <= 2.5, got {!r}"),
    ({"high": 2.5, "high_open": True}, [2.4], [2.5], "x must be a number < 2.5, got {!r}"),
    ({}, [-1e30, 0, 1e30], [math.inf, math.nan], "x must be a finite number, got {!r}"),
])
def test_check_number_accepts_the_interval_and_refuses_outside_it_in_one_line(kwargs, accepted, refused, message):
    for value in accepted:
        assert check_number("x", value, **kwargs) == float(value)
        assert type(check_number("x", value, **kwargs)) is float
    for value in refused + [True, "0.5", None]:
        with pytest.raises(ConfigError) as info:
            check_number("x", value, **kwargs)
        assert str(info.value) == message.format(value)


def test_check_number_puts_the_note_before_the_value():
    with pytest.raises(ConfigError) as info:
        check_number("eval.short_head_share", 1.5, 0, 1, note=" (0.2 in Abdollahpouri et al.)")
    assert str(info.value) == "eval.short_head_share must be a number in [0, 1] (0.2 in Abdollahpouri et al.), got 1.5"


@pytest.mark.parametrize("value", [0, -1, True, math.inf, "1"])
def test_check_positive_refuses_zero_negatives_bools_infinity_and_strings(value):
    with pytest.raises(ConfigError, match=r"^loss.temperature must be a positive number, got "):
        check_positive("loss.temperature", value)
    check_positive("loss.temperature", 0.05)
