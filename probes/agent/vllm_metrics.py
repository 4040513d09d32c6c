"""Parse vLLM's Prometheus `/metrics` text into typed snapshots, and diff two snapshots.

Pure (stdlib + prometheus_client): the agent's vLLM sampler and the benchmark jobs (scrape
before and after a run) both use it. Typical use::

    before = fetch_snapshot("http://127.0.0.1:8000")
    ...  # drive load
    after = fetch_snapshot("http://127.0.0.1:8000")
    delta = snapshot_delta(before, after)
    delta.generation_tokens, delta.spec_decode_acceptance_rate, delta.quantile_s("ttft", 0.99)

Names are canonical: the `vllm:` prefix and a counter's `_total` suffix are dropped, and the
old (V0 / pre-0.10) names are mapped to the new ones (`gpu_cache_usage_perc` ->
`kv_cache_usage_perc`, `time_per_output_token_seconds` -> `inter_token_latency_seconds`,
`gpu_prefix_cache_*` -> `prefix_cache_*`). Where a server exports both, the new name wins.

Labels: series are selected by `model_name`; several engines (`engine` label, data
parallelism) are summed, except the KV-cache usage gauge, which is averaged. A counter's other
labels (`finished_reason`, `position`) are summed into its total and also kept per value in
`counter_breakdowns`; a gauge with other labels (`engine_sleep_state{sleep_state}`) is kept
only per value in `gauge_breakdowns`. `_created` and `_info` series are ignored. Histograms
keep cumulative buckets, sum and count.
"""

from __future__ import annotations

import http.client
import math
import time
import urllib.request
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

PREFIX = "vllm:"
_V = TypeVar("_V")
# Old name -> current name (VLLM_NOTES.md); both may appear on transition releases.
ALIASES: Mapping[str, str] = {
    "gpu_cache_usage_perc": "kv_cache_usage_perc",
    "time_per_output_token_seconds": "inter_token_latency_seconds",
    "gpu_prefix_cache_queries": "prefix_cache_queries",
    "gpu_prefix_cache_hits": "prefix_cache_hits",
}
# Gauges that are a share of capacity: averaged over engines instead of summed.
AVERAGED_GAUGES = frozenset({"kv_cache_usage_perc", "cpu_cache_usage_perc"})
# Labels that identify a series' origin rather than a breakdown of the value.
IDENTITY_LABELS = frozenset({"model_name", "engine", "le"})
# Short names for the latency histograms used by callers (`delta.quantile_s("ttft", 0.5)`).
LATENCY_HISTOGRAMS: Mapping[str, str] = {
    "ttft": "time_to_first_token_seconds",
    "itl": "inter_token_latency_seconds",
    "e2e": "e2e_request_latency_seconds",
    "queue": "request_queue_time_seconds",
    "prefill": "request_prefill_time_seconds",
    "decode": "request_decode_time_seconds",
}


class VllmMetricsError(ValueError):
    """The text is not Prometheus exposition format, or holds no vLLM series for the model."""


