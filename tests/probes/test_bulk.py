"""Bulk insert: straight COPY, then the staged path that skips rows already stored."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from probes.models import Cluster, EngineSample, ModelDeployment
from probes.services.bulk import bulk_insert_ignoring_conflicts

pytestmark = pytest.mark.django_db
T0 = 1_772_445_600.0  # 2026-03-02T10:00:00Z
COLUMNS = ("deployment_id", "instance", "ts", "num_requests_running", "num_requests_waiting",
           "histograms")  # fmt: skip


def _insert(rows: list[tuple[object, ...]]) -> int:
    return bulk_insert_ignoring_conflicts(
        EngineSample, COLUMNS, rows, ts_columns=frozenset({"ts"}),
        json_columns=frozenset({"histograms"}),
    )  # fmt: skip


def test_it_stores_new_rows_and_skips_those_already_stored() -> None:
    cluster = Cluster.objects.create(name="prod")
    deployment = ModelDeployment.objects.create(cluster=cluster, model_id="m", served_name="m")
    hist = {"ttft": {"buckets": [[0.1, 1.0]], "sum": 0.05, "count": 1.0}}
    first = (deployment.id, "a:8000", T0, 2.0, 0.0, hist)
    assert _insert([first]) == 1  # straight COPY
    later = (deployment.id, "a:8000", T0 + 1.5, 3.0, 1.0, None)
    assert _insert([first, later]) == 1  # the COPY meets `first`: staged, `first` skipped
    assert _insert([]) == 0
    stored = list(
        EngineSample.objects.order_by("ts").values_list("ts", "num_requests_running", "histograms")
    )
    assert stored == [
        (datetime(2026, 3, 2, 10, 0, tzinfo=UTC), 2.0, hist),
        (datetime(2026, 3, 2, 10, 0, 1, 500000, tzinfo=UTC), 3.0, None),
    ]
