"""Template parameters and the strategy lifecycle (reference §2.3)."""

from __future__ import annotations

import pytest

from domain import strategies
from services.strategies import templates


def test_defaults_fill_missing_parameters():
    assert strategies.validate_parameters("moving_average", {}) == {"shortWindow": 5, "longWindow": 20}
    assert strategies.validate_parameters("bollinger_bands", {"stdDev": 3}) == {"period": 20, "stdDev": 3.0}
    assert strategies.validate_parameters("macd", {"fast": 8.0}) == {"fast": 8, "slow": 26, "signal": 9}


@pytest.mark.parametrize(
    ("template", "given", "problem"),
    [
        ("moving_average", {"shortWindow": 30, "longWindow": 20}, "shortWindow must be less than longWindow"),
        ("moving_average", {"shortWindow": True}, "shortWindow must be a number"),
        ("moving_average", {"shortWindow": "5"}, "shortWindow must be a number"),
        ("moving_average", {"shortWindow": 5.5}, "shortWindow must be a whole number"),
        ("moving_average", {"shortWindow": 1}, "shortWindow must be between 2 and 200"),
        ("moving_average", {"fastWindow": 5}, "unknown parameter 'fastWindow'"),
        ("rsi", {"oversold": 80, "overbought": 70}, "oversold must be less than overbought"),
        ("macd", {"fast": 26, "slow": 26}, "fast must be less than slow"),
        ("mean_reversion", {"entryZ": 0.5, "exitZ": 0.5}, "exitZ must be less than entryZ"),
        ("momentum", {"threshold": 1.5}, "threshold must be between 0 and 1"),
        ("nope", {}, "unknown template 'nope'"),
    ],
)
def test_invalid_parameters_are_named(template, given, problem):
    with pytest.raises(strategies.ParameterError) as raised:
        strategies.validate_parameters(template, given)
    assert problem in raised.value.problems


def test_required_parameters_without_defaults():
    with pytest.raises(strategies.ParameterError) as raised:
        strategies.validate_parameters("rsi", {"period": 14}, fill_defaults=False)
    assert raised.value.problems == ["oversold is required", "overbought is required"]


def test_catalog_lists_all_six_templates():
    catalog = {t.id: t.model_dump() for t in templates()}
    assert list(catalog) == ["moving_average", "bollinger_bands", "rsi", "macd", "mean_reversion", "momentum"]
    assert catalog["rsi"]["defaults"] == {"period": 14, "oversold": 30.0, "overbought": 70.0}
    assert catalog["macd"]["parameters"]["slow"] == {
        "type": "int",
        "min": 2,
        "max": 200,
        "default": 26,
        "description": "bars of the slow EMA",
    }


def test_lifecycle():
    assert strategies.can_transition("draft", "active")
    assert strategies.can_transition("inactive", "active")
    assert not strategies.can_transition("active", "draft")
    assert not strategies.can_transition("archived", "active")