@dataclass(frozen=True)
class Histogram:
    """A cumulative Prometheus histogram: `buckets` are (upper bound, cumulative count)."""

    buckets: tuple[tuple[float, float], ...]
    sum: float
    count: float

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count > 0 else None

    def quantile(self, q: float) -> float | None:
        """Estimate the q-quantile as Prometheus' `histogram_quantile` does.

        Linear interpolation inside the bucket holding rank q*count; the first bucket starts
        at 0 (or at its bound if negative); a rank in the +Inf bucket returns the highest
        finite bound. None when the histogram is empty.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], got {q}")
        if not self.buckets or self.count <= 0:
            return None
        total = self.buckets[-1][1]
        if total <= 0:
            return None
        rank = q * total
        lower_bound, lower_count = 0.0, 0.0
        for index, (bound, cumulative) in enumerate(self.buckets):
            if cumulative >= rank:
                if math.isinf(bound):
                    return self.buckets[index - 1][0] if index > 0 else None
                if index == 0 and bound <= 0:
                    return bound
                in_bucket = cumulative - lower_count
                if in_bucket <= 0:
                    return bound
                return lower_bound + (bound - lower_bound) * (rank - lower_count) / in_bucket
            lower_bound, lower_count = bound, cumulative
        return self.buckets[-1][0]

    def minus(self, earlier: Histogram) -> Histogram:
        """The observations made since `earlier`; a reset (count went down) keeps self."""
        if self.count < earlier.count or _bounds(self) != _bounds(earlier):
            return self
        buckets = tuple(
            (bound, max(0.0, count - old))
            for (bound, count), (_b, old) in zip(self.buckets, earlier.buckets, strict=True)
        )
        return Histogram(buckets, max(0.0, self.sum - earlier.sum), self.count - earlier.count)

    def plus(self, other: Histogram) -> Histogram:
        """Sum of two histograms with the same bounds (several engines of one model)."""
        if _bounds(self) != _bounds(other):
            raise VllmMetricsError("cannot add histograms with different bucket bounds")
        buckets = tuple(
            (bound, count + theirs)
            for (bound, count), (_b, theirs) in zip(self.buckets, other.buckets, strict=True)
        )
        return Histogram(buckets, self.sum + other.sum, self.count + other.count)

    def to_json(self) -> dict[str, object]:
        """JSON-safe form; the +Inf bound is written as the string "+Inf"."""
        return {
            "buckets": [[_bound_to_json(b), c] for b, c in self.buckets],
            "sum": self.sum,
            "count": self.count,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Histogram:
        raw = data.get("buckets")
        if not isinstance(raw, list):
            raise VllmMetricsError("histogram: 'buckets' must be a list of [bound, count]")
        buckets: list[tuple[float, float]] = []
        for item in raw:
            if not isinstance(item, list | tuple) or len(item) != 2:
                raise VllmMetricsError("histogram: each bucket must be [bound, count]")
            buckets.append((_bound_from_json(item[0]), _number(item[1], "bucket count")))
        buckets.sort(key=lambda pair: pair[0])
        return cls(
            tuple(buckets), _number(data.get("sum"), "sum"), _number(data.get("count"), "count")
        )


@dataclass(frozen=True)
class VllmSnapshot:
    """One scrape of one model's vLLM metrics at `scraped_at_s` (Unix seconds)."""

    scraped_at_s: float
    model_name: str
    gauges: Mapping[str, float] = field(default_factory=dict)
    counters: Mapping[str, float] = field(default_factory=dict)
    counter_breakdowns: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    gauge_breakdowns: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    histograms: Mapping[str, Histogram] = field(default_factory=dict)

    @property
    def num_requests_running(self) -> float | None:
        return self.gauges.get("num_requests_running")

    @property
    def num_requests_waiting(self) -> float | None:
        return self.gauges.get("num_requests_waiting")

    @property
    def kv_cache_usage(self) -> float | None:
        """Share of the KV cache in use, 0..1 (vLLM names it `_perc` but exports a fraction)."""
        return self.gauges.get("kv_cache_usage_perc")

    @property
    def spec_decode(self) -> SpecDecodeCounters | None:
        return SpecDecodeCounters.from_counters(self.counters)


@dataclass(frozen=True)
class SpecDecodeCounters:
    """Speculative-decoding counters; `num_drafts` is None on old servers that lack it."""

    num_drafts: float | None
    num_draft_tokens: float
    num_accepted_tokens: float

    @classmethod
    def from_counters(cls, counters: Mapping[str, float]) -> SpecDecodeCounters | None:
        draft_tokens = counters.get("spec_decode_num_draft_tokens")
        accepted = counters.get("spec_decode_num_accepted_tokens")
        if draft_tokens is None or accepted is None:
            return None
        return cls(counters.get("spec_decode_num_drafts"), draft_tokens, accepted)


