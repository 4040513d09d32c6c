"""`manage.py demo`'s fleet: Azure trace traffic through the import service, priced H100s."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from probes.models import Cluster, Gpu, PriceSheet, RequestRecord, TraceImport

pytestmark = pytest.mark.django_db


def test_the_demo_builds_its_fleet_once_and_the_fleet_page_shows_it(
    client: Client, settings, tmp_path, alice
) -> None:
    settings.VAR_DIR = tmp_path
    out = StringIO()
    call_command("demo", stdout=out)
    assert "demo fleet: 10 GPUs" in out.getvalue()
    assert "28185 requests from the Azure 2023 traces" in out.getvalue()
    assert Gpu.objects.filter(node__cluster__name="demo").count() == 10
    assert RequestRecord.objects.count() == 8819 + 19366  # both traces, every row
    assert TraceImport.objects.count() == 2
    price = PriceSheet.objects.get(gpu_kind="H100-SXM")
    assert price.source.startswith("catalog default: AWS EC2 Capacity Blocks")

    call_command("demo", stdout=StringIO())  # again: nothing duplicated
    assert Cluster.objects.filter(name="demo").count() == 1
    assert RequestRecord.objects.count() == 28185

    client.force_login(alice)
    page = client.get("/").content.decode()
    assert ">10<" in page.split('data-testid="kpi-gpus"')[1].split("</div>")[0]
    assert "No price for" in page  # the L4 node, on purpose
