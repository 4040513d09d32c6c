"""Rollups (1 minute, 1 hour) and retention, computed from raw rows; idempotent."""

import importlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from probes.agent.vllm_metrics import Histogram
from probes.models import (
    Cluster,
    EngineRollup,
    EngineSample,
    Gpu,
    GpuRollup,
    GpuSample,
    IngestBatch,
    ModelDeployment,
    Node,
    RequestRecord,
    RequestRollup,
)
from probes.services.retention import retention_apply
from probes.services.rollups import (
    engine_rollups_compute,
    gpu_rollups_compute,
    request_rollups_compute,
)
from probes.tasks import rollup_pending
from tests.probes.helpers import batch, gpu, gpu_sample, post, registered_node

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def node() -> Node:
    return Node.objects.create(cluster=Cluster.objects.create(name="prod"), hostname="gpu-1")


@pytest.fixture
def deployment(node: Node) -> ModelDeployment:
    return ModelDeployment.objects.create(cluster=node.cluster, model_id="m", served_name="llama")


def _gpu(node: Node, uuid: str = "GPU-0") -> Gpu:
    return Gpu.objects.create(node=node, uuid=uuid, index=0, model_name="H100", memory_bytes=80)


def test_it_rolls_gpu_samples_up_by_minute_and_hour(node: Node) -> None:
    gpu = _gpu(node)
    # Minute 0: util 0..59 (one sample a second); minute 1: a constant 80.
    for s in range(60):
        GpuSample.objects.create(gpu=gpu, ts=T0 + timedelta(seconds=s), util_pct=float(s),
                                 mem_used_bytes=1000 + s, power_w=300.0)  # fmt: skip
    for s in range(60, 120):
        GpuSample.objects.create(gpu=gpu, ts=T0 + timedelta(seconds=s), util_pct=80.0,
                                 mem_used_bytes=2000, power_w=None)  # fmt: skip
    assert gpu_rollups_compute(start=T0, end=T0 + timedelta(minutes=2)) == 3
    first = GpuRollup.objects.get(resolution="1m", bucket_start=T0)
    assert first.sample_count == 60
    assert first.util_mean_pct == 29.5
    assert first.util_p95_pct == pytest.approx(56.05)
    assert (first.util_max_pct, first.mem_used_max_bytes, first.power_mean_w) == (59.0, 1059, 300.0)
    second = GpuRollup.objects.get(resolution="1m", bucket_start=T0 + timedelta(minutes=1))
    assert (second.util_mean_pct, second.power_mean_w) == (80.0, None)
    hour = GpuRollup.objects.get(resolution="1h", bucket_start=T0)
    assert hour.sample_count == 120
    assert hour.util_mean_pct == pytest.approx((29.5 + 80) / 2)
    # Idempotent: running again rewrites the same buckets.
    gpu_rollups_compute(start=T0, end=T0 + timedelta(minutes=2))
    assert GpuRollup.objects.count() == 3
    assert GpuRollup.objects.get(resolution="1h").util_max_pct == 80.0


def test_it_counts_idle_minutes_in_minute_and_hour_rollups(node: Node) -> None:
    # Issue 16, item 7: an hour that was idle for 3 of its 5 minutes counted 0 idle hours.
    gpu = _gpu(node)
    peaks = [0.0, 4.9, 5.0, 2.0, 90.0]  # idle, idle, not idle (at the threshold), idle, busy
    for minute, peak in enumerate(peaks):
        for s in range(0, 60, 10):
            util = peak if s == 30 else 0.5 * peak
            GpuSample.objects.create(gpu=gpu, ts=T0 + timedelta(minutes=minute, seconds=s),
                                     util_pct=util, mem_used_bytes=1)  # fmt: skip
    gpu_rollups_compute(start=T0, end=T0 + timedelta(minutes=5))
    by_minute = GpuRollup.objects.filter(resolution="1m").order_by("bucket_start")
    assert [r.idle_minutes for r in by_minute] == [1, 1, 0, 1, 0]
    hour = GpuRollup.objects.get(resolution="1h", bucket_start=T0)
    assert (hour.idle_minutes, hour.util_max_pct) == (3, 90.0)


