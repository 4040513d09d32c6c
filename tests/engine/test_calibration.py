"""Calibration profiles per vLLM engine generation."""

from __future__ import annotations

import pytest

from advisor.engine.perf import CalibrationProfile, ConfigError


def test_it_adds_the_v0_overheads_for_a_v0_engine_only() -> None:
    profile = CalibrationProfile(
        step_overhead_s=2e-3,
        seq_overhead_s=1e-5,
        v0_step_overhead_s=4e-3,
        v0_seq_overhead_s=9e-5,
    )
    v0 = profile.for_generation("v0")
    assert (v0.step_overhead_s, v0.seq_overhead_s) == pytest.approx((6e-3, 1e-4))
    assert (v0.v0_step_overhead_s, v0.v0_seq_overhead_s) == (0.0, 0.0)
    assert profile.for_generation("v1") is profile
    with pytest.raises(ConfigError, match="generation: must be 'v0' or 'v1'"):
        profile.for_generation("v2")
