"""The demo fleet `manage.py demo` lands on: real Azure trace traffic, telemetry derived from it.

Two deployments serve the Azure LLM inference traces of 2023 (conversation and code, CC BY
4.0, `probes/data/traces/`), imported through the same service the upload page uses into the
last whole hour before the demo starts (the hour the assessment's window ends on):

- `llama-3-70b-chat` (Llama 3.3 70B, BF16, tensor parallel 4 on H100s) serves the
  conversation trace;
- `qwen-2.5-7b-code` (Qwen 2.5 7B, BF16, one H100 per replica) serves the code trace.

Each is sized by the engine so that today's configuration carries its trace within the
default SLOs, plus one spare replica (`dashboard.demo_telemetry`: the engine's fewest
replicas + N+1). Their GPUs' telemetry and vLLM metrics are synthetic, derived from the
trace through the engine's simulated busy fraction and load curve with a documented noise
model (`dashboard.demo_telemetry`), over `DAYS` days (the trace's hour repeated). H100 nodes
hold `NODE_GPUS` GPUs; the GPUs left over on the last node serve nothing (idle, so the fleet
page has a waste to show). H100s are priced at the catalog's documented rate (with its source).

A third deployment, `llama-3-8b-batch` on a new L4 node, has 2 hours of telemetry and no
request records, so the assessment answers "not enough data" for it; the L4 has no price
sheet row on purpose, to show how unpriced GPUs appear.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Model

from advisor.engine.catalog import DEFAULT_CATALOG
from advisor.engine.scenario import PriceEntry
from dashboard import demo_telemetry as telemetry
from dashboard.demo_notice import CLUSTER
from probes.models import (
    Cluster,
    EngineRollup,
    Gpu,
    GpuRollup,
    GpuSample,
    ModelDeployment,
    Node,
    PriceSheet,
    TraceFormat,
)
from probes.services import import_trace
from probes.services.bulk import bulk_insert_ignoring_conflicts

DAYS = 7
NODE_GPUS = 4
RAW_SAMPLE_HOURS = 2  # the last hours also get raw 5-s samples (pages' short windows)
NEW_NODE_HOURS = 2  # the L4 node's agent started this long before the last whole hour
CHUNK_ROWS = 200_000  # rows per COPY (~25 MB staged)
TRACES = Path(settings.BASE_DIR) / "probes" / "data" / "traces"
H100 = ("NVIDIA H100 80GB HBM3", 81559 * 2**20, "H100-SXM")
L4 = ("NVIDIA L4", 23034 * 2**20, "L4")


@dataclass(frozen=True)
class DemoDeployment:
    served_name: str
    model_id: str
    model: str  # the engine catalog's name
    trace: str
    tensor_parallel: int


DEPLOYMENTS = (
    DemoDeployment(
        "llama-3-70b-chat", "meta-llama/Llama-3.3-70B-Instruct", "Llama-3-70B",
        "AzureLLMInferenceTrace_conv.csv", 4,
    ),
    DemoDeployment(
        "qwen-2.5-7b-code", "Qwen/Qwen2.5-7B-Instruct", "Qwen2.5-7B",
        "AzureLLMInferenceTrace_code.csv", 1,
    ),
)  # fmt: skip
GAP_DEPLOYMENT = ("llama-3-8b-batch", "meta-llama/Llama-3.1-8B-Instruct")


def demo_fleet_ensure(*, now: datetime | None = None) -> str:
    """Build the demo fleet unless it exists; returns what was built, in a few lines.

    A demo cluster stored by an earlier version (other deployments) is deleted and rebuilt,
    with its assessments: `make demo` always lands on this demo. Other clusters are untouched.
    """
    existing = Cluster.objects.filter(name=CLUSTER).first()
    rebuilt = ""
    if existing is not None:
        served = set(existing.deployments.values_list("served_name", flat=True))
        if served == {d.served_name for d in DEPLOYMENTS} | {GAP_DEPLOYMENT[0]}:
            return f"demo fleet: cluster {CLUSTER!r} already there"
        with transaction.atomic():
            existing.delete()
        rebuilt = f"demo fleet: the stored {CLUSTER!r} cluster predates this demo: rebuilt\n"
    return rebuilt + _build(now or datetime.now(UTC))


def _build(now: datetime) -> str:
    end = now.replace(minute=0, second=0, microsecond=0)  # assessments end on the whole hour
    start = end - timedelta(days=DAYS)
    price = _h100_price()
    loads = {d.served_name: telemetry.trace_load(TRACES / d.trace) for d in DEPLOYMENTS}
    grid = telemetry.minute_grid(start, now)
    # Each minute's minute of the trace: the trace fills the last whole hour before `end`.
    index = {
        name: load.index((grid - (int(end.timestamp()) - 60 * load.minutes)) // 60)
        for name, load in loads.items()
    }
    window = grid < int(end.timestamp())
    sizings = telemetry.size_for_traces(
        [
            telemetry.DemoServing(
                d.served_name, d.model, H100[2], d.tensor_parallel, loads[d.served_name],
                loads[d.served_name].per_minute[index[d.served_name][window]] / 60.0,
            )
            for d in DEPLOYMENTS
        ],
        price=price,
        start_utc=start.isoformat(),
    )  # fmt: skip
    with transaction.atomic():
        cluster = Cluster.objects.create(name=CLUSTER)
        needed = sum(s.gpus for s in sizings.values())
        h100s = _gpus(cluster, "demo-h100", -(-needed // NODE_GPUS), NODE_GPUS, H100)
        served: dict[str, tuple[ModelDeployment, list[Gpu]]] = {}
        at = 0
        for d in DEPLOYMENTS:
            sizing = sizings[d.served_name]
            mine = h100s[at : at + sizing.gpus]
            at += sizing.gpus
            deployment = ModelDeployment.objects.create(
                cluster=cluster,
                served_name=d.served_name,
                model_id=d.model_id,
                replicas=sizing.replicas,
                engine_args={
                    "tensor_parallel_size": d.tensor_parallel,
                    "gpu_memory_utilization": telemetry.GPU_MEMORY_UTILIZATION,
                },
            )
            deployment.gpus.set(mine)
            served[d.served_name] = (deployment, mine)
        spare = h100s[at:]
        l4s = _gpus(cluster, "demo-l4", 1, 2, L4)
        batch = ModelDeployment.objects.create(
            cluster=cluster, served_name=GAP_DEPLOYMENT[0], model_id=GAP_DEPLOYMENT[1]
        )
        batch.gpus.set(l4s)
    rng = np.random.default_rng(7)
    rows = 0
    for d in DEPLOYMENTS:
        load, sizing, minutes = loads[d.served_name], sizings[d.served_name], index[d.served_name]
        deployment, gpus = served[d.served_name]
        busy = sizing.busy_fraction(load.per_minute[minutes] / 60.0)
        rows += _write(gpus, grid, busy, H100[2], rng, end, reserved=True)
        engine = telemetry.engine_rows(deployment.pk, grid, minutes, load, sizing)
        with transaction.atomic():
            rows += _insert(
                EngineRollup, telemetry.ENGINE_COLUMNS, engine, "bucket_start",
                json_columns=frozenset({"histograms"}),
            )  # fmt: skip
    rows += _write(spare, grid, np.zeros(grid.size), H100[2], rng, end, reserved=False)
    # from a whole hour, so the assessment's window (to `end`) holds 2 h at any minute of `now`
    recent = grid[grid >= int((end - timedelta(hours=NEW_NODE_HOURS)).timestamp())]
    rows += _write(l4s, recent, np.zeros(recent.size), L4[2], rng, end, reserved=True)
    imported = 0
    for d in DEPLOYMENTS:
        load = loads[d.served_name]
        at_start = end - timedelta(minutes=load.minutes)
        imported += _import_trace(served[d.served_name][0], TRACES / d.trace, at_start)
    lines = [
        f"demo fleet: {len(h100s) + len(l4s)} GPUs ({len(spare)} H100 unassigned), {rows} GPU "
        f"rollups and samples, {imported} requests from the Azure 2023 traces"
    ]
    for d in DEPLOYMENTS:
        s = sizings[d.served_name]
        lines.append(
            f"  {d.served_name}: {s.model} TP{s.tensor_parallel} on {s.hardware}, the engine "
            f"needs {s.replicas_needed} replica(s) for the {d.trace.split('_')[-1][:-4]} trace "
            f"within the default SLOs (TTFT p95 {s.ttft_p95_s * 1000:.0f} ms, TPOT p95 "
            f"{s.tpot_p95_s * 1000:.0f} ms); running {s.replicas} (N+1) = {s.gpus} GPUs"
        )
    return "\n".join(lines)


def _h100_price() -> PriceEntry:
    """The H100 price sheet row (the catalog's documented rate), created when missing."""
    spec = DEFAULT_CATALOG.gpu(H100[2])
    row, _ = PriceSheet.objects.get_or_create(
        gpu_kind=spec.name,
        defaults={
            "usd_per_gpu_hour": Decimal(f"{spec.price_usd_per_hour:.4f}"),
            "source": f"catalog default: {spec.price_source}"[:255],
            "as_of": date(2025, 1, 1),
        },
    )
    return PriceEntry(float(row.usd_per_gpu_hour), row.source)


def _gpus(
    cluster: Cluster, prefix: str, nodes: int, per_node: int, kind: tuple[str, int, str]
) -> list[Gpu]:
    gpus = []
    for n in range(nodes):
        node = Node.objects.create(cluster=cluster, hostname=f"{prefix}-{n:03d}")
        for i in range(per_node):
            gpus.append(
                Gpu.objects.create(
                    node=node, uuid=f"GPU-{prefix}-{n:03d}-{i}", index=i, model_name=kind[0],
                    memory_bytes=kind[1],
                )
            )  # fmt: skip
    return gpus


def _write(
    gpus: list[Gpu],
    grid: np.ndarray,
    busy: np.ndarray,
    hardware: str,
    rng: np.random.Generator,
    end: datetime,
    *,
    reserved: bool,
) -> int:
    """Each GPU's synthetic minutes as rollups, and raw samples for the last hours."""
    if grid.size == 0:
        return 0
    since = int((end - timedelta(hours=RAW_SAMPLE_HOURS)).timestamp())
    written = 0
    with transaction.atomic():
        for gpu in gpus:
            data = telemetry.gpu_minutes(
                busy=busy, memory_bytes=gpu.memory_bytes, hardware=hardware, rng=rng,
                reserved=reserved,
            )  # fmt: skip
            first = int(grid[0])
            rollups = telemetry.rollup_rows(gpu.pk, first, data)
            written += _insert(GpuRollup, telemetry.ROLLUP_COLUMNS, rollups, "bucket_start")
            samples = telemetry.sample_rows(gpu.pk, first, data, since)
            written += _insert(GpuSample, telemetry.SAMPLE_COLUMNS, samples, "ts")
    return written


def _insert(
    model: type[Model],
    columns: tuple[str, ...],
    rows: Iterable[tuple[object, ...]],
    ts_column: str,
    json_columns: frozenset[str] = frozenset(),
) -> int:
    written = 0
    chunk: list[tuple[object, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK_ROWS:
            written += bulk_insert_ignoring_conflicts(
                model, columns, chunk, ts_columns=frozenset({ts_column}),
                json_columns=json_columns,
            )  # fmt: skip
            chunk = []
    return written + bulk_insert_ignoring_conflicts(
        model, columns, chunk, ts_columns=frozenset({ts_column}), json_columns=json_columns
    )


def _import_trace(deployment: ModelDeployment, path: Path, start: datetime) -> int:
    """Import an Azure trace with its first request at `start` (as our csv, relative times)."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [
            (datetime.fromisoformat(r["TIMESTAMP"][:26]), r["ContextTokens"], r["GeneratedTokens"])
            for r in reader
        ]
    first = min(r[0] for r in rows)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["arrival_s", "prompt_tokens", "output_tokens"])
    for ts, prompt, output in rows:
        writer.writerow([f"{(ts - first).total_seconds():.6f}", prompt, output])
    report = import_trace(
        deployment=deployment,
        file=io.BytesIO(out.getvalue().encode()),
        format=TraceFormat.CSV,
        start=start,
        file_name=path.name,
    )
    if not report.ok:
        raise RuntimeError(report.summary())
    return report.rows_imported
