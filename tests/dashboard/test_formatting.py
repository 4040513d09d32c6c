"""Money on every page, figure and report: the sign before the dollar, one formatter."""

from __future__ import annotations

import math

from dashboard.formatting import signed_usd, usd
from dashboard.templatetags import dashboard_tags


def test_it_puts_the_sign_before_the_dollar() -> None:
    assert usd(-4060.4) == "-$4,060"
    assert usd(14355.0) == "$14,355"
    assert usd(-12.5) == "-$12.50"
    assert usd(-0.001) == "$0.00"
    assert signed_usd(496.0) == "+$496"
    assert signed_usd(-496.0) == "-$496"
    assert signed_usd(0.0) == "$0.00"


def test_every_money_filter_writes_it_the_same_way() -> None:
    for name in ("money", "usd", "signed_usd"):
        assert getattr(dashboard_tags, name)(-4060.0) == "-$4,060", name
    assert dashboard_tags.money("-Infinity") == "\u2013"
    assert dashboard_tags.money(math.nan) == "\u2013"
    assert dashboard_tags.usd(None) == "no price"
    assert dashboard_tags.signed_usd(4060.0) == "+$4,060"
