"""Money on every page, figure and report: the sign before the dollar, one formatter."""

from __future__ import annotations

import math

from dashboard.formatting import prefix_reuse_line, signed_usd, usd
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


def test_it_writes_the_plan_at_each_assumed_prefix_reuse_in_one_line() -> None:
    points = [
        {"reuse_share": 0.0, "usd_per_month": 17944.3125, "meets_slo": True},
        {"reuse_share": 0.3, "usd_per_month": 14355.45, "meets_slo": True},
        {"reuse_share": 0.6, "usd_per_month": 10766.5875, "meets_slo": False},
    ]
    assert prefix_reuse_line(points) == (
        "prefix reuse unknown: plan $17,944/month at 0%, $14,355 at 30%, "
        "$10,767 (misses its SLOs) at 60%"
    )


def test_it_says_a_share_cannot_be_served_and_nothing_without_points() -> None:
    points: list[dict[str, object]] = [
        {"reuse_share": 0.0, "usd_per_month": None, "meets_slo": False},
        {"reuse_share": 0.3, "usd_per_month": 99.5, "meets_slo": True},
    ]
    assert prefix_reuse_line(points) == (
        "prefix reuse unknown: plan cannot be served at 0%, $99.50 at 30%"
    )
    assert prefix_reuse_line([]) == ""
