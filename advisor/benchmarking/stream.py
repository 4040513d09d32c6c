"""Send one streaming request to an OpenAI-compatible server and time its frames.

The body is serialized before the run (`request_body`), so the hot path only reads bytes,
splits Server-Sent Events on blank lines and parses each `data:` frame once. Every frame read
in one socket chunk gets that chunk's receive time. Errors never escape: an HTTP error, an
`{"error": ...}` frame, a stream that ends before `[DONE]`, a connect/read/total timeout all
come back as a `RequestResult` with the status and error text (cancellation does propagate).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from advisor.benchmarking.results import RequestResult

Api = Literal["completions", "chat"]
API_PATHS: Mapping[str, str] = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
ERROR_BODY_BYTES = 2000


@dataclass(frozen=True)
class PreparedRequest:
    """A request ready to send: its JSON body and what the workload asked for."""

    index: int
    scheduled_s: float
    body: bytes
    prompt_tokens: int
    output_tokens: int


def request_body(
    *,
    api: Api,
    model: str,
    prompt: str | Sequence[int],
    output_tokens: int,
    ignore_eos: bool,
    extra_body: Mapping[str, Any],
) -> bytes:
    """The JSON body of a streaming completion (`prompt` text or token ids) or chat request."""
    body: dict[str, Any] = {"model": model}
    if api == "chat":
        if not isinstance(prompt, str):
            raise TypeError("chat prompts must be text")
        body["messages"] = [{"role": "user", "content": prompt}]
        body["max_completion_tokens"] = output_tokens
    else:
        body["prompt"] = prompt if isinstance(prompt, str) else list(prompt)
        body["max_tokens"] = output_tokens
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    if ignore_eos:
        body["ignore_eos"] = True
    body.update(extra_body)
    return json.dumps(body, separators=(",", ":")).encode()


class _StreamState:
    """Frame bookkeeping for one response."""

    __slots__ = ("done", "error", "frames", "itl", "last", "output", "prompt", "ttft")

    def __init__(self) -> None:
        self.ttft: float | None = None
        self.last = 0.0
        self.itl: list[float] = []
        self.frames = 0
        self.prompt: int | None = None
        self.output: int | None = None
        self.done = False
        self.error = ""

    def event(self, raw: bytes, now: float) -> None:
        for line in raw.split(b"\n"):
            if not line.startswith(b"data:"):
                continue  # comments (":ping"), event names, ids
            data = line[5:].strip()
            if data == b"[DONE]":
                self.done = True
                continue
            try:
                frame = json.loads(data)
            except ValueError:
                self.error = f"malformed stream frame: {data[:200]!r}"
                continue
            if not isinstance(frame, dict):
                continue
            if frame.get("choices"):
                if self.ttft is None:
                    self.ttft = now
                else:
                    self.itl.append(now - self.last)
                self.last = now
                self.frames += 1
            elif frame.get("error"):
                self.error = f"error frame: {json.dumps(frame['error'])[:500]}"
            usage = frame.get("usage")
            if isinstance(usage, dict):
                self.prompt = usage.get("prompt_tokens", self.prompt)
                self.output = usage.get("completion_tokens", self.output)


async def send_streaming(
    session: aiohttp.ClientSession,
    url: str,
    request: PreparedRequest,
    *,
    headers: Mapping[str, str],
    sent_origin: float,
    queue_s: float = 0.0,
) -> RequestResult:
    """POST one prepared request and read its stream to the end; never raises but on cancel."""
    base: dict[str, Any] = {
        "index": request.index,
        "scheduled_s": request.scheduled_s,
        "expected_prompt_tokens": request.prompt_tokens,
        "expected_output_tokens": request.output_tokens,
        "queue_s": queue_s,
    }
    state = _StreamState()
    start = time.perf_counter()
    base["sent_s"] = start - sent_origin
    http_status: int | None = None
    try:
        async with session.post(url, data=request.body, headers=headers) as response:
            http_status = response.status
            if response.status != 200:
                text = (await response.content.read(ERROR_BODY_BYTES)).decode(errors="replace")
                return RequestResult(
                    status="error",
                    http_status=http_status,
                    error=f"HTTP {response.status} {response.reason or ''}: {text}".strip(),
                    **base,
                )
            buffer = b""
            async for chunk in response.content.iter_any():
                now = time.perf_counter()
                buffer += chunk
                while True:
                    # SSE events end with a blank line; servers use \n\n (vLLM) or \r\n\r\n.
                    cut = buffer.find(b"\n\n")
                    if cut < 0:
                        if b"\r\n" in buffer:
                            buffer = buffer.replace(b"\r\n", b"\n")
                            continue
                        break
                    state.event(buffer[:cut], now)
                    buffer = buffer[cut + 2 :]
            if buffer.strip():
                state.event(buffer.replace(b"\r\n", b"\n"), time.perf_counter())
    except TimeoutError as exc:
        return _failed(state, base, start, "timeout", http_status, _describe(exc, "timed out"))
    except aiohttp.ClientError as exc:
        return _failed(state, base, start, "error", http_status, _describe(exc, "client error"))
    except OSError as exc:
        return _failed(state, base, start, "error", http_status, _describe(exc, "OS error"))
    if state.error:
        return _failed(state, base, start, "error", http_status, state.error)
    if state.ttft is None:
        return _failed(state, base, start, "error", http_status, "no token frame in the stream")
    if not state.done:
        return _failed(
            state, base, start, "error", http_status,
            f"stream ended before [DONE] after {state.frames} token frame(s)",
        )  # fmt: skip
    from_usage = state.output is not None
    return RequestResult(
        status="ok",
        ttft_s=state.ttft - start,
        e2e_s=state.last - start,
        itl_s=tuple(state.itl),
        prompt_tokens=state.prompt,
        output_tokens=state.output if from_usage else state.frames,
        tokens_from_usage=from_usage,
        http_status=http_status,
        **base,
    )


def cancelled_result(request: PreparedRequest, *, sent_s: float | None, why: str) -> RequestResult:
    """The record of a request stopped by cancel or the duration cap (sent or not)."""
    return RequestResult(
        index=request.index,
        status="cancelled" if sent_s is not None else "not_sent",
        scheduled_s=request.scheduled_s,
        expected_prompt_tokens=request.prompt_tokens,
        expected_output_tokens=request.output_tokens,
        sent_s=sent_s,
        error=why,
    )


def _failed(
    state: _StreamState,
    base: dict[str, Any],
    start: float,
    status: Literal["error", "timeout"],
    http_status: int | None,
    error: str,
) -> RequestResult:
    return RequestResult(
        status=status,
        ttft_s=None if state.ttft is None else state.ttft - start,
        itl_s=tuple(state.itl),
        prompt_tokens=state.prompt,
        output_tokens=state.output,
        http_status=http_status,
        error=error,
        **base,
    )


def _describe(exc: BaseException, fallback: str) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else f"{type(exc).__name__} ({fallback})"


async def read_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    payload: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """GET/POST returning parsed JSON; raises `EndpointError` with the URL and reason."""
    try:
        async with session.request(method, url, json=payload, headers=headers) as response:
            body = await response.read()
            if response.status != 200:
                text = body[:ERROR_BODY_BYTES].decode(errors="replace")
                raise EndpointError(f"{method} {url}: HTTP {response.status}: {text}")
            return json.loads(body)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise EndpointError(f"{method} {url}: {_describe(exc, 'unreachable')}") from exc
    except ValueError as exc:
        raise EndpointError(f"{method} {url}: not JSON: {exc}") from exc


class EndpointError(RuntimeError):
    """The endpoint is unreachable or answered something unusable; names the URL."""
