"""Engine samples from a vLLM server's `/metrics`: gauges, counters, rates and histograms.

Rates are per second since this sampler's previous scrape of the same model (None on the
first scrape and right after a server restart). Histograms (cumulative, see
`probes.agent.vllm_metrics.Histogram.to_json`) ride along at most every
`histogram_interval_s`, to keep batches small at 1 Hz sampling.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from probes.agent.config import VllmTarget
from probes.agent.model_config import ConfigWatch, process_env
from probes.agent.samplers import Observations, Once, Row
from probes.agent.vllm_metrics import VllmMetricsError, VllmSnapshot, parse_snapshots

# The histograms assessments and the dashboard read (canonical names).
HISTOGRAMS = (
    "time_to_first_token_seconds",
    "inter_token_latency_seconds",
    "e2e_request_latency_seconds",
    "request_queue_time_seconds",
    "request_prefill_time_seconds",
    "request_decode_time_seconds",
    "request_prompt_tokens",
    "request_generation_tokens",
)
GAUGES = ("num_requests_running", "num_requests_waiting", "kv_cache_usage_perc")
# snapshot counter -> engine sample field (cumulative) and its rate field
COUNTERS = {
    "prompt_tokens": ("prompt_tokens_total", "prompt_tokens_per_s"),
    "generation_tokens": ("generation_tokens_total", "generation_tokens_per_s"),
    "request_success": ("requests_finished_total", "requests_per_s"),
    "num_preemptions": ("preemptions_total", "preemptions_per_s"),
    "spec_decode_num_drafts": ("spec_decode_drafts_total", None),
    "spec_decode_num_draft_tokens": ("spec_decode_draft_tokens_total", None),
    "spec_decode_num_accepted_tokens": ("spec_decode_accepted_tokens_total", None),
}


def engine_row(
    snapshot: VllmSnapshot, previous: VllmSnapshot | None, instance: str, with_histograms: bool
) -> Row:
    """One engine sample row from a snapshot (and the previous one, for rates)."""
    row: Row = {
        "served_name": snapshot.model_name,
        "instance": instance,
        "ts": snapshot.scraped_at_s,
        "num_requests_running": snapshot.num_requests_running or 0.0,
        "num_requests_waiting": snapshot.num_requests_waiting or 0.0,
    }
    usage = snapshot.kv_cache_usage
    if usage is not None:
        row["kv_cache_usage"] = min(1.0, max(0.0, usage))
    interval_s = snapshot.scraped_at_s - previous.scraped_at_s if previous else 0.0
    # A counter that went down means the server restarted: no rate for this scrape.
    usable = (
        previous is not None
        and interval_s > 0
        and not any(
            snapshot.counters.get(name, 0.0) < value for name, value in previous.counters.items()
        )
    )
    for counter, (total_field, rate_field) in COUNTERS.items():
        value = snapshot.counters.get(counter)
        if value is None:
            continue
        row[total_field] = value
        if rate_field and usable and previous is not None:
            row[rate_field] = (value - previous.counters.get(counter, 0.0)) / interval_s
    if with_histograms:
        row["histograms"] = {
            name: snapshot.histograms[name].to_json()
            for name in HISTOGRAMS
            if name in snapshot.histograms
        }
    return row


# What a scrape parses: gauges and counters each time, histograms only when they ride along.
LIGHT = frozenset((*GAUGES, *COUNTERS))
FULL = LIGHT | frozenset(HISTOGRAMS)


class VllmSampler:
    name = "vllm"

    def __init__(
        self,
        target: VllmTarget,
        client: httpx.Client,
        hostname: str,
        histogram_interval_s: float = 10.0,
        model_env: Mapping[str, str] | None = None,
    ) -> None:
        """`model_env`: the environment of the vLLM process, where its Hugging Face cache is
        found (default: the agent's own)."""
        self.target = target
        self._client = client
        port = urlsplit(target.url).port or (443 if target.url.startswith("https") else 80)
        self.instance = f"{hostname}:{port}"
        self._histogram_interval_s = histogram_interval_s
        self._previous: dict[str, VllmSnapshot] = {}
        self._last_histograms_s: float | None = None
        self._model_ids: dict[str, str] = {}
        self._once = Once()
        self._configs = ConfigWatch(process_env() if model_env is None else model_env)
        self._config_notes: dict[str, Once] = {}

    def sample(self, now_s: float) -> Observations:
        observations = Observations()
        try:
            response = self._client.get(f"{self.target.url}/metrics")
            response.raise_for_status()
            last = self._last_histograms_s
            histograms_due = last is None or now_s - last >= self._histogram_interval_s - 1e-6
            only = FULL if histograms_due else LIGHT
            snapshots = parse_snapshots(response.text, scraped_at_s=now_s, only=only)
        except (httpx.HTTPError, VllmMetricsError) as exc:
            self._once.say(observations, f"vLLM at {self.target.url} unavailable: {exc}")
            return observations
        if self.target.served_name is not None:
            snapshots = {k: v for k, v in snapshots.items() if k == self.target.served_name}
        if not snapshots:
            self._once.say(observations, f"vLLM at {self.target.url} exports no model metrics")
            return observations
        self._once.say(observations, None)
        if histograms_due:
            self._last_histograms_s = now_s
        for model, snapshot in snapshots.items():
            observations.engine_samples.append(
                engine_row(snapshot, self._previous.get(model), self.instance, histograms_due)
            )
            self._previous[model] = snapshot
            observations.deployments.append(self._deployment(model, now_s, observations))
        return observations

    def _deployment(self, model: str, now_s: float, observations: Observations) -> Row:
        if model not in self._model_ids:
            self._model_ids[model] = self._model_id(model)
        model_id = self._model_ids[model]
        row: Row = {"served_name": model, "model_id": model_id}
        if self.target.gpu_uuids:
            row["gpu_uuids"] = list(self.target.gpu_uuids)
        config, note = self._configs.check(model, model_id, now_s)
        if config is not None:
            row["hf_config"] = config
            self._config_notes.setdefault(model, Once()).say(observations, None)
        elif note is not None:
            self._config_notes.setdefault(model, Once()).say(
                observations,
                f"model {model!r}: {note}; the server cannot model it unless its config.json "
                "is uploaded on the deployment's page",
            )
        return row

    def _model_id(self, model: str) -> str:
        """The model's path or Hugging Face id (`root` in /v1/models), else its served name."""
        try:
            response = self._client.get(f"{self.target.url}/v1/models")
            response.raise_for_status()
            for item in response.json().get("data", []):
                if item.get("id") == model and isinstance(item.get("root"), str):
                    return str(item["root"])[:255]
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        return model

    def close(self) -> None:
        pass
