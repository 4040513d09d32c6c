"""Reads for the dashboard and assessments: what vLLM's histograms say about a window."""

from datetime import UTC, datetime, timedelta

import pytest

from probes.agent.vllm_metrics import Histogram
from probes.models import Cluster, EngineSample, ModelDeployment
from probes.selectors import engine_window, resolution_for

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _prompt_tokens(count: float, under_256: float) -> dict:
    return Histogram(((256.0, under_256), (1024.0, count), (float("inf"), count)),
                     count * 300, count).to_json()  # fmt: skip


def test_it_derives_a_window_from_engine_samples_without_request_records() -> None:
    cluster = Cluster.objects.create(name="prod")
    deployment = ModelDeployment.objects.create(cluster=cluster, model_id="m", served_name="x")
    for instance, offset in (("a:1", 0.0), ("b:1", 100.0)):
        for i, (finished, prompts, hist) in enumerate(
            [(10.0, 1000.0, _prompt_tokens(10, 4)), (40.0, 9000.0, None),
             (70.0, 19000.0, _prompt_tokens(70, 34))]
        ):  # fmt: skip
            EngineSample.objects.create(
                deployment=deployment, instance=instance, ts=T0 + timedelta(seconds=30 * i),
                num_requests_running=1, num_requests_waiting=0,
                requests_finished_total=finished + offset, prompt_tokens_total=prompts + offset,
                histograms={"request_prompt_tokens": hist} if hist else None,
            )  # fmt: skip
    window = engine_window(deployment=deployment, start=T0, end=T0 + timedelta(minutes=5))
    assert window.requests == 2 * 60
    assert window.prompt_tokens == 2 * 18000
    assert window.duration_s == 60.0
    assert window.request_rate_rps == 2.0
    lengths = window.histograms["request_prompt_tokens"]
    assert lengths.count == 2 * 60
    assert lengths.quantile(0.25) == pytest.approx(256 * 30 / 60)


def test_it_picks_the_resolution_by_window_length() -> None:
    assert resolution_for(start=T0, end=T0 + timedelta(hours=1)) is None
    assert resolution_for(start=T0, end=T0 + timedelta(days=1)) == "1m"
    assert resolution_for(start=T0, end=T0 + timedelta(days=30)) == "1h"