def test_the_migration_fills_idle_minutes_from_the_minutes_kept(node: Node) -> None:
    fill = importlib.import_module("probes.migrations.0009_gpurollup_idle_minutes")
    gpu = _gpu(node)
    rows = [
        # hour 0: minute rows kept, 2 of them idle, the hour's peak 50%
        rollup(gpu, "1h", T0, peak=50.0),
        rollup(gpu, "1m", T0, peak=1.0),
        rollup(gpu, "1m", T0 + timedelta(minutes=1), peak=4.0),
        rollup(gpu, "1m", T0 + timedelta(minutes=2), peak=50.0),
        # hour 1: minutes gone, wholly idle; hour 2: minutes gone, busy
        rollup(gpu, "1h", T0 + timedelta(hours=1), peak=3.0),
        rollup(gpu, "1h", T0 + timedelta(hours=2), peak=30.0),
    ]
    GpuRollup.objects.bulk_create(rows)
    assert set(GpuRollup.objects.values_list("idle_minutes", flat=True)) == {0}

    fill.idle_minutes_fill(django_apps, None)

    stored = GpuRollup.objects.order_by("resolution", "bucket_start")
    assert [(r.resolution, r.idle_minutes) for r in stored] == [
        ("1h", 2), ("1h", 60), ("1h", 0), ("1m", 1), ("1m", 1), ("1m", 0),
    ]  # fmt: skip


def rollup(gpu: Gpu, resolution: str, start: datetime, *, peak: float) -> GpuRollup:
    return GpuRollup(
        gpu=gpu, resolution=resolution, bucket_start=start, sample_count=12,
        util_mean_pct=peak / 2, util_p95_pct=peak, util_max_pct=peak,
        mem_used_mean_bytes=1, mem_used_max_bytes=1,
    )  # fmt: skip


def test_it_recomputes_only_the_gpus_asked_for(node: Node) -> None:
    one, two = _gpu(node), _gpu(node, "GPU-1")
    for each in (one, two):
        GpuSample.objects.create(gpu=each, ts=T0, util_pct=10.0, mem_used_bytes=1)
    assert gpu_rollups_compute(start=T0, end=T0) == 4
    kept = set(GpuRollup.objects.filter(gpu=two).values_list("id", "util_mean_pct"))
    GpuSample.objects.filter(gpu__in=(one, two)).update(util_pct=50.0)  # late-corrected data

    assert gpu_rollups_compute(start=T0, end=T0, gpu_ids=[one.id]) == 2
    assert set(GpuRollup.objects.filter(gpu=two).values_list("id", "util_mean_pct")) == kept
    assert list(GpuRollup.objects.filter(gpu=one).values_list("util_mean_pct", flat=True)) == [
        50.0, 50.0
    ]  # fmt: skip
    assert GpuRollup.objects.count() == 4


def _hist(count: float, under_100ms: float, total_s: float) -> dict:
    return Histogram(((0.1, under_100ms), (1.0, count), (float("inf"), count)), total_s,
                     count).to_json()  # fmt: skip


def _engine(deployment: ModelDeployment, instance: str, at: datetime, **values: Any) -> None:
    running, waiting = values.pop("running", 2.0), values.pop("waiting", 0.0)
    EngineSample.objects.create(
        deployment=deployment, instance=instance, ts=at, num_requests_running=running,
        num_requests_waiting=waiting, **values,
    )  # fmt: skip


