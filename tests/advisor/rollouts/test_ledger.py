"""The ledger measured from telemetry of the rollout's nodes, before and after the change."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.auth.models import User

from advisor.models import LedgerEntry
from advisor.services.rollout_ledger import ledger_due_ids, ledger_measure
from advisor.services.rollouts import rollout_propose
from probes.models import EngineSample, Gpu, GpuSample, PriceSheet
from tests.advisor.rollouts.helpers import fleet, histogram

pytestmark = pytest.mark.django_db

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
H100 = "NVIDIA H100 80GB HBM3"
GIB = 2**30


def _telemetry(gpus: list[Gpu], node_id: int, start: datetime, *, busy: int, util: float,
               tokens_per_s: float, ttft_s: float) -> None:  # fmt: skip
    """One hour: `busy` of the GPUs hold the model (40 GiB), the others are empty."""
    samples = []
    for minute in range(60):
        ts = start + timedelta(minutes=minute)
        for i, gpu in enumerate(gpus):
            in_use = i < busy
            samples.append(GpuSample(gpu=gpu, ts=ts, util_pct=util if in_use else 0.0,
                                     mem_used_bytes=40 * GIB if in_use else GIB // 2))  # fmt: skip
    GpuSample.objects.bulk_create(samples)
    deployment_id = gpus[0].deployments.first().id  # type: ignore[union-attr]
    for minute, count in ((0, 100), (59, 700)):
        EngineSample.objects.create(
            deployment_id=deployment_id, node_id=node_id, instance="gpu-0:8000",
            ts=start + timedelta(minutes=minute), num_requests_running=4,
            num_requests_waiting=0, generation_tokens_per_s=tokens_per_s,
            histograms={"time_to_first_token_seconds": histogram(count, ttft_s),
                        "request_time_per_output_token_seconds": histogram(count, 0.02)},
        )  # fmt: skip
    for minute in range(1, 59):
        EngineSample.objects.create(
            deployment_id=deployment_id, node_id=node_id, instance="gpu-0:8000",
            ts=start + timedelta(minutes=minute), num_requests_running=4,
            num_requests_waiting=0, generation_tokens_per_s=tokens_per_s,
        )  # fmt: skip


def _entry(
    bob: User, *, projected_fraction: float, after_ttft_s: float, after_busy: int = 2
) -> LedgerEntry:
    f = fleet(1)
    node = f.nodes[0]
    gpus = [Gpu.objects.create(node=node, uuid=f"G{i}", index=i, model_name=H100,
                               memory_bytes=80 * GIB) for i in range(4)]  # fmt: skip
    f.deployment.gpus.set(gpus)
    PriceSheet.objects.create(gpu_kind="H100-SXM", usd_per_gpu_hour="4.0000", source="contract",
                              as_of=date(2025, 1, 1))  # fmt: skip
    base_cost = 16.0 / (1000 * 3600) * 1e6
    projected_cost = base_cost * (1 - projected_fraction)
    projection = {
        "baseline": {"gpus": 4, "usd_per_1m_tokens": base_cost},
        "projected": {"gpus": 2, "usd_per_1m_tokens": projected_cost},
    }
    change = {"title": "int4", "engine_args": {"quantization": "awq"}, "projection": projection}
    rollout = rollout_propose(user=bob, nodes=[node.id], change=change)
    # Before: 4 GPUs at 1000 tok/s; after: 2 GPUs at 1000 tok/s.
    _telemetry(gpus, node.id, START - HOUR, busy=4, util=30.0, tokens_per_s=1000.0, ttft_s=0.3)
    _telemetry(gpus, node.id, START + HOUR, busy=after_busy, util=55.0, tokens_per_s=1000.0,
               ttft_s=after_ttft_s)  # fmt: skip
    return LedgerEntry.objects.create(
        rollout=rollout, projection=rollout.change.projection,
        slo={"ttft_p95_s": 0.5, "tpot_p95_s": 0.05}, window_s=3600,
        before_start=START - HOUR, before_end=START, after_start=START + HOUR,
        after_end=START + 2 * HOUR,
    )  # fmt: skip


def test_it_sets_measured_figures_beside_the_projection(bob: User) -> None:
    entry = _entry(bob, projected_fraction=0.5, after_ttft_s=0.3)
    assert ledger_due_ids(now=START + HOUR) == []
    assert ledger_due_ids(now=START + 2 * HOUR) == [entry.id]
    entry = ledger_measure(entry_id=entry.id, now=START + 3 * HOUR)
    assert entry.status == "measured"
    assert entry.before["gpus"] == 4
    assert entry.after["gpus"] == 2  # the freed GPUs still report, empty: not counted
    assert entry.before["util_pct"] == pytest.approx(30.0)
    assert entry.after["util_pct"] == pytest.approx(55.0)
    assert entry.before["usd_per_hour"] == pytest.approx(16.0)
    assert entry.after["usd_per_hour"] == pytest.approx(8.0)
    assert entry.after["throughput_tok_s"] == pytest.approx(1000.0)
    assert entry.after["usd_per_1m_tokens"] == pytest.approx(8.0 / 3.6)
    # All 0.3 s observations sit in the (0.25, 0.5] bucket: interpolated as Prometheus does.
    assert entry.before["ttft_p95_s"] == pytest.approx(0.25 + 0.25 * 0.95)
    assert entry.realized["realized_fraction"] == pytest.approx(0.5)
    assert entry.flags == []
    assert entry.flagged is False
    again = ledger_measure(entry_id=entry.id, now=START + 4 * HOUR)
    assert again.measured_at == entry.measured_at  # measured once


def test_it_flags_savings_under_half_the_projection_and_a_worse_slo(bob: User) -> None:
    # Projected 60% cheaper; 3 of 4 GPUs still in use after: 25% realized.
    entry = _entry(bob, projected_fraction=0.6, after_ttft_s=0.9, after_busy=3)
    entry = ledger_measure(entry_id=entry.id, now=START + 3 * HOUR)
    assert entry.flagged is True
    assert [flag.split(":")[0] for flag in entry.flags] == ["below_half", "slo_worse"]


def test_without_telemetry_it_says_what_is_missing(bob: User) -> None:
    f = fleet(1)
    rollout = rollout_propose(user=bob, nodes=[f.nodes[0].id],
                              change={"title": "x", "engine_args": {"a": 1}})  # fmt: skip
    entry = LedgerEntry.objects.create(
        rollout=rollout, window_s=60, before_start=START - HOUR, before_end=START,
        after_start=START, after_end=START + HOUR,
    )  # fmt: skip
    entry = ledger_measure(entry_id=entry.id, now=START + 2 * HOUR)
    assert entry.status == "no_data"
    assert "before: no GPU telemetry" in entry.notes
    assert "after: no vLLM throughput samples" in entry.notes
