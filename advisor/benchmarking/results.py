"""What a benchmark run produces: one `RequestResult` per request and a `BenchmarkResult`.

Times are seconds (`_s`) measured with `time.perf_counter()`; `sent_s` is relative to the start
of the timed run. The definitions follow `vllm bench serve` so figures compare one to one:

- TTFT: send -> first stream frame with non-empty `choices` (for chat, the role frame).
- ITL: gaps between later frames with non-empty `choices` (one frame may carry several
  tokens, e.g. with speculative decoding).
- e2e: send -> last frame with non-empty `choices` (the usage frame and `[DONE]` do not count).
- TPOT: (e2e - TTFT) / (output tokens - 1), None for a single output token.
- prompt and output tokens: from the final `usage` frame (`stream_options.include_usage`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

RequestStatus = Literal["ok", "error", "timeout", "cancelled", "not_sent"]
RunStatus = Literal["completed", "failed", "cancelled", "duration_capped"]

REQUEST_STATUSES: tuple[RequestStatus, ...] = ("ok", "error", "timeout", "cancelled", "not_sent")


@dataclass(frozen=True)
class RequestResult:
    """One request of a run.

    `status`: ok (streamed to `[DONE]`), error (HTTP error, error frame, dropped stream),
    timeout (connect, read or total timeout), cancelled (in flight when the run was cancelled
    or hit its duration cap), not_sent (the run stopped before its turn came).
    `queue_s` is how long it waited for the concurrency cap after its arrival time.
    """

    index: int
    status: RequestStatus
    scheduled_s: float
    expected_prompt_tokens: int
    expected_output_tokens: int
    sent_s: float | None = None
    queue_s: float = 0.0
    ttft_s: float | None = None
    e2e_s: float | None = None
    itl_s: tuple[float, ...] = ()
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    tokens_from_usage: bool = True
    http_status: int | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first, as `vllm bench serve` computes it."""
        if not self.ok or self.e2e_s is None or self.ttft_s is None:
            return None
        if self.output_tokens is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["itl_s"] = list(self.itl_s)
        data["tpot_s"] = self.tpot_s
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RequestResult:
        known = set(cls.__dataclass_fields__)
        values = {key: value for key, value in data.items() if key in known}
        values["itl_s"] = tuple(float(gap) for gap in values.get("itl_s") or ())
        status = values.get("status")
        if status not in REQUEST_STATUSES:
            raise ValueError(f"status: expected one of {REQUEST_STATUSES}, got {status!r}")
        return cls(**values)


@dataclass(frozen=True)
class PromptReport:
    """How the prompts were made and how exactly they hit the requested token counts.

    `mode` token_ids: the prompt is sent as token ids (exact by construction). text: text made
    with the server's own tokenizer (`/tokenize`, `/detokenize`) and checked against it;
    `mismatched` prompts could not be brought to the exact count within the retry budget and
    `max_abs_error_tokens` is the worst miss. `clipped` requests were shortened to fit the
    model's context (only with `clip_to_max_model_len`).
    """

    mode: Literal["token_ids", "text"]
    count: int
    mismatched: int = 0
    max_abs_error_tokens: int = 0
    clipped: int = 0
    template_overhead_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchmarkResult:
    """One run: status, per-request results, summary and the server's metrics over the window.

    `summary` uses `vllm bench serve` field names where they overlap (see `summary.summarize`).
    `started_at_unix_s` + `duration_s` is the measured window (setup and warm-up come before;
    a run that never got that far keeps the time it was asked for).
    `server_metrics` is the `/metrics` delta over the run (empty when not scraped) and
    `metrics_error` says why a scrape failed (the run itself is not failed by that);
    `warnings` holds other non-fatal trouble (e.g. a cancel callback that raised).
    """

    status: RunStatus
    error: str
    target: Mapping[str, Any]
    workload_name: str
    started_at_unix_s: float
    duration_s: float
    requests: Sequence[RequestResult]
    summary: Mapping[str, Any]
    server_metrics: Mapping[str, Any] = field(default_factory=dict)
    metrics_error: str = ""
    prompts: PromptReport | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def output_throughput(self) -> float:
        value = self.summary.get("output_throughput")
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else 0.0

    def to_json(self, *, include_requests: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status,
            "error": self.error,
            "target": dict(self.target),
            "workload_name": self.workload_name,
            "started_at_unix_s": self.started_at_unix_s,
            "duration_s": self.duration_s,
            "summary": dict(self.summary),
            "server_metrics": dict(self.server_metrics),
            "metrics_error": self.metrics_error,
            "prompts": self.prompts.to_json() if self.prompts else None,
            "config": dict(self.config),
            "warnings": list(self.warnings),
        }
        if include_requests:
            data["requests"] = [request.to_json() for request in self.requests]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BenchmarkResult:
        prompts = data.get("prompts")
        return cls(
            status=data["status"],
            error=data.get("error", ""),
            target=data.get("target", {}),
            workload_name=data.get("workload_name", ""),
            started_at_unix_s=float(data.get("started_at_unix_s", 0.0)),
            duration_s=float(data.get("duration_s", 0.0)),
            requests=tuple(RequestResult.from_json(item) for item in data.get("requests", [])),
            summary=data.get("summary", {}),
            server_metrics=data.get("server_metrics", {}),
            metrics_error=data.get("metrics_error", ""),
            prompts=PromptReport(**prompts) if isinstance(prompts, Mapping) else None,
            config=data.get("config", {}),
            warnings=tuple(str(w) for w in data.get("warnings", ())),
        )
