"""Fixtures for the Django side of benchmarks: a registered endpoint on a fake server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from advisor.models import BenchmarkEndpoint
from probes.models import Cluster, Gpu, ModelDeployment, Node
from tests.advisor.benchmarking.fake_openai import MODEL, FakeServer, fake_server_thread


@pytest.fixture
def fake_server() -> Iterator[tuple[str, FakeServer]]:
    with fake_server_thread() as served:
        yield served


def make_endpoint(base_url: str, **extra: Any) -> BenchmarkEndpoint:
    cluster, _ = Cluster.objects.get_or_create(name="bench")
    node, _ = Node.objects.get_or_create(cluster=cluster, hostname="bench-node")
    Gpu.objects.get_or_create(
        node=node, uuid="GPU-bench-0",
        defaults={"index": 0, "model_name": "NVIDIA H100 80GB HBM3", "memory_bytes": 80 * 2**30},
    )  # fmt: skip
    deployment, _ = ModelDeployment.objects.get_or_create(
        cluster=cluster, served_name=extra.pop("served_name", MODEL),
        defaults={"model_id": "fake/model", "engine_args": extra.pop("engine_args", {})},
    )  # fmt: skip
    return BenchmarkEndpoint.objects.create(
        node=node, deployment=deployment, base_url=base_url, **extra
    )


@pytest.fixture
def endpoint(transactional_db: Any, fake_server: tuple[str, FakeServer]) -> BenchmarkEndpoint:
    """A registered endpoint on the fake server (rows committed: the client's threads see them)."""
    url, _server = fake_server
    return make_endpoint(url, max_concurrency=64, max_duration_s=60, max_requests=1000)