def test_it_rolls_engine_samples_up_across_servers_and_restarts(
    deployment: ModelDeployment,
) -> None:
    # Server a: baseline before the hour, then 100 -> 160 tokens; a restart (counter 10).
    _engine(deployment, "a:8000", T0 - timedelta(seconds=30), generation_tokens_total=100.0,
            requests_finished_total=5.0,
            histograms={"time_to_first_token_seconds": _hist(5, 5, 0.2)})  # fmt: skip
    _engine(deployment, "a:8000", T0 + timedelta(seconds=10), generation_tokens_total=160.0,
            requests_finished_total=8.0, kv_cache_usage=0.5, running=4.0,
            histograms={"time_to_first_token_seconds": _hist(9, 7, 1.0)})  # fmt: skip
    _engine(deployment, "a:8000", T0 + timedelta(seconds=70), generation_tokens_total=10.0,
            requests_finished_total=1.0, kv_cache_usage=0.1)  # fmt: skip
    # Server b, same minute: gauges add up, its counters too.
    _engine(deployment, "b:8000", T0 + timedelta(seconds=5), generation_tokens_total=0.0,
            running=6.0, waiting=3.0, kv_cache_usage=0.3)  # fmt: skip
    _engine(deployment, "b:8000", T0 + timedelta(seconds=15), generation_tokens_total=40.0,
            running=2.0, waiting=1.0, kv_cache_usage=0.7)  # fmt: skip
    assert engine_rollups_compute(start=T0, end=T0 + timedelta(minutes=2)) == 3
    minute = EngineRollup.objects.get(resolution="1m", bucket_start=T0)
    assert minute.sample_count == 3
    assert minute.running_mean == 4.0 + 4.0  # a: 4; b: mean(6, 2)
    assert minute.running_max == 4.0 + 6.0
    assert minute.waiting_mean == 2.0
    assert minute.kv_cache_usage_mean == pytest.approx((0.5 + 0.5) / 2)
    assert minute.kv_cache_usage_max == 0.7
    assert minute.generation_tokens == 60.0 + 40.0
    assert minute.requests == 3.0
    # The TTFT window inside the minute: 4 requests, 2 under 100 ms, 2 in (0.1, 1].
    window = Histogram.from_json(minute.histograms["time_to_first_token_seconds"])
    assert window.count == 4
    assert minute.ttft_p50_s == pytest.approx(0.1)
    assert minute.ttft_p99_s == pytest.approx(0.1 + 0.9 * (3.96 - 2) / 2)
    restarted = EngineRollup.objects.get(resolution="1m", bucket_start=T0 + timedelta(minutes=1))
    assert restarted.generation_tokens == 10.0  # after a restart the new total is the increase
    hour = EngineRollup.objects.get(resolution="1h", bucket_start=T0)
    assert hour.generation_tokens == 110.0
    assert hour.requests == 4.0


def test_it_rolls_requests_up_into_the_load_shape(deployment: ModelDeployment) -> None:
    for i in range(10):
        RequestRecord.objects.create(
            deployment=deployment, arrival_ts=T0 + timedelta(seconds=6 * i), prompt_tokens=100 * i,
            output_tokens=10, ttft_s=0.1 * i if i else None, e2e_s=1.0,
            status="error" if i == 9 else "ok", source="import",
        )  # fmt: skip
    RequestRecord.objects.create(deployment=deployment, arrival_ts=T0 + timedelta(minutes=61),
                                 prompt_tokens=5, output_tokens=5, source="proxy")  # fmt: skip
    request_rollups_compute(start=T0, end=T0 + timedelta(hours=2))
    minute = RequestRollup.objects.get(resolution="1m", bucket_start=T0)
    assert (minute.request_count, minute.error_count) == (10, 1)
    assert (minute.prompt_tokens_sum, minute.output_tokens_sum) == (4500, 100)
    assert minute.prompt_tokens_p50 == 450.0
    assert minute.ttft_p50_s == pytest.approx(0.5)  # of the 9 requests that have a TTFT
    hours = RequestRollup.objects.filter(resolution="1h").order_by("bucket_start")
    assert [(h.bucket_start.hour, h.request_count) for h in hours] == [(10, 10), (11, 1)]


