"""Traces page: arrival rate, lengths, burstiness; upload through probes' import service."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from advisor.burstiness import burstiness_gamma_shape, requests_per_minute
from advisor.models import AssessmentSchedule
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


def test_it_measures_the_cv_of_inter_arrival_times(small_fleet: SmallFleet) -> None:
    gaps = [1.0, 1.0, 1.0, 9.0, 1.0, 1.0, 1.0, 9.0, 1.0]  # bursts with pauses
    records(small_fleet, gaps)
    window = Window("6h", END - timedelta(hours=6), END, end_given=True)
    stats = trace_stats(deployment=small_fleet.deployment, window=window)
    observed = np.array(gaps[1:])  # the first gap is before the first request
    assert stats.request_count == 9
    assert stats.inter_arrival_cv == pytest.approx(observed.std() / observed.mean())
    assert stats.burstiness is None  # too few gaps to estimate a gamma shape
    assert stats.percentiles(stats.prompt_tokens)["p50"] == 500.0
    assert stats.mean_rate_rps == pytest.approx(8 / observed.sum())
    # No rollups yet: the rate is binned from the records (all in one minute or two).
    assert stats.rate_rps.sum() * 60 == 9


def test_evenly_paced_arrivals_have_a_zero_cv(small_fleet: SmallFleet) -> None:
    records(small_fleet, [2.0] * 20)
    window = Window("6h", END - timedelta(hours=6), END, end_given=True)
    assert trace_stats(deployment=small_fleet.deployment, window=window).inter_arrival_cv == 0.0


def test_burstiness_is_the_assessments_gamma_shape_and_the_cv_is_named_apart(
    client: Client, carol, small_fleet: SmallFleet
) -> None:
    # Issue 16, item 7: "Burstiness" was the CV here and a gamma shape on the assessment.
    gaps = np.random.default_rng(5).gamma(shape=0.5, scale=4.0, size=400)
    records(small_fleet, [float(g) for g in gaps])
    window = Window("6h", END - timedelta(hours=6), END, end_given=True)
    stats = trace_stats(deployment=small_fleet.deployment, window=window)
    arrival = np.array(
        [t.timestamp() for t in RequestRecord.objects.order_by("arrival_ts")
         .values_list("arrival_ts", flat=True)]
    )  # fmt: skip
    start_s = arrival[0] // 60 * 60
    # the function the assessment gives the engine its burstiness with
    expected = burstiness_gamma_shape(arrival, requests_per_minute(arrival, start_s), start_s)
    assert expected is not None
    assert stats.burstiness == pytest.approx(expected)
    assert stats.inter_arrival_cv == pytest.approx(np.diff(arrival).std() / np.diff(arrival).mean())
    assert stats.burstiness != pytest.approx(stats.inter_arrival_cv, rel=0.05)

    client.force_login(carol)
    query = {"deployment": str(small_fleet.deployment.pk), "window": "6h", "end": END.isoformat()}
    page = client.get("/traces/", query).content.decode()
    kpi = page.split('data-testid="kpi-burstiness"')[1].split("</div>")[0]
    assert '<span class="label">Burstiness</span>' in kpi
    assert f'<span class="value">{expected:.2f}</span>' in kpi
    assert f"inter-arrival CV {stats.inter_arrival_cv:.2f}" in kpi
    assert "Burstiness (CV)" not in page


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


AZURE_CODE = (
    Path(settings.BASE_DIR) / "probes" / "data" / "traces" / "AzureLLMInferenceTrace_code.csv"
)


def _upload_azure(client: Client, deployment_pk: int, **fields: str) -> Any:
    upload = SimpleUploadedFile(AZURE_CODE.name, AZURE_CODE.read_bytes(), content_type="text/csv")
    return client.post(
        "/traces/import/",
        {"deployment": deployment_pk, "format": "azure", "file": upload, **fields},
    )


def _imports_table(client: Client) -> str:
    page = client.get("/traces/").content.decode()
    return page.split('data-testid="imports"')[1].split("</table>")[0]


def test_it_shifts_an_uploaded_azure_trace_to_end_now_and_shows_where_it_came_from(
    client: Client, bob, small_fleet: SmallFleet, django_capture_on_commit_callbacks
) -> None:
    client.force_login(bob)
    with django_capture_on_commit_callbacks(execute=True):
        response = _upload_azure(client, small_fleet.deployment.pk, shift_end_now="on")
    text = response.content.decode()
    assert response.status_code == 200, text
    assert "imported 8819 requests" in text
    assert "(end now: shifted +" in text
    assert 'data-testid="import-warning"' not in text
    record = TraceImport.objects.get()
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    assert record.last_arrival_ts in (hour - timedelta(seconds=1), hour - timedelta(seconds=3601))
    table = _imports_table(client)
    assert "<td>2023-11-16 18:17:03 &ndash; 2023-11-16 19:14:19</td>" in table
    assert f"<td>end now: {record.shift_text}</td>" in table
    assert record.shift_text.startswith("+")
    assert 'data-testid="import-warning"' not in table


def test_it_warns_when_an_uploaded_trace_lies_outside_every_assessment_window(
    client: Client, bob, small_fleet: SmallFleet
) -> None:
    AssessmentSchedule.objects.create(cluster=small_fleet.cluster, window_days=60)
    client.force_login(bob)
    text = _upload_azure(client, small_fleet.deployment.pk).content.decode()
    warning = text.split('data-testid="import-warning"')[1].split("</p>")[0]
    assert "the trace (2023-11-16 18:17 to 2023-11-16 19:14 UTC) lies before every" in warning
    assert "(the last 24 h, 7 d, 14 d, 30 d and 60 d, ending" in warning
    assert "end now" in warning
    table = _imports_table(client)
    assert '<td><span class="muted">none</span></td>' in table  # no shift
    assert "lies before every assessment window" in table.split('data-testid="import-warning"')[1]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"shift_start_at": "next tuesday"},
         "shift_start_at: expected a date and time such as 2025-01-31 14:00 (UTC)"),
        ({"shift_start_at": "2026-01-01 00:00", "shift_end_now": "on"},
         "shift_start_at: choose one shift: clear this or untick shift_end_now"),
    ],
)  # fmt: skip
def test_a_bad_shift_names_the_field_and_stores_nothing(
    client: Client, bob, small_fleet: SmallFleet, fields: dict[str, str], error: str
) -> None:
    client.force_login(bob)
    response = _upload_azure(client, small_fleet.deployment.pk, **fields)
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not TraceImport.objects.exists()
    assert not RequestRecord.objects.exists()


def test_an_uploaded_mooncake_trace_shows_its_measured_prefix_reuse(
    client: Client, bob, small_fleet: SmallFleet, django_capture_on_commit_callbacks
) -> None:
    client.force_login(bob)
    fixture = Path(__file__).parents[1] / "probes" / "data" / "mooncake_prefix.jsonl"
    upload = SimpleUploadedFile("mooncake.jsonl", fixture.read_bytes())
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/traces/import/",
            {"deployment": small_fleet.deployment.pk, "format": "mooncake", "file": upload},
        )
    text = response.content.decode()
    assert response.status_code == 200, text
    # 1536 of 3624 prompt tokens sit in 512-token blocks seen before (tests/probes)
    assert "imported 4 requests" in text
    assert "; prefix reuse 42% of prompt tokens (block hashes)" in text
    view = text.split('href="/traces/?')[1].split('"')[0].replace("&amp;", "&")
    page = client.get("/traces/?" + view).content.decode()
    kpi = page.split('data-testid="kpi-prefix-reuse"')[1].split("</div>")[0]
    assert '<span class="value">42.4%</span>' in kpi
    assert "block hashes of 4 requests" in kpi
    cell = _imports_table(client).split('data-testid="import-prefix-reuse"')[1].split("</td>")[0]
    assert cell.endswith(">42.4%")


def test_a_window_without_block_hashes_says_reuse_is_unknown(
    client: Client, bob, small_fleet: SmallFleet
) -> None:
    records(small_fleet, [1.0, 2.0, 3.0])
    client.force_login(bob)
    page = client.get(f"/traces/?deployment={small_fleet.deployment.pk}").content.decode()
    kpi = page.split('data-testid="kpi-prefix-reuse"')[1].split("</div>")[0]
    assert '<span class="value">unknown</span>' in kpi
    assert "no block hashes in this window" in kpi
