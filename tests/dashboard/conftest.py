"""Fleets for the dashboard tests: a hand-built one with known numbers, a synthetic one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from dashboard.synthetic import SyntheticFleet, fleet_create, rollups_create
from probes.models import (
    IDLE_UTIL_PCT,
    Cluster,
    Gpu,
    GpuRollup,
    ModelDeployment,
    Node,
    PriceSheet,
)

# A fixed "now" the hand-built fleet is placed before; tests pass windows ending here.
END = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
H100 = "NVIDIA H100 80GB HBM3"
L4 = "NVIDIA L4"


@dataclass(frozen=True)
class SmallFleet:
    cluster: Cluster
    node: Node
    busy: Gpu  # H100, 60% all day
    idle: Gpu  # H100, idle (2%) for 10 of 24 hours, 40% otherwise
    unpriced: Gpu  # L4 (no price sheet row), always idle
    deployment: ModelDeployment


def hour_rollup(gpu: Gpu, start: datetime, util: float, peak: float | None = None) -> GpuRollup:
    top = util if peak is None else peak
    return GpuRollup(
        gpu=gpu, resolution="1h", bucket_start=start, sample_count=720, util_mean_pct=util,
        util_p95_pct=top, util_max_pct=top,
        mem_used_mean_bytes=10 * 2**30, mem_used_max_bytes=12 * 2**30, power_mean_w=300.0,
        sm_active_mean=None, idle_minutes=60 if top < IDLE_UTIL_PCT else 0,
    )  # fmt: skip


@pytest.fixture
def small_fleet(db: Any) -> SmallFleet:
    """24 hour rollups per GPU ending at END; 2 days before END so a 7d window holds them."""
    cluster = Cluster.objects.create(name="prod")
    node = Node.objects.create(cluster=cluster, hostname="gpu-a")
    busy = Gpu.objects.create(node=node, uuid="GPU-busy", index=0, model_name=H100,
                              memory_bytes=80 * 2**30)  # fmt: skip
    idle = Gpu.objects.create(node=node, uuid="GPU-idle", index=1, model_name=H100,
                              memory_bytes=80 * 2**30)  # fmt: skip
    unpriced = Gpu.objects.create(node=node, uuid="GPU-l4", index=2, model_name=L4,
                                  memory_bytes=24 * 2**30)  # fmt: skip
    deployment = ModelDeployment.objects.create(cluster=cluster, model_id="m", served_name="llama")
    deployment.gpus.set([busy, idle])
    PriceSheet.objects.create(gpu_kind="H100-SXM", usd_per_gpu_hour="4.0000",
                              source="test contract", as_of=date(2025, 1, 1))  # fmt: skip
    first = END - timedelta(days=2)
    rows = []
    for h in range(24):
        start = first + timedelta(hours=h)
        rows.append(hour_rollup(busy, start, 60.0, 80.0))
        rows.append(hour_rollup(idle, start, 2.0 if h < 10 else 40.0, 3.0 if h < 10 else 70.0))
        rows.append(hour_rollup(unpriced, start, 0.0, 0.0))
    GpuRollup.objects.bulk_create(rows)
    return SmallFleet(cluster, node, busy, idle, unpriced, deployment)


@pytest.fixture
def synthetic_fleet(db: Any) -> SyntheticFleet:
    """2 nodes x 4 H100s with 2 days of minute and hour rollups ending now, priced."""
    fleet = fleet_create(cluster_name="synth", nodes=2, gpus_per_node=4)
    now = datetime.now(UTC)
    rollups_create(gpus=fleet.gpus, start=now - timedelta(days=2), end=now, seed=3)
    PriceSheet.objects.get_or_create(
        gpu_kind="H100-SXM",
        defaults={"usd_per_gpu_hour": "4.0000", "source": "test", "as_of": date(2025, 1, 1)},
    )
    return fleet
