"""Traces page: arrival rate, lengths, burstiness; upload through probes' import service."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from dashboard.selectors.traces import trace_stats
from dashboard.windows import Window
from probes.models import RequestRecord, TraceImport
from tests.dashboard.conftest import END, SmallFleet

pytestmark = pytest.mark.django_db


def records(fleet: SmallFleet, gaps_s: list[float]) -> None:
    t = END - timedelta(hours=1)
    rows = []
    for i, gap in enumerate(gaps_s):
        t += timedelta(seconds=gap)
        rows.append(
            RequestRecord(
                deployment=fleet.deployment, arrival_ts=t, prompt_tokens=100 * (i + 1),
                output_tokens=10 * (i + 1), ttft_s=0.1, e2e_s=1.0, source="proxy",
            )
        )  # fmt: skip
    RequestRecord.objects.bulk_create(rows)


def test_it_measures_burstiness_as_the_cv_of_inter_arrival_times(small_fleet: SmallFleet) -> None:
    gaps = [1.0, 1.0, 1.0, 9.0, 1.0, 1.0, 1.0, 9.0, 1.0]  # bursts with pauses
    records(small_fleet, gaps)
    window = Window("6h", END - timedelta(hours=6), END, end_given=True)
    stats = trace_stats(deployment=small_fleet.deployment, window=window)
    observed = np.array(gaps[1:])  # the first gap is before the first request
    assert stats.request_count == 9
    assert stats.burstiness_cv == pytest.approx(observed.std() / observed.mean())
    assert stats.percentiles(stats.prompt_tokens)["p50"] == 500.0
    assert stats.mean_rate_rps == pytest.approx(8 / observed.sum())
    # No rollups yet: the rate is binned from the records (all in one minute or two).
    assert stats.rate_rps.sum() * 60 == 9


def test_evenly_paced_arrivals_have_zero_burstiness(small_fleet: SmallFleet) -> None:
    records(small_fleet, [2.0] * 20)
    window = Window("6h", END - timedelta(hours=6), END, end_given=True)
    assert trace_stats(deployment=small_fleet.deployment, window=window).burstiness_cv == 0.0


def test_an_operator_imports_a_trace_and_sees_it(
    client: Client, bob, small_fleet: SmallFleet, django_capture_on_commit_callbacks
) -> None:
    client.force_login(bob)
    body = (
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2025-03-10 10:00:00.0,100,10\n"
        "2025-03-10 10:00:00.5,200,20\n"
        "2025-03-10 10:00:03.0,300,30\n"
    )
    upload = SimpleUploadedFile("azure.csv", body.encode(), content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/traces/import/",
            {"deployment": small_fleet.deployment.pk, "format": "azure", "file": upload},
        )
    text = response.content.decode()
    assert response.status_code == 200, text
    assert "azure.csv: imported 3 requests" in text
    assert TraceImport.objects.get().request_count == 3
    view = text.split('href="/traces/?')[1].split('"')[0].replace("&amp;", "&")
    page = client.get("/traces/?" + view).content.decode()
    assert 'data-testid="kpi-requests"' in page
    assert ">3<" in page.split('data-testid="kpi-requests"')[1].split("</div>")[0]


def test_a_bad_trace_lists_its_errors_by_row_and_stores_nothing(
    client: Client, bob, small_fleet: SmallFleet
) -> None:
    client.force_login(bob)
    body = (
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2025-03-10 10:00:00.0,100,10\n"
        "2025-03-10 10:00:01.0,-5,10\n"
        "not a time,100,10\n"
    )
    upload = SimpleUploadedFile("bad.csv", body.encode(), content_type="text/csv")
    response = client.post(
        "/traces/import/",
        {"deployment": small_fleet.deployment.pk, "format": "azure", "file": upload},
    )
    assert response.status_code == 400
    text = response.content.decode()
    table = text.split('data-testid="import-errors"')[1].split("</table>")[0]
    assert '<td class="num">3</td><td>ContextTokens</td>' in table
    assert '<td class="num">4</td><td>TIMESTAMP</td>' in table
    assert "Nothing was imported" in text
    assert not RequestRecord.objects.exists()
    assert not TraceImport.objects.exists()


def test_the_form_names_a_missing_field(client: Client, bob, small_fleet: SmallFleet) -> None:
    client.force_login(bob)
    response = client.post("/traces/import/", {"format": "azure"})
    assert response.status_code == 400
    text = response.content.decode()
    assert "deployment: This field is required." in text
    assert "file: This field is required." in text


def test_the_page_offers_the_latest_requests_when_the_window_is_empty(
    client: Client, carol, small_fleet: SmallFleet
) -> None:
    records(small_fleet, [1.0, 2.0, 3.0])
    client.force_login(carol)
    text = client.get("/traces/", {"deployment": small_fleet.deployment.pk}).content.decode()
    assert "No requests in this window" in text  # they are from 2025-03, "now" is later
    link = text.split("The latest arrived")[1].split('href="?')[1].split('"')[0]
    page = client.get("/traces/?" + link.replace("&amp;", "&")).content.decode()
    assert "No requests in this window" not in page
    assert ">3<" in page.split('data-testid="kpi-requests"')[1].split("</div>")[0]
