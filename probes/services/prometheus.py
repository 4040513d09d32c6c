"""Pull GPU (dcgm-exporter) and vLLM metrics for a time window from an existing Prometheus.

Fills the same tables the agent does. dcgm-exporter labels map to the inventory: `UUID`
(+ `GPU_I_ID` for a MIG instance) -> Gpu, `Hostname` / `hostname` (else `kubernetes_node`,
`node`, or the scrape `instance` host) -> Node of `cluster` (created if new), `gpu` ->
index, `modelName` -> model name; `pod` / `namespace` are kept on the node's labels
(`gpu_pods`: GPU UUID -> "namespace/pod"). vLLM series map by `model_name` to a
ModelDeployment of the cluster and by `instance` to the engine sample's instance; several
engines of one server are summed. Re-pulling an overlapping window stores nothing twice.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import transaction

from probes.agent.samplers.dcgm import MEMORY_FIELDS, SAMPLE_FIELDS, gpu_identity
from probes.agent.samplers.vllm import HISTOGRAMS
from probes.agent.vllm_metrics import Histogram
from probes.ingest.schema import ENGINE_SAMPLE_FIELDS, GPU_SAMPLE_FIELDS
from probes.models import Cluster, EngineSample, Gpu, GpuSample, ModelDeployment, Node
from probes.services.bulk import bulk_insert_ignoring_conflicts
from probes.services.rollups import engine_rollups_compute, gpu_rollups_compute

MIB = 1024 * 1024
MAX_POINTS = 11_000  # Prometheus refuses range queries of more than 11,000 points per series
# Engine gauges and counters: PromQL (old and new names) -> engine sample field.
ENGINE_SERIES = {
    "num_requests_running": "vllm:num_requests_running",
    "num_requests_waiting": "vllm:num_requests_waiting",
    "kv_cache_usage": "vllm:kv_cache_usage_perc or vllm:gpu_cache_usage_perc",
    "prompt_tokens_total": "vllm:prompt_tokens_total",
    "generation_tokens_total": "vllm:generation_tokens_total",
    "requests_finished_total": "vllm:request_success_total",
    "preemptions_total": "vllm:num_preemptions_total",
    "spec_decode_drafts_total": "vllm:spec_decode_num_drafts_total",
    "spec_decode_draft_tokens_total": "vllm:spec_decode_num_draft_tokens_total",
    "spec_decode_accepted_tokens_total": "vllm:spec_decode_num_accepted_tokens_total",
}
RATES = {
    "prompt_tokens_total": "prompt_tokens_per_s",
    "generation_tokens_total": "generation_tokens_per_s",
    "requests_finished_total": "requests_per_s",
    "preemptions_total": "preemptions_per_s",
}
OLD_HISTOGRAM_NAMES = {"inter_token_latency_seconds": "time_per_output_token_seconds"}
# Histograms are stored on engine samples about once a minute (enough for rollups) and on
# each server's last point of the window.
HISTOGRAM_EVERY_S = 60.0


class PrometheusSourceError(RuntimeError):
    """Prometheus could not be queried (unreachable, refused the query)."""


@dataclass
class PrometheusImportReport:
    nodes: set[int] = field(default_factory=set)
    gpus: set[int] = field(default_factory=set)
    deployments: set[int] = field(default_factory=set)
    gpu_samples: int = 0
    engine_samples: int = 0
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "nodes": len(self.nodes),
            "gpus": len(self.gpus),
            "deployments": len(self.deployments),
            "gpu_samples": self.gpu_samples,
            "engine_samples": self.engine_samples,
        }


Series = list[tuple[dict[str, str], list[tuple[float, float]]]]


def prometheus_import(
    *,
    url: str,
    cluster: Cluster,
    start: datetime,
    end: datetime,
    step_s: int = 15,
    headers: dict[str, str] | None = None,
    timeout_s: int = 30,
) -> PrometheusImportReport:
    """Import [start, end] at `step_s` resolution; raises PrometheusSourceError."""
    if end <= start:
        raise ValueError("end: must be after start")
    if step_s < 1:
        raise ValueError("step_s: must be at least 1 second")
    if (end - start).total_seconds() / step_s > MAX_POINTS:
        raise ValueError(
            f"step_s: {step_s} s gives more than {MAX_POINTS} points for this window; "
            "use a longer step or a shorter window"
        )
    query = _Query(url, start, end, step_s, headers, timeout_s)
    report = PrometheusImportReport()
    with transaction.atomic():
        _import_gpus(query, cluster, report)
        _import_engines(query, cluster, report)
    if report.gpus:
        gpu_rollups_compute(start=start, end=end, gpu_ids=report.gpus)
    if report.deployments:
        engine_rollups_compute(start=start, end=end, deployment_ids=report.deployments)
    return report


class _Query:
    def __init__(
        self,
        url: str,
        start: datetime,
        end: datetime,
        step_s: int,
        headers: dict[str, str] | None,
        timeout_s: int,
    ) -> None:
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        # Two quick retries on gateway errors; an unreachable server is reported at once.
        retry = Retry(total=2, connect=0, backoff_factor=0.2, status_forcelist=[502, 503, 504])
        self.client = PrometheusConnect(url=url, headers=headers, timeout=timeout_s, retry=retry)
        self.url = url
        self.start = start.astimezone(UTC)
        self.end = end.astimezone(UTC)
        self.step = f"{step_s}s"

    def range(self, promql: str) -> Series:
        import requests
        from prometheus_api_client.exceptions import PrometheusApiClientException

        try:
            result = self.client.custom_query_range(
                query=promql, start_time=self.start, end_time=self.end, step=self.step
            )
        except (PrometheusApiClientException, requests.RequestException) as exc:
            raise PrometheusSourceError(f"Prometheus at {self.url}: {promql!r}: {exc}") from exc
        series: Series = []
        for item in result or []:
            points = []
            for ts, value in item.get("values", []):
                number = float(value)
                if math.isfinite(number):
                    points.append((float(ts), number))
            series.append((dict(item.get("metric", {})), points))
        return series


# -- GPUs -----------------------------------------------------------------------------------


def _hostname(labels: dict[str, str]) -> str | None:
    for key in ("Hostname", "hostname", "kubernetes_node", "node"):
        if labels.get(key):
            return labels[key]
    instance = labels.get("instance", "")
    return instance.rsplit(":", 1)[0] if instance else None


def _import_gpus(query: _Query, cluster: Cluster, report: PrometheusImportReport) -> None:
    samples: dict[tuple[str, float], dict[str, Any]] = {}
    inventory: dict[str, dict[str, Any]] = {}
    memory: dict[str, dict[str, float]] = defaultdict(dict)
    for name in (*SAMPLE_FIELDS, *MEMORY_FIELDS):
        for labels, points in query.range(name):
            identity = gpu_identity(labels)
            host = _hostname(labels)
            if identity is None or host is None or not points:
                continue
            uuid, parent = identity
            gpu = inventory.setdefault(uuid, {"parent": parent, "labels": labels, "host": host})
            if labels.get("pod"):
                gpu["pod"] = f"{labels.get('namespace', '')}/{labels['pod']}".lstrip("/")
            if name in MEMORY_FIELDS:
                memory[uuid][name] = points[-1][1] * MIB
            if name in SAMPLE_FIELDS:
                target, factor = SAMPLE_FIELDS[name]
                for ts, value in points:
                    row = samples.setdefault((uuid, ts), {})
                    row[target] = value * factor
    if not inventory:
        report.warnings.append("no dcgm-exporter series (DCGM_FI_*) with a UUID label")
        return
    gpu_ids = _gpus_upsert(cluster, inventory, memory, report)
    columns = ("gpu_id", *(f.name for f in GPU_SAMPLE_FIELDS[1:]))
    rows = []
    for (uuid, ts), values in samples.items():
        engine_active = values.pop("_gr_engine_active", None)
        if "util_pct" not in values and engine_active is not None:
            values["util_pct"] = engine_active * 100.0
        if "util_pct" not in values or "mem_used_bytes" not in values:
            continue
        values["util_pct"] = min(100.0, max(0.0, values["util_pct"]))
        values["mem_used_bytes"] = int(values["mem_used_bytes"])
        rows.append((gpu_ids[uuid], ts, *(values.get(name) for name in columns[2:])))
    report.gpu_samples += bulk_insert_ignoring_conflicts(
        GpuSample, columns, rows, ts_columns=frozenset({"ts"})
    )


def _gpus_upsert(
    cluster: Cluster,
    inventory: dict[str, dict[str, Any]],
    memory: dict[str, dict[str, float]],
    report: PrometheusImportReport,
) -> dict[str, int]:
    nodes: dict[str, Node] = {}
    ids: dict[str, int] = {}
    # Physical GPUs before MIG instances, so an instance can point at its parent.
    for uuid, info in sorted(inventory.items(), key=lambda item: item[1]["parent"] is not None):
        host = info["host"]
        if host not in nodes:
            nodes[host], _created = Node.objects.get_or_create(cluster=cluster, hostname=host)
        node = nodes[host]
        labels = info["labels"]
        index_label = labels.get("GPU_I_ID") if info["parent"] else labels.get("gpu")
        values = {
            "node": node,
            "index": int(index_label) if index_label and index_label.isdigit() else 0,
            "model_name": labels.get("modelName") or "unknown",
            "memory_bytes": int(sum(memory.get(uuid, {}).values())),
            "mig_parent_id": ids.get(info["parent"]) if info["parent"] else None,
        }
        gpu, _created = Gpu.objects.update_or_create(uuid=uuid, defaults=values)
        ids[uuid] = gpu.pk
        report.gpus.add(gpu.pk)
        report.nodes.add(node.pk)
        if info.get("pod"):
            pods = dict(node.labels.get("gpu_pods", {}))
            pods[uuid] = info["pod"]
            node.labels = {**node.labels, "gpu_pods": pods}
            node.save(update_fields=["labels"])
    return ids


# -- vLLM -----------------------------------------------------------------------------------


def _by_server(promql: str) -> str:
    """Sum a vLLM expression over its engines, per model and server."""
    return f"sum by (model_name, instance) ({promql})"


def _import_engines(query: _Query, cluster: Cluster, report: PrometheusImportReport) -> None:
    points: dict[tuple[str, str, float], dict[str, Any]] = defaultdict(dict)
    for field_name, promql in ENGINE_SERIES.items():
        expression = _by_server(promql)
        if field_name == "kv_cache_usage":  # a share: averaged over engines, not summed
            expression = f"avg by (model_name, instance) ({promql})"
        for labels, series_points in query.range(expression):
            key = (labels.get("model_name", ""), labels.get("instance", ""))
            if not key[0]:
                continue
            for ts, value in series_points:
                points[(*key, ts)][field_name] = value
    if not points:
        report.warnings.append("no vLLM series (vllm:*) with a model_name label")
        return
    histograms = _histograms(query)
    deployments = _deployments(cluster, {model for model, _i, _t in points}, report)
    nodes = {node.hostname: node.pk for node in cluster.nodes.all()}
    last_histogram: dict[tuple[str, str], float] = {}
    final_ts: dict[tuple[str, str], float] = {}
    for model, instance, ts in points:
        final_ts[(model, instance)] = max(ts, final_ts.get((model, instance), ts))
    previous: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
    columns = ("deployment_id", "node_id", *(f.name for f in ENGINE_SAMPLE_FIELDS[1:]))
    rows = []
    for model, instance, ts in sorted(points, key=lambda key: (key[0], key[1], key[2])):
        values = points[(model, instance, ts)]
        if "num_requests_running" not in values or "num_requests_waiting" not in values:
            continue
        server = (model, instance)
        if server in previous:
            before_ts, before = previous[server]
            for total, rate in RATES.items():
                if total in values and total in before and values[total] >= before[total]:
                    values[rate] = (values[total] - before[total]) / (ts - before_ts)
        previous[server] = (ts, values)
        # About once a minute, and at the window's last point so the window can be diffed.
        due = ts - last_histogram.get(server, -math.inf) >= HISTOGRAM_EVERY_S
        if due or ts == final_ts[server]:
            found = histograms.get((model, instance, ts))
            if found:
                values["histograms"] = {name: hist.to_json() for name, hist in found.items()}
                last_histogram[server] = ts
        if values.get("kv_cache_usage") is not None:
            values["kv_cache_usage"] = min(1.0, max(0.0, values["kv_cache_usage"]))
        rows.append(
            (
                deployments[model],
                nodes.get(instance.rsplit(":", 1)[0]),
                instance,
                ts,
                *(values.get(name) for name in columns[4:]),
            )
        )
    report.engine_samples += bulk_insert_ignoring_conflicts(
        EngineSample, columns, rows,
        ts_columns=frozenset({"ts"}), json_columns=frozenset({"histograms"}),
    )  # fmt: skip


def _histograms(query: _Query) -> dict[tuple[str, str, float], dict[str, Histogram]]:
    """(model, instance, ts) -> cumulative histograms summed over engines."""
    buckets: dict[tuple[str, str, float], dict[str, dict[float, float]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    totals: dict[tuple[str, str, float], dict[str, dict[str, float]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for name in HISTOGRAMS:
        names = [name, *([OLD_HISTOGRAM_NAMES[name]] if name in OLD_HISTOGRAM_NAMES else [])]
        bucket_query = " or ".join(
            f"sum by (model_name, instance, le) (vllm:{n}_bucket)" for n in names
        )
        for labels, series_points in query.range(bucket_query):
            bound = _bound(labels.get("le"))
            if bound is None:
                continue
            for ts, value in series_points:
                key = (labels.get("model_name", ""), labels.get("instance", ""), ts)
                buckets[key][name][bound] = value
        for part in ("sum", "count"):
            part_query = " or ".join(_by_server(f"vllm:{n}_{part}") for n in names)
            for labels, series_points in query.range(part_query):
                for ts, value in series_points:
                    key = (labels.get("model_name", ""), labels.get("instance", ""), ts)
                    totals[key][name][part] = value
    result: dict[tuple[str, str, float], dict[str, Histogram]] = {}
    for key, by_name in buckets.items():
        for name, bounds in by_name.items():
            if math.inf not in bounds:
                continue
            parts = totals[key][name]
            result.setdefault(key, {})[name] = Histogram(
                tuple(sorted(bounds.items())),
                parts.get("sum", 0.0),
                parts.get("count", bounds[math.inf]),
            )
    return result


def _bound(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _deployments(
    cluster: Cluster, models: Iterable[str], report: PrometheusImportReport
) -> dict[str, int]:
    ids = {}
    for model in models:
        deployment, _created = ModelDeployment.objects.get_or_create(
            cluster=cluster, served_name=model, defaults={"model_id": model}
        )
        ids[model] = deployment.pk
        report.deployments.add(deployment.pk)
    return ids


def parse_time(value: str) -> datetime:
    """ISO 8601 (naive = UTC) or Unix seconds, for the command line."""
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
