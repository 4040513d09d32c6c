import pytest
from django.db import IntegrityError
from django.utils import timezone

from probes.models import Cluster, Gpu, GpuSample, Node


@pytest.mark.django_db
def test_it_stores_only_the_digest_of_an_agent_token() -> None:
    node = Node(cluster=Cluster.objects.create(name="prod"), hostname="gpu-1")
    token = node.issue_token()
    node.save()
    node.refresh_from_db()
    assert len(token) >= 43
    assert token not in (node.agent_token_hash or "")
    assert node.agent_token_hash == Node.hash_token(token)


@pytest.mark.django_db
def test_it_refuses_two_samples_of_one_gpu_at_one_instant() -> None:
    node = Node.objects.create(cluster=Cluster.objects.create(name="prod"), hostname="gpu-1")
    gpu = Gpu.objects.create(
        node=node,
        uuid="GPU-1",
        index=0,
        model_name="NVIDIA H100 80GB HBM3",
        memory_bytes=85_899_345_920,
    )
    ts = timezone.now()
    GpuSample.objects.create(gpu=gpu, ts=ts, util_pct=40.0, mem_used_bytes=1)
    with pytest.raises(IntegrityError):
        GpuSample.objects.create(gpu=gpu, ts=ts, util_pct=41.0, mem_used_bytes=1)
