"""Fidelity on the real vLLM CPU node: calibrate at concurrency 1 and 16, predict 4, 32, 64."""

from __future__ import annotations

import pytest

from probes.agent.vllm_process import VllmProcess
from tests.engine.vllm_bench import CALIBRATE_AT, PREDICT_AT, fidelity

# `make bench` checks the 0.15 target over 6 rounds. Two rounds on a shared 2-core machine
# have a spread of up to 80% per point (see the printed report), so this test only fails when
# the model is clearly wrong (a prediction off by half on average).
TEST_MAPE_LIMIT = 0.5


@pytest.mark.integration
def test_it_predicts_a_real_vllm_node_from_two_calibration_points(vllm_node: VllmProcess) -> None:
    report = fidelity(vllm_node.launch.base_url, rounds=2, server_pid=vllm_node.pid)
    print("\n".join(report.lines()))
    # the fitted profile reproduces its own calibration points
    assert report.fit.median_ape < 0.10
    assert {error.label.split()[1] for error in report.fit.errors} == {str(c) for c in CALIBRATE_AT}
    # and predicts the three other concurrencies it never saw
    assert {error.label.split()[1] for error in report.predictions} == {str(c) for c in PREDICT_AT}
    assert report.mape <= TEST_MAPE_LIMIT
    assert report.fit.profile.source.startswith("vLLM CPU node")