@dataclass(frozen=True)
class VllmDelta:
    """What happened between two snapshots of one model (counter increases, windowed histograms).

    `counter_reset` is True when the server restarted in between; then, as Prometheus'
    `increase()` does, the later values are taken as the increase.
    """

    interval_s: float
    counters: Mapping[str, float]
    histograms: Mapping[str, Histogram]
    counter_reset: bool

    def counter(self, name: str) -> float:
        return self.counters.get(name, 0.0)

    @property
    def prompt_tokens(self) -> float:
        return self.counter("prompt_tokens")

    @property
    def generation_tokens(self) -> float:
        return self.counter("generation_tokens")

    @property
    def preemptions(self) -> float:
        return self.counter("num_preemptions")

    @property
    def requests_finished(self) -> float:
        return self.counter("request_success")

    def rate_per_s(self, name: str) -> float | None:
        return self.counter(name) / self.interval_s if self.interval_s > 0 else None

    @property
    def spec_decode_acceptance_rate(self) -> float | None:
        """accepted draft tokens / proposed draft tokens in the window (None if no drafts)."""
        draft_tokens = self.counters.get("spec_decode_num_draft_tokens")
        accepted = self.counters.get("spec_decode_num_accepted_tokens")
        if not draft_tokens or accepted is None:
            return None
        return accepted / draft_tokens

    @property
    def spec_decode_mean_acceptance_length(self) -> float | None:
        """1 + accepted tokens per draft: tokens emitted per target-model step with drafting."""
        drafts = self.counters.get("spec_decode_num_drafts")
        accepted = self.counters.get("spec_decode_num_accepted_tokens")
        if not drafts or accepted is None:
            return None
        return 1.0 + accepted / drafts

    def quantile_s(self, histogram: str, q: float) -> float | None:
        """Quantile of a windowed histogram, by short name (ttft, itl, e2e, ...) or full name."""
        found = self.histograms.get(LATENCY_HISTOGRAMS.get(histogram, histogram))
        return found.quantile(q) if found is not None else None

    def latency_quantiles_s(
        self, qs: Iterable[float] = (0.5, 0.9, 0.99)
    ) -> dict[str, dict[str, float | None]]:
        """{"ttft": {"p50": ..., "p90": ..., "p99": ...}, "itl": ..., "e2e": ...} in seconds."""
        wanted = tuple(qs)
        return {
            short: {f"p{_percent_label(q)}": self.quantile_s(short, q) for q in wanted}
            for short, full in LATENCY_HISTOGRAMS.items()
            if full in self.histograms
        }


def canonical_name(family_name: str) -> str:
    """`vllm:gpu_cache_usage_perc` -> `kv_cache_usage_perc`; counters lose `_total`."""
    name = family_name.removeprefix(PREFIX)
    return ALIASES.get(name, name)


def parse_snapshots(
    text: str, *, scraped_at_s: float | None = None, only: Collection[str] | None = None
) -> dict[str, VllmSnapshot]:
    """Every model's snapshot in one `/metrics` text, keyed by `model_name`.

    `only` (canonical names) keeps just those metrics: lines of other families are dropped
    before parsing, which makes a scrape that needs a few gauges and counters ~10x cheaper
    (a vLLM server exports ~600 lines, mostly histogram buckets). Raises VllmMetricsError
    when the text is not Prometheus exposition format.
    """
    at_s = time.time() if scraped_at_s is None else scraped_at_s
    builders: dict[str, _Builder] = {}
    if only is not None:
        text = select_lines(text, frozenset(only))
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, TypeError, IndexError) as exc:
        raise VllmMetricsError(f"not Prometheus text format: {exc}") from exc
    for family in families:
        # `_created` families are counter creation times; `_info` gauges carry only labels.
        skipped = family.name.endswith(("_created", "_info"))
        if not family.name.startswith(PREFIX) or skipped:
            continue
        raw = family.name.removeprefix(PREFIX)
        name = canonical_name(family.name)
        is_alias = raw != name
        for sample in family.samples:
            model = sample.labels.get("model_name", "")
            builders.setdefault(model, _Builder()).add(family.type, name, is_alias, sample)
    return {model: builder.build(at_s, model) for model, builder in builders.items()}


def parse_snapshot(
    text: str,
    *,
    model_name: str | None = None,
    scraped_at_s: float | None = None,
    only: Collection[str] | None = None,
) -> VllmSnapshot:
    """The snapshot of one model; `model_name` may be omitted when the server serves one."""
    snapshots = parse_snapshots(text, scraped_at_s=scraped_at_s, only=only)
    if model_name is not None:
        if model_name not in snapshots:
            raise VllmMetricsError(
                f"no vLLM series for model_name={model_name!r}; found {sorted(snapshots)}"
            )
        return snapshots[model_name]
    if len(snapshots) != 1:
        raise VllmMetricsError(
            f"expected the metrics of one model, found {sorted(snapshots) or 'none'}: "
            "pass model_name"
        )
    return next(iter(snapshots.values()))


