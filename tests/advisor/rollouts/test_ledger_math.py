"""Realized savings beside the projection, and the two flags."""

from __future__ import annotations

import pytest

from advisor.rollouts.ledger import ProjectionError, check_projection, realize
from advisor.rollouts.transitions import TransitionError, batches, check_transition

PROJECTION = {
    "baseline": {"gpus": 4, "usd_per_hour": 16.0, "usd_per_1m_tokens": 2.0},
    "projected": {"gpus": 2, "usd_per_hour": 8.0, "usd_per_1m_tokens": 1.0},
}
SLO = {"ttft_p95_s": 0.5, "tpot_p95_s": 0.05}


def test_a_change_that_delivered_is_not_flagged() -> None:
    before = {"usd_per_hour": 16.0, "usd_per_1m_tokens": 2.0, "ttft_p95_s": 0.3}
    after = {"usd_per_hour": 8.0, "usd_per_1m_tokens": 1.1, "ttft_p95_s": 0.35}
    realized = realize(PROJECTION, before, after, SLO)
    assert realized.basis == "usd_per_1m_tokens"
    assert realized.projected_fraction == pytest.approx(0.5)
    assert realized.realized_fraction == pytest.approx(0.45)
    assert realized.usd_per_hour_saved == pytest.approx(8.0)
    assert realized.flags == ()
    assert realized.to_json()["realized_over_projected"] == pytest.approx(0.9)


def test_under_half_the_projection_is_flagged() -> None:
    realized = realize(PROJECTION, {"usd_per_1m_tokens": 2.0}, {"usd_per_1m_tokens": 1.6}, SLO)
    assert realized.flags == (
        "below_half: realized 20.0% savings on usd_per_1m_tokens is under half the projected 50.0%",
    )


@pytest.mark.parametrize(
    ("before", "after", "flag"),
    [
        (0.4, 0.6, "slo_worse: ttft_p95_s 600 ms misses the SLO 500 ms it met before (400 ms)"),
        (0.7, 0.9, "slo_worse: ttft_p95_s 900 ms, worse than 700 ms before, "
                   "both over the SLO 500 ms"),
        (None, 0.6, "slo_worse: ttft_p95_s 600 ms misses the SLO 500 ms (nothing measured before)"),
    ],
)  # fmt: skip
def test_a_worse_slo_is_flagged(before: float | None, after: float, flag: str) -> None:
    b = {"usd_per_1m_tokens": 2.0, **({"ttft_p95_s": before} if before is not None else {})}
    a = {"usd_per_1m_tokens": 1.0, "ttft_p95_s": after}
    assert realize(PROJECTION, b, a, SLO).flags == (flag,)


def test_better_latency_over_the_slo_is_not_flagged() -> None:
    b = {"usd_per_1m_tokens": 2.0, "ttft_p95_s": 0.9}
    a = {"usd_per_1m_tokens": 1.0, "ttft_p95_s": 0.7}
    assert realize(PROJECTION, b, a, SLO).flags == ()


def test_without_a_projection_or_a_cost_it_says_so() -> None:
    realized = realize({}, {"usd_per_hour": 10.0}, {"usd_per_hour": 9.0}, SLO)
    assert realized.realized_fraction == pytest.approx(0.1)
    assert realized.notes == ("no projection: a change written by hand",)
    nothing = realize(PROJECTION, {}, {}, SLO)
    assert nothing.basis is None
    assert "no cost measured on both sides" in nothing.notes[-1]


def test_a_projection_is_checked_naming_the_field() -> None:
    assert check_projection(None) == {}
    assert check_projection({**PROJECTION, "source": "assessment #3"})["source"] == "assessment #3"
    for data, field in (
        ({"baseline": {"gpus": 1}, "projected": {"gpus": 1}}, "projection"),
        ({"baseline": {"usd_per_hour": 1}, "projected": {"watts": 1}},
         "projection.projected.watts"),
        ({"baseline": {"usd_per_hour": "1"}, "projected": {"usd_per_hour": 1}},
         "projection.baseline.usd_per_hour"),
        ({"baseline": {"usd_per_hour": 1}}, "projection.projected"),
    ):  # fmt: skip
        with pytest.raises(ProjectionError) as error:
            check_projection(data)
        assert error.value.field == field


def test_the_state_machine_and_batches() -> None:
    check_transition("pending", "canary")
    check_transition("rolling_back", "rolled_back")
    with pytest.raises(TransitionError, match="a done rollout cannot become canary"):
        check_transition("done", "canary")
    with pytest.raises(TransitionError, match="it may become aborted, canary"):
        check_transition("pending", "done")
    assert batches(5, 2) == [0, 1, 1, 2, 2]
    assert batches(1, 3) == [0]
    assert batches(3, 1) == [0, 1, 2]
