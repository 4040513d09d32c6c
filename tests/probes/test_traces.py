"""Trace import: every format, row-and-column errors, all-or-nothing, dry runs, the command."""

import gzip
import io
from datetime import UTC, datetime
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
