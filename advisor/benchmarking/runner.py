"""Drive a `Workload` against an OpenAI-compatible vLLM endpoint and measure every request.

    result = run_benchmark(Target("http://node:8000", "llama-8b"), workload, limits=Limits(...))

Phases: check the endpoint (`GET /v1/models`: the model is served, its context length) ->
build prompts of the requested token lengths with the server's tokenizer (`prompts`) ->
warm-up request(s), untimed, like `vllm bench serve`'s initial test run -> scrape `/metrics`
-> the timed run -> scrape again -> summary. Request `i` is sent at `workload.arrival_s[i]`
after the start (open loop) and waits while `min(workload.max_concurrency, limits.
max_concurrency)` requests are in flight (all arrivals at 0 with a cap C is C closed-loop users).

Safety: every network step has a timeout (`Limits`), the timed run stops at
`limits.max_duration_s` (in-flight requests are cancelled, later ones never sent), and
`cancel()` is polled every `limits.poll_s` seconds in a worker thread (so it may query a
database); once it answers True no further request is sent and those in flight are cancelled.
An unreachable or failing endpoint gives `status="failed"` with the error, never an exception
or a hang; only bad arguments raise `BenchmarkConfigError` (naming the field), before any I/O.
`progress(done, total)` is called from a worker thread at the same cadence.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np

from advisor.benchmarking.prompts import BuiltPrompts, PromptError, PromptMode, build_prompts
from advisor.benchmarking.results import BenchmarkResult, PromptReport, RequestResult, RunStatus
from advisor.benchmarking.server_metrics import GaugeSample, metrics_summary, sample_of, scrape
from advisor.benchmarking.stream import (
    API_PATHS,
    Api,
    EndpointError,
    PreparedRequest,
    cancelled_result,
    read_json,
    request_body,
    send_streaming,
)
from advisor.benchmarking.summary import Slo, summarize
from advisor.engine.workload import Workload
from probes.agent.vllm_metrics import VllmMetricsError, VllmSnapshot

CancelCheck = Callable[[], bool]
Progress = Callable[[int, int], None]
SAMPLE_TIMEOUT_S = 10.0  # one gauge sample's /metrics scrape during the run


class BenchmarkConfigError(ValueError):
    """A benchmark argument is invalid; the message names the field."""


@dataclass(frozen=True)
class Target:
    """Where to send load: the server's base URL (no path), served model name and API.

    `metrics_url` is the base URL whose `/metrics` belongs to this server (default base_url).
    `headers` are sent with every request (e.g. an Authorization bearer token).
    """

    base_url: str
    model: str
    api: Api = "completions"
    metrics_url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("base_url", "metrics_url"):
            url = getattr(self, name)
            if url is None and name == "metrics_url":
                continue
            parts = urlsplit(url) if isinstance(url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
                raise BenchmarkConfigError(f"{name}: expected http(s)://host:port, got {url!r}")
            object.__setattr__(self, name, url.rstrip("/"))
        if not isinstance(self.model, str) or not self.model.strip():
            raise BenchmarkConfigError("model: the served model name is required")
        if self.api not in API_PATHS:
            raise BenchmarkConfigError(f"api: expected completions or chat, got {self.api!r}")

    def to_json(self) -> dict[str, Any]:
        # Header values may hold credentials: keep only their names.
        return {
            "base_url": self.base_url,
            "model": self.model,
            "api": self.api,
            "metrics_url": self.metrics_url or self.base_url,
            "headers": sorted(self.headers),
        }


@dataclass(frozen=True)
class Limits:
    """Caps and timeouts; the defaults suit a GPU node, tests tighten them."""

    max_concurrency: int = 256
    max_duration_s: float = 1800.0
    max_requests: int = 100_000
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0  # longest silence inside one stream
    request_timeout_s: float = 900.0  # one request, first byte sent to last byte read
    setup_timeout_s: float = 30.0  # each setup call: /v1/models, /tokenize, /metrics
    poll_s: float = 0.25  # cancel/duration/progress check period

    def __post_init__(self) -> None:
        for name in ("max_concurrency", "max_requests"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BenchmarkConfigError(f"{name}: must be an integer >= 1, got {value!r}")
        for name in (
            "max_duration_s", "connect_timeout_s", "read_timeout_s", "request_timeout_s",
            "setup_timeout_s", "poll_s",
        ):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0 or not math.isfinite(value):
                raise BenchmarkConfigError(f"{name}: must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class RunOptions:
    """How requests are made (see `prompts` for `prompt_mode`); `slo` adds goodput fields."""

    ignore_eos: bool = True
    prompt_mode: PromptMode = "auto"
    seed: int = 0
    warmup_requests: int = 1
    clip_to_max_model_len: bool = False
    scrape_metrics: bool = True
    metrics_sample_s: float = 1.0  # gauges during the run; 0 scrapes only before and after
    slo: Slo | None = None
    extra_body: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.warmup_requests, bool) or not 0 <= self.warmup_requests <= 64:
            raise BenchmarkConfigError(
                f"warmup_requests: must be an integer in [0, 64], got {self.warmup_requests!r}"
            )
        if not (self.metrics_sample_s >= 0 and math.isfinite(self.metrics_sample_s)):
            raise BenchmarkConfigError(
                f"metrics_sample_s: must be >= 0, got {self.metrics_sample_s!r}"
            )
        reserved = {"model", "prompt", "messages", "stream", "stream_options"} & set(
            self.extra_body
        )
        if reserved:
            raise BenchmarkConfigError(f"extra_body: may not set {sorted(reserved)}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["slo"] = self.slo.to_json() if self.slo else None
        data["extra_body"] = dict(self.extra_body)
        return data


def run_benchmark(
    target: Target,
    workload: Workload,
    *,
    limits: Limits | None = None,
    options: RunOptions | None = None,
    cancel: CancelCheck | None = None,
    progress: Progress | None = None,
) -> BenchmarkResult:
    """Synchronous `arun_benchmark` (its own event loop: call it from plain code, e.g. Celery)."""
    return asyncio.run(
        arun_benchmark(
            target, workload, limits=limits, options=options, cancel=cancel, progress=progress
        )
    )


async def arun_benchmark(
    target: Target,
    workload: Workload,
    *,
    limits: Limits | None = None,
    options: RunOptions | None = None,
    cancel: CancelCheck | None = None,
    progress: Progress | None = None,
) -> BenchmarkResult:
    """Run `workload` against `target`; see the module docstring for phases and guarantees."""
    run = _Run(target, workload, limits or Limits(), options or RunOptions(), cancel, progress)
    return await run.execute()


class _Run:
    """State of one run; `execute` never raises for endpoint trouble."""

    def __init__(
        self,
        target: Target,
        workload: Workload,
        limits: Limits,
        options: RunOptions,
        cancel: CancelCheck | None,
        progress: Progress | None,
    ) -> None:
        if not isinstance(workload, Workload):
            raise BenchmarkConfigError("workload: expected an advisor.engine.workload.Workload")
        if workload.num_requests == 0:
            raise BenchmarkConfigError("workload: has no requests")
        if workload.num_requests > limits.max_requests:
            raise BenchmarkConfigError(
                f"workload: {workload.num_requests} requests exceed max_requests "
                f"{limits.max_requests}"
            )
        self.target = target
        self.workload = workload
        self.limits = limits
        self.options = options
        self.cancel_check = cancel
        self.progress = progress
        self.concurrency = min(workload.max_concurrency or limits.max_concurrency,
                               limits.max_concurrency)  # fmt: skip
        self.started_unix_s = time.time()
        self.status: RunStatus = "completed"
        self.error = ""
        self.stop = asyncio.Event()
        self.timed = False
        self.origin = 0.0
        self.duration_s = 0.0
        self.tasks: list[asyncio.Task[None]] = []
        self.main_task: asyncio.Task[None] | None = None
        self.results: list[RequestResult | None] = [None] * workload.num_requests
        self.prepared: list[PreparedRequest] = []
        self.prompt_report: PromptReport | None = None
        self.samples: list[GaugeSample] = []
        self.sample_failures: list[str] = []
        self.metrics: dict[str, Any] = {}
        self.metrics_error = ""
        self.callback_error = ""
        self.served_model: dict[str, Any] | None = None  # /v1/models' entry: id and root

    # -- orchestration ---------------------------------------------------------------------
    async def execute(self) -> BenchmarkResult:
        self.main_task = asyncio.create_task(self._phases())
        monitor = asyncio.create_task(self._monitor())
        try:
            await self.main_task
        except asyncio.CancelledError:
            if not self.stop.is_set():  # cancelled from outside: not ours to swallow
                raise
        except EndpointError as exc:
            self._fail(str(exc))
        except PromptError as exc:
            self._fail(f"prompts: {exc}")
        finally:
            monitor.cancel()
            await asyncio.gather(monitor, return_exceptions=True)
        return self._result()

    def _fail(self, error: str) -> None:
        self.status = "failed"
        self.error = error

    def _trigger(self, status: RunStatus, why: str) -> None:
        if self.stop.is_set():
            return
        self.status, self.error = status, why
        self.stop.set()
        if not self.timed and self.main_task is not None:
            self.main_task.cancel()  # setup: nothing measured yet, just stop
        for task in self.tasks:
            task.cancel()

    async def _monitor(self) -> None:
        while not self.stop.is_set():
            await asyncio.sleep(self.limits.poll_s)
            now = time.perf_counter()
            if self.timed and now - self.origin >= self.limits.max_duration_s:
                self._trigger(
                    "duration_capped",
                    f"duration cap of {self.limits.max_duration_s:g} s reached",
                )
            elif self.cancel_check is not None and await self._call(self.cancel_check):
                self._trigger("cancelled", "cancelled")
            if self.progress is not None:
                done = sum(1 for result in self.results if result is not None)
                await self._call(self.progress, done, len(self.results))

    async def _call(self, callback: Callable[..., Any], *args: Any) -> Any:
        """Run a caller's callback in a thread; its failure must not stop the cap checks."""
        try:
            return await asyncio.to_thread(callback, *args)
        except Exception as exc:  # noqa: BLE001 - any callback error: record it, keep watching
            self.callback_error = f"{getattr(callback, '__name__', 'callback')}: {exc!r}"
            return False

    async def _phases(self) -> None:
        limits = self.limits
        setup_timeout = aiohttp.ClientTimeout(total=limits.setup_timeout_s)
        load_timeout = aiohttp.ClientTimeout(
            total=limits.request_timeout_s,
            connect=limits.connect_timeout_s,
            sock_read=limits.read_timeout_s,
        )
        connector = aiohttp.TCPConnector(limit=self.concurrency, keepalive_timeout=60)
        headers = {"Content-Type": "application/json", **self.target.headers}
        async with (
            aiohttp.ClientSession(timeout=setup_timeout) as setup,
            aiohttp.ClientSession(connector=connector, timeout=load_timeout) as load,
        ):
            max_model_len = await self._check_endpoint(setup)
            built = await self._prompts(setup, max_model_len)
            self._prepare(built)
            url = self.target.base_url + API_PATHS[self.target.api]
            await self._warm_up(load, url, headers)
            before = await self._scrape()
            self.origin = time.perf_counter()
            self.started_unix_s = time.time()  # the measured window starts now
            self.timed = True
            sampler = asyncio.create_task(self._sample())
            await self._dispatch(load, url, headers)
            self.duration_s = time.perf_counter() - self.origin
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
            after = await self._scrape()
            if before is not None and after is not None:
                self.metrics = metrics_summary(
                    before, after, self.samples, failures=self.sample_failures
                )

    # -- setup -----------------------------------------------------------------------------
    async def _check_endpoint(self, session: aiohttp.ClientSession) -> int | None:
        url = self.target.base_url + "/v1/models"
        listing = await read_json(session, "GET", url, headers=self.target.headers)
        models = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(models, list):
            raise EndpointError(f"GET {url}: no model list in the answer")
        for entry in models:
            if isinstance(entry, dict) and entry.get("id") == self.target.model:
                root = entry.get("root")  # vLLM: what --model named (the checkpoint served)
                self.served_model = {"id": self.target.model, "root": root}
                length = entry.get("max_model_len")
                return int(length) if isinstance(length, int) and length > 0 else None
        served = sorted(str(e.get("id")) for e in models if isinstance(e, dict))
        raise EndpointError(
            f"GET {url}: model {self.target.model!r} not served; it serves {served}"
        )

    async def _prompts(
        self, session: aiohttp.ClientSession, max_model_len: int | None
    ) -> BuiltPrompts:
        return await build_prompts(
            session,
            base_url=self.target.base_url,
            model=self.target.model,
            api=self.target.api,
            mode=self.options.prompt_mode,
            prompt_tokens=self.workload.prompt_tokens,
            output_tokens=self.workload.output_tokens,
            rng=np.random.default_rng(self.options.seed),
            max_model_len=max_model_len,
            clip=self.options.clip_to_max_model_len,
            headers=self.target.headers,
        )

    def _prepare(self, built: BuiltPrompts) -> None:
        self.prompt_report = built.report
        arrivals = self.workload.arrival_s - self.workload.arrival_s[0]
        self.prepared = [
            PreparedRequest(
                index=index,
                scheduled_s=float(arrivals[index]),
                body=request_body(
                    api=self.target.api,
                    model=self.target.model,
                    prompt=prompt,
                    output_tokens=built.output_tokens[index],
                    ignore_eos=self.options.ignore_eos,
                    extra_body=self.options.extra_body,
                ),
                prompt_tokens=built.prompt_tokens[index],
                output_tokens=built.output_tokens[index],
            )
            for index, prompt in enumerate(built.prompts)
        ]

    async def _warm_up(
        self, session: aiohttp.ClientSession, url: str, headers: dict[str, str]
    ) -> None:
        for _ in range(self.options.warmup_requests):
            result = await send_streaming(
                session, url, self.prepared[0], headers=headers, sent_origin=time.perf_counter()
            )
            if not result.ok:
                raise EndpointError(f"warm-up request to {url} failed: {result.error}")

    async def _scrape(self) -> VllmSnapshot | None:
        if not self.options.scrape_metrics:
            return None
        base = self.target.metrics_url or self.target.base_url
        try:
            return await scrape(base, self.target.model, self.limits.setup_timeout_s)
        except (OSError, VllmMetricsError, ValueError) as exc:
            self.metrics_error = self.metrics_error or f"{base}/metrics: {exc}"
            return None

    async def _sample(self) -> None:
        period = self.options.metrics_sample_s
        if not self.options.scrape_metrics or period <= 0:
            return
        base = self.target.metrics_url or self.target.base_url
        while True:
            await asyncio.sleep(period)
            try:
                # a late answer still reads the gauges when the server handled it: a server
                # short of CPU under full load answers slowly, and those are the moments to see
                snapshot = await scrape(base, self.target.model, SAMPLE_TIMEOUT_S)
            except (OSError, VllmMetricsError, ValueError) as exc:
                # a missed sample is not worth failing or slowing the run for; it is counted
                self.sample_failures.append(f"{base}/metrics: {exc}")
                continue
            self.samples.append(sample_of(snapshot, time.perf_counter() - self.origin))

    # -- the timed run ---------------------------------------------------------------------
    async def _dispatch(
        self, session: aiohttp.ClientSession, url: str, headers: dict[str, str]
    ) -> None:
        gate = asyncio.Semaphore(self.concurrency)
        for request in self.prepared:
            delay = self.origin + request.scheduled_s - time.perf_counter()
            if delay > 0 and not self.stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), timeout=delay)
            if self.stop.is_set():
                break
            self.tasks.append(asyncio.create_task(self._one(session, url, headers, gate, request)))
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for request in self.prepared:
            if self.results[request.index] is None:
                self.results[request.index] = cancelled_result(
                    request, sent_s=None, why=self.error or "not sent"
                )

    async def _one(
        self,
        session: aiohttp.ClientSession,
        url: str,
        headers: dict[str, str],
        gate: asyncio.Semaphore,
        request: PreparedRequest,
    ) -> None:
        arrived = time.perf_counter()
        sent_s: float | None = None
        try:
            async with gate:
                if self.stop.is_set():
                    return
                sent_s = time.perf_counter() - self.origin
                self.results[request.index] = await send_streaming(
                    session, url, request, headers=headers, sent_origin=self.origin,
                    queue_s=time.perf_counter() - arrived,
                )  # fmt: skip
        except asyncio.CancelledError:
            self.results[request.index] = cancelled_result(
                request, sent_s=sent_s, why=self.error or "cancelled"
            )
            raise

    # -- result ----------------------------------------------------------------------------
    def _result(self) -> BenchmarkResult:
        requests = [
            result if result is not None
            else cancelled_result(request, sent_s=None, why=self.error or "not sent")
            for result, request in zip(self.results, self._placeholders(), strict=True)
        ]  # fmt: skip
        sent = [r for r in requests if r.status != "not_sent"]
        if self.status == "completed" and sent and not any(r.ok for r in sent):
            self._fail(f"every request failed; first error: {sent[0].error}")
        return BenchmarkResult(
            status=self.status,
            error=self.error,
            target=self.target.to_json(),
            workload_name=self.workload.name,
            started_at_unix_s=self.started_unix_s,
            duration_s=self.duration_s,
            requests=tuple(requests),
            summary=summarize(requests, self.duration_s, self.options.slo),
            server_metrics=self.metrics,
            metrics_error=self.metrics_error,
            warnings=(self.callback_error,) if self.callback_error else (),
            prompts=self.prompt_report,
            config={
                "limits": asdict(self.limits),
                "options": self.options.to_json(),
                "concurrency": self.concurrency,
                "num_requests": self.workload.num_requests,
                **({"served_model": self.served_model} if self.served_model else {}),
            },
        )

    def _placeholders(self) -> list[PreparedRequest]:
        if self.prepared:
            return self.prepared
        arrivals = self.workload.arrival_s - self.workload.arrival_s[0]
        return [
            PreparedRequest(i, float(arrivals[i]), b"", int(p), int(o))
            for i, (p, o) in enumerate(
                zip(self.workload.prompt_tokens, self.workload.output_tokens, strict=True)
            )
        ]
