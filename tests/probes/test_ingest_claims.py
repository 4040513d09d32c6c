"""Ingest's limits on what one node's token may change: other nodes' GPUs, deployments."""

import time

import pytest
from django.test import Client

from probes.models import (
    Gpu,
    GpuMove,
    GpuSample,
    IngestBatch,
    ModelDeployment,
)
from probes.services.ingest import MAX_DEPLOYMENTS_PER_NODE, MAX_NEW_DEPLOYMENTS_PER_BATCH
from tests.probes.helpers import batch, engine_sample, gpu, gpu_sample, post, registered_node

pytestmark = pytest.mark.django_db


def _holder_reporting(client: Client, *, cluster: str, age_s: float) -> str:
    """Node gpu-1 of `cluster` holding GPU-0, its last sample `age_s` seconds old."""
    _node, token = registered_node("gpu-1", cluster)
    now = time.time()
    payload = batch("a-1", gpus=[gpu()], gpu_samples=[gpu_sample(ts=now - age_s)])
    assert post(client, token, payload).status_code == 201
    return token


def test_it_never_moves_a_gpu_into_another_cluster(client: Client) -> None:
    # Given cluster A's node reporting GPU-0 a second ago
    _holder_reporting(client, cluster="a", age_s=1)
    thief, token = registered_node("gpu-9", "b")
    # When a node of cluster B lists it and sends samples for it
    claim = batch("b-1", gpus=[gpu()], gpu_samples=[gpu_sample()])
    response = post(client, token, claim)
    # Then the batch is refused naming the GPU, and nothing of it is stored
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "gpus[0].uuid"
    assert error["message"] == (
        "GPU 'GPU-0' is registered to a node of another cluster; a GPU never moves between "
        "clusters by ingest (an admin can move it)"
    )
    assert Gpu.objects.get(uuid="GPU-0").node.cluster.name == "a"
    assert GpuSample.objects.count() == 1
    assert IngestBatch.objects.filter(node=thief).count() == 0
    # And the refused claim is kept for the admin, once per GPU and claimant
    assert post(client, token, batch("b-2", gpus=[gpu()])).status_code == 400
    move = GpuMove.objects.get()
    assert (move.to_node, move.from_node.hostname, move.outcome, move.attempts) == (
        thief, "gpu-1", "refused", 2,
    )  # fmt: skip


def test_it_never_moves_a_gpu_in_a_batch_that_only_samples_it(client: Client) -> None:
    _holder_reporting(client, cluster="a", age_s=1)
    _thief, token = registered_node("gpu-9", "b")
    response = post(client, token, batch("b-1", gpu_samples=[gpu_sample()]))
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "gpu_samples[0].gpu_uuid"
    assert GpuSample.objects.count() == 1


def test_it_refuses_a_move_while_the_old_node_still_reports_the_gpu(client: Client) -> None:
    _holder_reporting(client, cluster="prod", age_s=60)
    _other, token = registered_node("gpu-2", "prod")
    response = post(client, token, batch("c-1", gpus=[gpu()], gpu_samples=[gpu_sample()]))
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "gpus[0].uuid"
    assert error["message"].startswith("GPU 'GPU-0' is its node reported it 6")
    assert error["message"].endswith(
        "s ago; a GPU moves to another node only after 300 s without samples (or an admin moves it)"
    )
    assert Gpu.objects.get(uuid="GPU-0").node.hostname == "gpu-1"
    assert GpuMove.objects.get().outcome == "refused"


def test_it_moves_a_gpu_whose_old_node_went_silent_and_records_it(client: Client) -> None:
    _holder_reporting(client, cluster="prod", age_s=301)
    new, token = registered_node("gpu-2", "prod")
    response = post(client, token, batch("c-1", gpus=[gpu()], gpu_samples=[gpu_sample()]))
    assert response.status_code == 201, response.content
    assert Gpu.objects.get(uuid="GPU-0").node == new
    move = GpuMove.objects.get()
    assert (move.from_node.hostname, move.to_node, move.outcome, move.attempts) == (
        "gpu-1", new, "moved", 1,
    )  # fmt: skip
    # And both nodes' pages show it
    page = _admin_client().get(f"/nodes/{new.pk}/")
    assert b"GPU moves" in page.content
    assert b"Moved" in page.content


def _admin_client() -> Client:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def test_it_bounds_the_deployments_one_batch_may_create(client: Client) -> None:
    node, token = registered_node()
    names = [f"m{i}" for i in range(MAX_NEW_DEPLOYMENTS_PER_BATCH + 1)]
    samples = [engine_sample(served_name=name) for name in names]
    response = post(client, token, batch("d-1", gpus=[gpu()], engine_samples=samples))
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "field": "deployments",
            "message": "17 served names the cluster has no deployment for ('m0', 'm1', 'm10', "
            "...); one batch may create at most 16",
        }
    ]
    assert ModelDeployment.objects.count() == 0
    assert IngestBatch.objects.count() == 0
    # At the limit it is fine, and the deployments remember which node created them
    ok = post(client, token, batch("d-2", gpus=[gpu()], engine_samples=samples[:-1]))
    assert ok.status_code == 201
    assert ModelDeployment.objects.filter(created_by_node=node).count() == 16


def test_it_bounds_the_deployments_one_node_may_create(client: Client) -> None:
    _node, token = registered_node()
    for k in range(MAX_DEPLOYMENTS_PER_NODE // MAX_NEW_DEPLOYMENTS_PER_BATCH):
        rows = [engine_sample(served_name=f"m{k}-{i}") for i in range(16)]
        assert post(client, token, batch(f"e-{k}", engine_samples=rows)).status_code == 201
    response = post(client, token, batch("e-last", engine_samples=[engine_sample()]))
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == (
        "this node's batches created 64 deployments already; 1 more ('llama') would pass the "
        "limit of 64 per node (an admin can create more, or delete unused ones)"
    )
    # A deployment that exists already is no creation: its samples still go through
    ModelDeployment.objects.create(cluster=_node.cluster, served_name="llama", model_id="x")
    assert post(client, token, batch("e-next", engine_samples=[engine_sample()])).status_code == 201