_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def select_lines(text: str, only: frozenset[str]) -> str:
    """The lines of `text` that belong to the metrics named (canonically) in `only`.

    prometheus_client (vLLM's exporter) writes each family as one block starting with its
    `# HELP` line, so whole blocks are kept or dropped; other layouts go line by line.
    """
    if text.startswith("# HELP "):
        blocks = text[len("# HELP ") :].split("\n# HELP ")
        kept_blocks = [block for block in blocks if _wanted(block[: block.find(" ")], only)]
        return "".join(f"# HELP {block}\n" for block in kept_blocks)
    kept = []
    wanted: dict[str, bool] = {}
    for line in text.splitlines():
        if not line:
            continue
        if line[0] == "#":
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
                continue
            name = parts[2]
        else:
            end = len(line)
            for stop in ("{", " "):
                found = line.find(stop)
                if 0 <= found < end:
                    end = found
            name = line[:end]
        keep = wanted.get(name)
        if keep is None:
            keep = wanted[name] = _wanted(name, only)
        if keep:
            kept.append(line)
    return "\n".join(kept) + "\n"


def _wanted(name: str, only: frozenset[str]) -> bool:
    if not name.startswith(PREFIX) or name.endswith("_created"):
        return False
    candidates = [name, *(name.removesuffix(s) for s in _SUFFIXES if name.endswith(s))]
    return any(canonical_name(candidate) in only for candidate in candidates)


def fetch_text(base_url: str, *, timeout_s: float = 5.0) -> str:
    """GET `<base_url>/metrics` as text (stdlib only; raises OSError on failure).

    A malformed or cut-short answer (`http.client.HTTPException`: IncompleteRead,
    BadStatusLine) is raised as OSError too, so callers handle one kind of failure.
    """
    url = f"{base_url.rstrip('/')}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body: bytes = response.read()
    except http.client.HTTPException as exc:
        raise OSError(f"GET {url}: {exc!r}") from exc
    return body.decode("utf-8", errors="replace")


def fetch_snapshot(
    base_url: str, *, model_name: str | None = None, timeout_s: float = 5.0
) -> VllmSnapshot:
    """Scrape a vLLM server now and parse one model's snapshot."""
    text = fetch_text(base_url, timeout_s=timeout_s)
    return parse_snapshot(text, model_name=model_name, scraped_at_s=time.time())


def snapshot_delta(before: VllmSnapshot, after: VllmSnapshot) -> VllmDelta:
    """Counter increases and windowed histograms between two snapshots of one model."""
    if before.model_name != after.model_name:
        raise VllmMetricsError(
            f"snapshots of different models: {before.model_name!r} and {after.model_name!r}"
        )
    reset = any(after.counters.get(name, 0.0) < value for name, value in before.counters.items())
    reset = reset or any(
        name in after.histograms and after.histograms[name].count < hist.count
        for name, hist in before.histograms.items()
    )
    counters = {
        name: value if reset else max(0.0, value - before.counters.get(name, 0.0))
        for name, value in after.counters.items()
    }
    histograms = {
        name: _windowed(hist, before.histograms.get(name), reset)
        for name, hist in after.histograms.items()
    }
    return VllmDelta(
        interval_s=max(0.0, after.scraped_at_s - before.scraped_at_s),
        counters=counters,
        histograms=histograms,
        counter_reset=reset,
    )


def _windowed(after: Histogram, before: Histogram | None, reset: bool) -> Histogram:
    return after if reset or before is None else after.minus(before)