def test_the_beat_task_rolls_up_what_agents_delivered(client: Client) -> None:
    _node, token = registered_node()
    now = timezone.now().replace(second=30, microsecond=0) - timedelta(minutes=3)
    samples = [gpu_sample(ts=now.timestamp() + i, util_pct=float(i)) for i in range(10)]
    assert post(client, token, batch(gpus=[gpu()], gpu_samples=samples)).status_code == 201
    written = rollup_pending()
    assert written["batches"] == 1
    minute_start = now.replace(second=0)
    rollup = GpuRollup.objects.get(resolution="1m", bucket_start=minute_start)
    assert (rollup.sample_count, rollup.util_mean_pct) == (10, 4.5)
    assert IngestBatch.objects.get().rolled_up_at is not None
    assert rollup_pending()["batches"] == 0  # nothing new


def test_retention_deletes_old_telemetry_and_keeps_imported_traces(
    node: Node, deployment: ModelDeployment
) -> None:
    now = timezone.now()
    old, recent = now - timedelta(days=400), now - timedelta(hours=1)
    gpu = _gpu(node)
    GpuSample.objects.create(gpu=gpu, ts=old, util_pct=1, mem_used_bytes=1)
    GpuSample.objects.create(gpu=gpu, ts=recent, util_pct=1, mem_used_bytes=1)
    _engine(deployment, "a:1", old)
    _engine(deployment, "a:1", recent)
    RequestRecord.objects.create(deployment=deployment, arrival_ts=old, prompt_tokens=1,
                                 output_tokens=1, source="proxy")  # fmt: skip
    RequestRecord.objects.create(deployment=deployment, arrival_ts=old, prompt_tokens=1,
                                 output_tokens=1, source="import")  # fmt: skip
    request_rollups_compute(start=old, end=old)
    IngestBatch.objects.create(node=node, batch_id="old", received_at=old)
    IngestBatch.objects.create(node=node, batch_id="new", received_at=recent)
    deleted = retention_apply(now=now)
    assert deleted["gpu_samples"] == 1
    assert deleted["engine_samples"] == 1
    assert deleted["requests"] == 1
    assert deleted["ingest_batches"] == 1
    assert GpuSample.objects.get().ts == recent
    assert list(RequestRecord.objects.values_list("source", flat=True)) == ["import"]
    # The imported trace keeps its load shape (its rollups have requests left).
    assert RequestRollup.objects.filter(resolution="1m").count() == 1
    assert list(IngestBatch.objects.values_list("batch_id", flat=True)) == ["new"]
    assert retention_apply(now=now)["gpu_samples"] == 0


def test_register_node_prints_only_the_token_and_stores_its_digest(
    capsys: pytest.CaptureFixture,
) -> None:
    call_command("register_node", "--cluster", "lab", "gpu-9", "--label", "rack=r1")
    token = capsys.readouterr().out.strip()
    node = Node.objects.get(hostname="gpu-9")
    assert len(token) >= 43
    assert node.agent_token_hash == Node.hash_token(token)
    assert token not in str(Node.objects.values().get())
    assert node.labels == {"rack": "r1"}
    with pytest.raises(Exception, match="already registered"):
        call_command("register_node", "--cluster", "lab", "gpu-9")
    call_command("register_node", "--cluster", "lab", "gpu-9", "--rotate")
    rotated = capsys.readouterr().out.strip()
    assert rotated != token
    assert Node.objects.get(hostname="gpu-9").agent_token_hash == Node.hash_token(rotated)
    with pytest.raises(Exception, match="cluster: 'no spaces' is not a slug"):
        call_command("register_node", "--cluster", "no spaces", "gpu-10")


def test_the_admin_issues_a_token_once(client: Client, alice) -> None:
    alice.is_staff = True  # the Django admin site is for staff
    alice.save()
    client.force_login(alice)
    cluster = Cluster.objects.create(name="lab")
    response = client.post(
        "/admin/probes/node/add/",
        {"cluster": cluster.pk, "hostname": "gpu-5", "labels": "{}", "controller_kind": "local",
         "desired_config": "{}"},
        follow=True,
    )  # fmt: skip
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    token = next(m for m in messages if "Agent token" in m).split(": ")[1].split(" ")[0]
    assert Node.objects.get(hostname="gpu-5").agent_token_hash == Node.hash_token(token)
