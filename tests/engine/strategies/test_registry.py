"""The registry finds every strategy module by itself; all share one interface."""

from __future__ import annotations

import inspect

import pytest

from advisor.engine.strategies.registry import STRATEGIES, get, names


def test_it_discovers_the_five_strategies_in_report_order() -> None:
    assert names() == ("batching", "quantization", "autoscaling", "speculative", "sharing")


def test_it_gives_every_strategy_the_same_signature() -> None:
    for module in STRATEGIES.values():
        parameters = list(inspect.signature(module.evaluate).parameters)
        assert parameters == ["workload", "deployment", "prices", "slo", "context"]


def test_it_names_the_known_strategies_for_an_unknown_one() -> None:
    with pytest.raises(KeyError, match="batching"):
        get("magic")
