"""The demo fleet `manage.py demo` lands on: real Azure trace traffic, synthetic GPU telemetry.

Two deployments get the Azure LLM inference traces of 2023 (conversation and code, CC BY 4.0,
`probes/data/traces/`) through the same import service the upload page uses, shifted so
they end just now. The GPUs' utilization is `dashboard.synthetic` (no real agent runs in a
demo), 7 days of minute and hour rollups. H100s are priced at the catalog's documented rate
(with its source); the L4 node has no price on purpose, to show how unpriced GPUs appear.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import transaction

from advisor.engine.catalog import DEFAULT_CATALOG
from dashboard.synthetic import fleet_create, rollups_create
from probes.models import Cluster, Gpu, Node, PriceSheet, TraceFormat
from probes.services import import_trace

CLUSTER = "demo"
DAYS = 7
TRACES = Path(settings.BASE_DIR) / "probes" / "data" / "traces"
DEPLOYMENTS = {
    "llama-3-70b-chat": "AzureLLMInferenceTrace_conv.csv",
    "codellama-34b": "AzureLLMInferenceTrace_code.csv",
}


def demo_fleet_ensure(*, now: datetime | None = None) -> str:
    """Build the demo fleet unless it exists; returns a one-line summary."""
    if Cluster.objects.filter(name=CLUSTER).exists():
        return f"demo fleet: cluster {CLUSTER!r} already there"
    now = now or datetime.now(UTC)
    fleet = fleet_create(
        cluster_name=CLUSTER, nodes=2, gpus_per_node=4, deployment_names=tuple(DEPLOYMENTS)
    )
    with transaction.atomic():
        l4_node = Node.objects.create(cluster=fleet.cluster, hostname="demo-l4-000")
        l4s = [
            Gpu.objects.create(
                node=l4_node,
                uuid=f"GPU-demo-l4-{i}",
                index=i,
                model_name="NVIDIA L4",
                memory_bytes=23034 * 2**20,
            )
            for i in range(2)
        ]
        h100 = DEFAULT_CATALOG.gpu("H100-SXM")
        PriceSheet.objects.get_or_create(
            gpu_kind=h100.name,
            defaults={
                "usd_per_gpu_hour": Decimal(f"{h100.price_usd_per_hour:.4f}"),
                "source": f"catalog default: {h100.price_source}"[:255],
                "as_of": date(2025, 1, 1),
            },
        )
    rows = rollups_create(gpus=[*fleet.gpus, *l4s], start=now - timedelta(days=DAYS), end=now)
    imported = 0
    for deployment in fleet.deployments:
        imported += _import_azure(deployment, TRACES / DEPLOYMENTS[deployment.served_name], now)
    return (
        f"demo fleet: {len(fleet.gpus) + len(l4s)} GPUs, {rows} GPU rollups, "
        f"{imported} requests from the Azure 2023 traces"
    )


def _import_azure(deployment: object, path: Path, now: datetime) -> int:
    """Import an Azure trace moved to end a minute ago (as our csv with relative arrivals)."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [
            (datetime.fromisoformat(r["TIMESTAMP"][:26]), r["ContextTokens"], r["GeneratedTokens"])
            for r in reader
        ]
    first = min(r[0] for r in rows)
    span = max(r[0] for r in rows) - first
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["arrival_s", "prompt_tokens", "output_tokens"])
    for ts, prompt, output in rows:
        writer.writerow([f"{(ts - first).total_seconds():.3f}", prompt, output])
    report = import_trace(
        deployment=deployment,  # type: ignore[arg-type]
        file=io.BytesIO(out.getvalue().encode()),
        format=TraceFormat.CSV,
        start=now - span - timedelta(minutes=1),
        file_name=path.name,
    )
    if not report.ok:
        raise RuntimeError(report.summary())
    return report.rows_imported
