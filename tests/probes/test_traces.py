"""Trace import: every format, row-and-column errors, all-or-nothing, dry runs, the command."""

import gzip
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from probes.models import (
    Cluster,
    ModelDeployment,
    RequestRecord,
    RequestRollup,
    TraceImport,
)
from probes.services import import_trace, trace_import

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
AZURE = ROOT / "probes" / "data" / "traces"
DATA = Path(__file__).parent / "data"
START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def deployment() -> ModelDeployment:
    cluster = Cluster.objects.create(name="prod")
    return ModelDeployment.objects.create(cluster=cluster, model_id="m", served_name="llama")


def _records(deployment: ModelDeployment) -> list[tuple]:
    return list(
        RequestRecord.objects.filter(deployment=deployment)
        .order_by("arrival_ts")
        .values_list("arrival_ts", "prompt_tokens", "output_tokens", "ttft_s", "e2e_s", "status")
    )


@pytest.mark.parametrize(
    ("name", "rows", "first", "last"),
    [
        ("AzureLLMInferenceTrace_code.csv", 8819, "2023-11-16 18:17:03.979960",
         "2023-11-16 19:14:19.928016"),
        ("AzureLLMInferenceTrace_conv.csv", 19366, "2023-11-16 18:15:46.680590",
         "2023-11-16 19:14:08.402527"),
    ],
)  # fmt: skip
def test_it_imports_the_azure_2023_traces(
    deployment: ModelDeployment,
    name: str,
    rows: int,
    first: str,
    last: str,
    django_capture_on_commit_callbacks,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        report = trace_import(deployment=deployment, file=AZURE / name, format="azure")
    assert report.ok, report.errors
    assert (report.rows_read, report.rows_imported) == (rows, rows)
    assert RequestRecord.objects.filter(deployment=deployment, source="import").count() == rows
    assert report.first_arrival == datetime.fromisoformat(first).replace(tzinfo=UTC)
    assert report.last_arrival == datetime.fromisoformat(last).replace(tzinfo=UTC)
    record = TraceImport.objects.get()
    assert (record.request_count, record.format, record.file_name) == (rows, "azure", name)
    # The import's hours were rolled up on commit (eager Celery in tests).
    hourly = RequestRollup.objects.filter(deployment=deployment, resolution="1h")
    assert sum(hourly.values_list("request_count", flat=True)) == rows
    assert record.requests.count() == rows


def test_it_reads_the_first_azure_row_exactly(deployment: ModelDeployment) -> None:
    trace_import(deployment=deployment, file=AZURE / "AzureLLMInferenceTrace_code.csv",
                 format="azure")  # fmt: skip
    first = _records(deployment)[0]
    assert first == (datetime(2023, 11, 16, 18, 17, 3, 979960, tzinfo=UTC), 4808, 10, None,
                     None, "ok")  # fmt: skip


def test_it_imports_burstgpt_relative_to_the_start(deployment: ModelDeployment) -> None:
    report = trace_import(deployment=deployment, file=DATA / "burstgpt.csv", format="burstgpt",
                          start=START)  # fmt: skip
    assert report.ok
    assert [(r[0].second, r[0].minute, r[1], r[2], r[5]) for r in _records(deployment)] == [
        (5, 0, 472, 18, "ok"),
        (45, 0, 1087, 0, "error"),  # 0 response tokens: a failed request
        (58, 1, 417, 346, "ok"),
    ]


def test_it_imports_mooncake_json_lines(deployment: ModelDeployment) -> None:
    report = trace_import(deployment=deployment, file=DATA / "mooncake.jsonl",
                          format="mooncake", start=START)  # fmt: skip
    assert report.ok
    rows = _records(deployment)
    assert [(r[0] - START).total_seconds() for r in rows] == [0.0, 1.5, 2.25]
    assert [(r[1], r[2]) for r in rows] == [(6955, 52), (6472, 26), (4, 1)]


def test_it_keeps_mooncake_block_hashes_and_measures_their_reuse(
    deployment: ModelDeployment,
) -> None:
    report = trace_import(deployment=deployment, file=DATA / "mooncake_prefix.jsonl",
                          format="mooncake", start=START)  # fmt: skip
    assert report.ok, report.errors
    stored = RequestRecord.objects.filter(deployment=deployment).order_by("arrival_ts")
    assert list(stored.values_list("prefix_block_hashes", "prefix_block_tokens")) == [
        ([1, 2], 512), ([1, 2, 3], 512), ([1, 4], 512), ([5, 6], 512),
    ]  # fmt: skip
    # full 512-token blocks seen before: 0, 1024 of 1300 (the third block is partial), 512 of
    # 600 (block 4 is partial), 0 of 700: 1536 of 3624 prompt tokens
    assert report.prefix_reuse_share == pytest.approx(1536 / 3624)
    assert TraceImport.objects.get().prefix_reuse_share == pytest.approx(1536 / 3624)
    assert report.summary().endswith("; prefix reuse 42% of prompt tokens (block hashes)")
    assert TraceImport.objects.get().prefix_reuse_text == (
        "prefix reuse 42% of prompt tokens (block hashes)"
    )


def test_it_leaves_reuse_unknown_for_a_trace_without_hashes(deployment: ModelDeployment) -> None:
    report = trace_import(deployment=deployment, file=DATA / "burstgpt.csv", format="burstgpt",
                          start=START)  # fmt: skip
    assert report.prefix_reuse_share is None
    record = TraceImport.objects.get()
    assert record.prefix_reuse_text == "prefix reuse unknown (no block hashes)"
    assert set(RequestRecord.objects.values_list("prefix_block_hashes", flat=True)) == {None}


def test_it_imports_a_vllm_bench_result(deployment: ModelDeployment) -> None:
    report = trace_import(deployment=deployment, file=DATA / "vllm-bench.json",
                          format="vllm-bench")  # fmt: skip
    assert report.ok
    rows = _records(deployment)
    # Saved at 12:00:10 after a 10 s run: the first request left at 12:00:00.
    assert [r[0] for r in rows] == [
        START,
        START.replace(microsecond=500000),
        START.replace(second=2, microsecond=750000),
    ]
    assert rows[0][1:] == (32, 128, 0.25, 1.75, "ok")
    assert rows[2][5] == "error"


def test_it_imports_our_csv(deployment: ModelDeployment) -> None:
    report = trace_import(deployment=deployment, file=DATA / "ours.csv", format="csv")
    assert report.ok
    assert _records(deployment) == [
        (START, 10, 20, 0.1, 1.0, "ok"),
        (datetime(2026, 1, 5, 12, 0, 1, 500000, tzinfo=UTC), 11, 21, None, None, "error"),
    ]


def test_it_imports_a_django_upload_and_leaves_it_open(deployment: ModelDeployment) -> None:
    upload = SimpleUploadedFile("trace.csv", (DATA / "ours.csv").read_bytes())
    report = import_trace(deployment=deployment, file=upload, format="csv", dry_run=False)
    assert report.ok
    assert report.file_name == "trace.csv"
    assert report.to_dict()["rows_imported"] == 2
    assert not upload.closed


def test_it_reads_gzipped_uploads(deployment: ModelDeployment) -> None:
    upload = io.BytesIO(gzip.compress((DATA / "ours.csv").read_bytes()))
    report = import_trace(deployment=deployment, file=upload, format="csv", file_name="t.csv.gz")
    assert report.ok
    assert report.rows_imported == 2


@pytest.mark.parametrize(
    ("fmt", "content", "row", "column", "message"),
    [
        ("azure", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,12,3\n"
         "2023-11-16 18:17:04,abc,3\n", 3, "ContextTokens", "'abc' is not a whole number"),
        ("azure", "TIMESTAMP,ContextTokens\n2023-11-16 18:17:03,12\n", 1, "GeneratedTokens",
         "missing column"),
        ("azure", "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n", 2, "TIMESTAMP",
         "not an ISO 8601 time"),
        ("azure", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,1\n", 2, "",
         "expected 3 values, got 2"),
        ("burstgpt", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
         "-5,ChatGPT,1,1,2,API log\n", 2, "Timestamp", "finite number >= 0"),
        ("mooncake", '{"timestamp": 0, "input_length": 5}\n', 1, "output_length", "missing"),
        ("mooncake", '{"timestamp": 0, "input_length": 5, "output_length": 1}\nnot json\n', 2,
         "", "not a JSON object"),
        ("mooncake", '{"timestamp": 0, "input_length": 600, "output_length": 1, '
         '"hash_ids": [7, "x"]}\n', 1, "hash_ids[1]", "'x' is not an integer in 0..2^63-1"),
        ("mooncake", '{"timestamp": 0, "input_length": 4, "output_length": 1, '
         '"hash_ids": [7, 8]}\n', 1, "hash_ids",
         "2 blocks of 512 tokens for a 4-token prompt (at most 1)"),
        ("vllm-bench", '{"input_lens": [1], "output_lens": [1]}', 0, "start_times",
         "--save-detailed"),
        ("vllm-bench", '{"date": "20260105-120010", "input_lens": [1, 2], "output_lens": [1],'
         ' "start_times": [0, 1]}', 0, "output_lens", "has 1 items; input_lens has 2"),
        ("csv", "arrival_ts,prompt_tokens,output_tokens,status\n2026-01-05T12:00:00,1,1,meh\n", 2,
         "status", "'meh' is not ok, error or aborted"),
        ("csv", "arrival_ts,prompt_tokens,output_tokens\n2026-01-05T12:00:00,1,99999999999\n", 2,
         "output_tokens", "out of range"),
        ("azure", "", 1, "", "the file is empty"),
    ],
)  # fmt: skip
def test_it_names_the_row_and_column_and_imports_nothing(
    deployment: ModelDeployment, fmt: str, content: str, row: int, column: str, message: str
) -> None:
    upload = io.BytesIO(content.encode())
    report = trace_import(deployment=deployment, file=upload, format=fmt, file_name="bad")
    assert not report.ok
    error = report.errors[0]
    assert (error.row, error.column) == (row, column), report.errors
    assert message in error.message
    assert report.rows_imported == 0
    assert RequestRecord.objects.count() == 0
    assert TraceImport.objects.count() == 0


def test_a_bad_row_after_thousands_of_good_ones_leaves_nothing(
    deployment: ModelDeployment,
) -> None:
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    lines += [
        f"2023-11-16 18:{i // 600:02d}:{(i // 10) % 60:02d}.{i % 10},10,5" for i in range(12000)
    ]
    lines += ["2023-11-16 19:00:00,10,-5"]
    report = trace_import(deployment=deployment, file=io.BytesIO("\n".join(lines).encode()),
                          format="azure", file_name="big.csv")  # fmt: skip
    assert [str(e) for e in report.errors] == [
        "row 12002, column GeneratedTokens: -5 is out of range 0..2147483647"
    ]
    assert report.rows_read == 12000
    assert RequestRecord.objects.count() == 0  # two chunks had been inserted: rolled back
    assert TraceImport.objects.count() == 0


def test_it_reports_many_errors_at_once_up_to_a_cap(deployment: ModelDeployment) -> None:
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"] + ["x,1,1"] * 80
    report = trace_import(deployment=deployment, file=io.BytesIO("\n".join(lines).encode()),
                          format="azure")  # fmt: skip
    assert len(report.errors) == 50
    assert report.errors_truncated
    assert "(and more)" in report.summary()


def test_a_dry_run_validates_and_stores_nothing(deployment: ModelDeployment) -> None:
    report = trace_import(deployment=deployment, file=AZURE / "AzureLLMInferenceTrace_code.csv",
                          format="azure", dry_run=True)  # fmt: skip
    assert report.ok
    assert report.rows_read == 8819
    assert report.rows_imported == 0
    assert "would import 8819 requests" in report.summary()
    assert RequestRecord.objects.count() == 0
    assert TraceImport.objects.count() == 0


def test_it_refuses_a_file_that_is_not_text(deployment: ModelDeployment) -> None:
    report = trace_import(deployment=deployment, file=io.BytesIO(b"\xff\xfe\x00\x81" * 10),
                          format="azure")  # fmt: skip
    assert "not UTF-8" in report.errors[0].message
    assert RequestRecord.objects.count() == 0


def test_the_command_imports_and_creates_the_deployment(capsys: pytest.CaptureFixture) -> None:
    call_command(
        "import_trace", str(DATA / "mooncake.jsonl"), "--format", "mooncake",
        "--deployment", "lab/kimi", "--create", "--start", "2026-01-05T12:00:00",
    )  # fmt: skip
    assert "imported 3 requests from 2026-01-05 12:00:00" in capsys.readouterr().out
    assert RequestRecord.objects.filter(deployment__served_name="kimi").count() == 3


def test_the_command_fails_naming_the_row_and_stores_nothing(
    deployment: ModelDeployment, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,1,x\n")
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_trace", str(bad), "--format", "azure", "--deployment", "prod/llama")
    assert "bad.csv: row 2, column GeneratedTokens" in capsys.readouterr().err
    assert RequestRecord.objects.count() == 0
    with pytest.raises(CommandError, match="does not exist"):
        call_command("import_trace", str(bad), "--format", "azure", "--deployment", "prod/nope")


# --- shifting absolute traces (issue 16 item 2) -------------------------------------------

NOW = datetime(2026, 1, 5, 12, 34, 56, tzinfo=UTC)
CODE = AZURE / "AzureLLMInferenceTrace_code.csv"
CODE_FIRST = datetime(2023, 11, 16, 18, 17, 3, 979960, tzinfo=UTC)
CODE_LAST = datetime(2023, 11, 16, 19, 14, 19, 928016, tzinfo=UTC)


def _span(deployment: ModelDeployment) -> tuple[datetime, datetime]:
    rows = RequestRecord.objects.filter(deployment=deployment).order_by("arrival_ts")
    first, last = rows.first(), rows.last()
    assert first is not None
    assert last is not None
    return first.arrival_ts, last.arrival_ts


def test_it_shifts_an_azure_trace_to_end_now_and_keeps_where_it_came_from(
    deployment: ModelDeployment,
) -> None:
    report = trace_import(
        deployment=deployment, file=CODE, format="azure", shift_end_now=True, now=NOW
    )
    assert report.ok, report.summary()
    # The last request lands one second before 12:00, the end of the windows assessments read.
    end = datetime(2026, 1, 5, 11, 59, 59, tzinfo=UTC)
    offset = end - CODE_LAST
    assert _span(deployment) == (CODE_FIRST + offset, end)
    assert RequestRecord.objects.filter(deployment=deployment).count() == 8819
    record = TraceImport.objects.get()
    assert (record.shift, record.shift_s) == ("end_now", offset.total_seconds())
    assert (record.original_first_arrival_ts, record.original_last_arrival_ts) == (
        CODE_FIRST, CODE_LAST,
    )  # fmt: skip
    assert (record.first_arrival_ts, record.last_arrival_ts) == (CODE_FIRST + offset, end)
    assert record.shift_text == "+780 d 16:45:39.071984"
    assert report.warning is None
    assert report.summary() == (
        "AzureLLMInferenceTrace_code.csv: imported 8819 requests from 2026-01-05 11:02:43 to "
        "2026-01-05 11:59:59 UTC (end now: shifted +780 d 16:45:39.071984; the file starts "
        "2023-11-16 18:17:03 UTC)"
    )


def test_it_shifts_a_trace_to_start_at_a_time(deployment: ModelDeployment) -> None:
    at = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    report = trace_import(
        deployment=deployment, file=CODE, format="azure", shift_start_at=at, now=NOW
    )
    assert report.ok
    assert _span(deployment) == (at, at + (CODE_LAST - CODE_FIRST))
    record = TraceImport.objects.get()
    assert (record.shift, record.shift_s) == ("start_at", (at - CODE_FIRST).total_seconds())
    assert report.warning is None  # inside the last 7 days ending 12:00 on the 5th


def test_it_warns_when_an_unshifted_trace_lies_outside_every_assessment_window(
    deployment: ModelDeployment,
) -> None:
    report = trace_import(deployment=deployment, file=CODE, format="azure", now=NOW)
    assert report.ok
    assert _span(deployment) == (CODE_FIRST, CODE_LAST)  # stored as the file says
    assert TraceImport.objects.get().shift == ""
    assert report.warning == (
        "the trace (2023-11-16 18:17 to 2023-11-16 19:14 UTC) lies before every assessment "
        "window (the last 24 h, 7 d, 14 d and 30 d, ending 2026-01-05 12:00 UTC; the longest "
        'starts 2025-12-06 12:00 UTC): assessments will not use it. Import it again with "end '
        'now" (its last request just before the current hour) or "start at" a time inside them.'
    )


def test_it_refuses_both_shifts_at_once_and_stores_nothing(deployment: ModelDeployment) -> None:
    report = trace_import(
        deployment=deployment, file=CODE, format="azure", shift_end_now=True,
        shift_start_at=datetime(2026, 1, 1, tzinfo=UTC), now=NOW,
    )  # fmt: skip
    assert not report.ok
    assert str(report.errors[0]) == (
        "file, column shift_start_at: choose one shift: start at a time, or end now"
    )
    assert TraceImport.objects.count() == 0
    assert RequestRecord.objects.count() == 0


def test_a_shifted_import_of_a_bad_file_names_the_row_and_stores_nothing(
    deployment: ModelDeployment,
) -> None:
    body = b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,1,2\nnot-a-time,1,2\n"
    report = import_trace(
        deployment=deployment, file=io.BytesIO(body), format="azure", shift_end_now=True,
        file_name="bad.csv", now=NOW,
    )  # fmt: skip
    assert [str(e) for e in report.errors] == [
        "row 3, column TIMESTAMP: 'not-a-time' is not an ISO 8601 time or Unix seconds"
    ]
    assert TraceImport.objects.count() == 0
    assert RequestRecord.objects.count() == 0


def test_the_command_shifts_a_trace_to_end_now(
    deployment: ModelDeployment, capsys: pytest.CaptureFixture
) -> None:
    call_command(
        "import_trace", str(CODE), "--format", "azure", "--deployment", "prod/llama",
        "--shift-end-now",
    )  # fmt: skip
    out = capsys.readouterr()
    assert "(end now: shifted +" in out.out
    assert "warning" not in out.err
    record = TraceImport.objects.get()
    assert record.shift == "end_now"
    assert record.original_last_arrival_ts == CODE_LAST
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    assert record.last_arrival_ts in (hour - timedelta(seconds=1), hour - timedelta(seconds=3601))


def test_the_command_warns_about_a_trace_outside_every_window(
    deployment: ModelDeployment, capsys: pytest.CaptureFixture
) -> None:
    call_command("import_trace", str(CODE), "--format", "azure", "--deployment", "prod/llama")
    assert (
        "warning: the trace (2023-11-16 18:17 to 2023-11-16 19:14 UTC) lies before every "
        "assessment window" in capsys.readouterr().err
    )
    assert TraceImport.objects.get().shift == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shift-start-at", "next tuesday"],
         "--shift-start-at: expected ISO 8601 (2026-01-05T14:00, UTC) or Unix seconds, got "
         "'next tuesday'"),
        (["--shift-start-at", "2026-01-01T00:00", "--shift-end-now"],
         "--shift-start-at, --shift-end-now: choose one shift, not both"),
    ],
)  # fmt: skip
def test_the_command_refuses_a_bad_shift_naming_the_option_and_stores_nothing(
    args: list[str], message: str
) -> None:
    with pytest.raises(CommandError) as caught:
        call_command(
            "import_trace", str(CODE), "--format", "azure", "--deployment", "lab/new",
            "--create", *args,
        )  # fmt: skip
    assert str(caught.value) == message
    assert ModelDeployment.objects.filter(served_name="new").count() == 0
    assert TraceImport.objects.count() == 0
    assert RequestRecord.objects.count() == 0
