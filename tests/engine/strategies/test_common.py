"""What the strategies share: money in words, and what a strategy adds over right-sizing."""

from __future__ import annotations

import math

from advisor.engine.strategies._common import gain_line, usd
from tests.engine.test_advice import _projection


def test_it_writes_negative_dollars_with_the_sign_first() -> None:
    assert usd(-4060.4) == "-$4,060"
    assert usd(14355.0) == "$14,355"
    assert usd(0.0) == "$0"
    assert usd(math.inf) == "n/a"


def test_it_says_what_a_strategy_saves_over_todays_configuration_right_sized() -> None:
    reference = _projection(gpus=3.0, usd_per_month=10767.0)
    assert gain_line(reference, _projection(gpus=2.0, usd_per_month=7178.0)) == (
        "saves $3,589/month (33%) over today's configuration right-sized (3.0 GPUs, $10,767/month)"
    )
    assert gain_line(reference, _projection(gpus=4.0, usd_per_month=14356.0)) == (
        "costs $3,589/month (33%) more than today's configuration right-sized "
        "(3.0 GPUs, $10,767/month)"
    )
    assert gain_line(reference, _projection(gpus=3.0, usd_per_month=10767.0)) == (
        "saves nothing over today's configuration right-sized (3.0 GPUs, $10,767/month)"
    )