class _Builder:
    """Accumulates one model's samples; aliases yield to current names at build time."""

    def __init__(self) -> None:
        # (name, is_alias) -> accumulated values, so an old name never adds to a new one.
        self.gauges: dict[tuple[str, bool], list[float]] = {}
        self.counters: dict[tuple[str, bool], float] = {}
        self.breakdowns: dict[tuple[str, bool], dict[str, float]] = {}
        self.gauge_breakdowns: dict[tuple[str, bool], dict[str, float]] = {}
        self.hist_parts: dict[tuple[str, bool], dict[tuple[tuple[str, str], ...], _HistParts]] = {}

    def add(self, kind: str, name: str, is_alias: bool, sample: Sample) -> None:
        key = (name, is_alias)
        value = float(sample.value)
        if math.isnan(value):
            return
        if kind == "counter":
            if not sample.name.endswith("_total"):
                return  # `_created` timestamps ride along with counters
            self.counters[key] = self.counters.get(key, 0.0) + value
            extra = _breakdown_key(sample.labels)
            if extra:
                per_value = self.breakdowns.setdefault(key, {})
                per_value[extra] = per_value.get(extra, 0.0) + value
        elif kind == "gauge":
            extra = _breakdown_key(sample.labels)
            if extra:  # e.g. engine_sleep_state{sleep_state}: per value only, a sum means nothing
                per_value = self.gauge_breakdowns.setdefault(key, {})
                per_value[extra] = per_value.get(extra, 0.0) + value
            else:
                self.gauges.setdefault(key, []).append(value)
        elif kind == "histogram":
            series = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            parts = self.hist_parts.setdefault(key, {}).setdefault(series, _HistParts())
            suffix = sample.name.rsplit("_", 1)[-1]
            if suffix == "bucket":
                parts.buckets[_parse_bound(sample.labels.get("le", "+Inf"))] = value
            elif suffix == "sum":
                parts.sum = value
            elif suffix == "count":
                parts.count = value

    def build(self, scraped_at_s: float, model_name: str) -> VllmSnapshot:
        gauges = {
            name: (sum(values) / len(values) if name in AVERAGED_GAUGES else sum(values))
            for name, values in _prefer_current(self.gauges).items()
        }
        histograms: dict[str, Histogram] = {}
        for name, series in _prefer_current(self.hist_parts).items():
            total: Histogram | None = None
            for parts in series.values():
                hist = parts.histogram()
                total = hist if total is None else total.plus(hist)
            if total is not None:
                histograms[name] = total
        return VllmSnapshot(
            scraped_at_s=scraped_at_s,
            model_name=model_name,
            gauges=gauges,
            counters=_prefer_current(self.counters),
            counter_breakdowns=_prefer_current(self.breakdowns),
            gauge_breakdowns=_prefer_current(self.gauge_breakdowns),
            histograms=histograms,
        )


@dataclass
class _HistParts:
    buckets: dict[float, float] = field(default_factory=dict)
    sum: float = 0.0
    count: float = 0.0

    def histogram(self) -> Histogram:
        buckets = tuple(sorted(self.buckets.items()))
        count = self.count if self.count else (buckets[-1][1] if buckets else 0.0)
        return Histogram(buckets, self.sum, count)


def _prefer_current(values: Mapping[tuple[str, bool], _V]) -> dict[str, _V]:
    current = {name: v for (name, alias), v in values.items() if not alias}
    for (name, alias), v in values.items():
        if alias and name not in current:
            current[name] = v
    return current


def _breakdown_key(labels: Mapping[str, str]) -> str:
    extra = sorted((k, v) for k, v in labels.items() if k not in IDENTITY_LABELS)
    if len(extra) == 1:
        return extra[0][1]
    return ",".join(f"{k}={v}" for k, v in extra)


def _bounds(hist: Histogram) -> tuple[float, ...]:
    return tuple(bound for bound, _count in hist.buckets)


def _parse_bound(text: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise VllmMetricsError(f"histogram bucket bound le={text!r} is not a number") from exc


def _bound_to_json(bound: float) -> float | str:
    return "+Inf" if math.isinf(bound) else bound


def _bound_from_json(value: object) -> float:
    if isinstance(value, str):
        return _parse_bound(value)
    return _number(value, "bucket bound")


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise VllmMetricsError(f"histogram: {what} must be a number, got {value!r}")
    result = float(value)
    if math.isnan(result):
        raise VllmMetricsError(f"histogram: {what} must not be NaN")
    return result


def _percent_label(q: float) -> str:
    percent = q * 100
    return f"{percent:g}".replace(".", "_")
