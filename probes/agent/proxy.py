"""A recording reverse proxy in front of vLLM's OpenAI API (HTTP/1.1, asyncio, stdlib only).

Every request is forwarded and every response streamed back as it arrives. For
`POST /v1/completions` and `/v1/chat/completions` it records one request row: arrival time,
prompt and output tokens, TTFT (first frame that carries generated text), end-to-end time,
status (ok / error / aborted by the client) and the model.

Token counts come from vLLM's `usage`. A streaming request that did not ask for usage gets
`stream_options.include_usage` added on the way up, and the usage-only frame it causes is
removed on the way down, so the client sees what it would have seen without the proxy.
With a `PrefixHasher` the row also gets the prompt's block hashes (never its text): the
hasher's worker thread tokenizes the prompt after the response was relayed and records the
row then (`probes.agent.prefix_hashes`).

Other paths (/metrics, /health, /v1/models, ...) pass through unrecorded, and so do requests
the upstream answers 404 (a model it does not serve is no deployment's workload).

`RecordingProxy.start()` runs the server on its own thread and event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from probes.agent.prefix_hashes import PrefixHasher, Prompt

log = logging.getLogger(__name__)
RECORDED_PATHS = frozenset({"/v1/completions", "/v1/chat/completions"})
HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
        b"te", b"trailer", b"transfer-encoding", b"upgrade", b"proxy-connection",
    }
)  # fmt: skip
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
# A non-streaming response body is kept (to read its usage) up to this size.
MAX_KEPT_BYTES = 8 * 1024 * 1024
READ_CHUNK = 64 * 1024
# The client's unsent bytes above which the relay waits for it (back pressure).
DRAIN_ABOVE_BYTES = 256 * 1024
# Pooled upstream connections idle longer than this are not reused (uvicorn closes at 5 s).
POOL_IDLE_S = 4.0

Recorder = Callable[[dict[str, Any]], None]


class BadRequest(Exception):
    """The client sent something that is not HTTP/1.1 we can forward."""


@dataclass
class _Head:
    first_line: bytes
    headers: list[tuple[bytes, bytes]]

    def get(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


@dataclass
class _Exchange:
    """What is being recorded about one request."""

    arrival_s: float
    started: float
    model: str | None = None
    streaming: bool = False
    strip_usage: bool = False
    status: int = 0
    first_token_at: float | None = None
    content_frames: int = 0
    usage: dict[str, Any] | None = None
    kept: bytearray = field(default_factory=bytearray)
    sse_buffer: bytes = b""
    prompt: Prompt | None = None  # what the hasher tokenizes (None: no hashes)


class RecordingProxy:
    def __init__(
        self,
        upstream: str,
        record: Recorder,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        hasher: PrefixHasher | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream: expected http://host:port, got {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.record = record
        self.hasher = hasher
        self.listen_host = listen_host
        self.listen_port = listen_port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.recorded = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> int:
        """Serve on a background thread; returns the bound port."""
        self._thread = threading.Thread(target=self._run, name="gca-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10.0)
        if self._error is not None:
            raise self._error
        return self.listen_port

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._close(), loop)
        with contextlib.suppress(Exception):
            future.result(timeout=5.0)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._client, self.listen_host, self.listen_port)
            )
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self.listen_port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for _reader, writer, _since in self._idle:
            writer.close()
        self._idle.clear()

    # -- one client connection -------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await _read_head(reader)
                except BadRequest as exc:
                    await _respond(writer, 400, str(exc))
                    return
                if head is None:
                    return
                keep_alive = await self._exchange(head, reader, writer)
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _exchange(
        self, head: _Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        arrival_s, started = time.time(), time.perf_counter()
        try:
            method, target, version = head.first_line.decode("latin-1").split(" ", 2)
        except ValueError:
            await _respond(writer, 400, "malformed request line")
            return False
        if head.get(b"expect") == b"100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            body = await _read_body(head, reader)
        except BadRequest as exc:
            await _respond(writer, 400, str(exc))
            return False
        client_keep_alive = _keep_alive(version, head.get(b"connection"))
        path = target.split("?", 1)[0]
        exchange: _Exchange | None = None
        if method == "POST" and path in RECORDED_PATHS:
            exchange = _Exchange(arrival_s=arrival_s, started=started)
            size = len(body)
            body, parsed = _prepare_body(body, exchange)
            if self.hasher is not None and parsed is not None:
                exchange.prompt = self.hasher.prompt_of(parsed, path, size)
        request = _request_bytes(method, target, head, body, self.upstream_host)
        try:
            up_reader, up_writer, up_head = await self._send(request)
        except (OSError, asyncio.IncompleteReadError, BadRequest, ValueError) as exc:
            await _respond(writer, 502, f"upstream {self.upstream_host}: {exc}")
            if exchange is not None:
                exchange.status = 502
                self._record(exchange, "error")
            return client_keep_alive
        outcome = "aborted"
        upstream_reusable = client_reusable = False
        try:
            upstream_reusable, client_reusable, outcome = await self._relay(
                up_reader, up_head, writer, exchange, method == "HEAD"
            )
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            outcome = "aborted"
        finally:
            if upstream_reusable:
                self._idle.append((up_reader, up_writer, time.monotonic()))
            else:
                up_writer.close()
        if exchange is not None:
            self._record(exchange, outcome)
        return client_keep_alive and client_reusable

    async def _send(
        self, request: bytes
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, _Head]:
        """Send on a pooled connection (or a new one) and read the response head.

        The upstream closes idle keep-alive connections (uvicorn after 5 s): a pooled
        connection that fails before any answer is dropped and the request sent again on
        a new one.
        """
        while self._idle:
            up_reader, up_writer, idle_since = self._idle.pop()
            if time.monotonic() - idle_since > POOL_IDLE_S or up_reader.at_eof():
                up_writer.close()
                continue
            try:
                up_writer.write(request)
                await up_writer.drain()
                head = await _read_head(up_reader)
            except (ConnectionError, asyncio.IncompleteReadError, BadRequest):
                head = None
            if head is not None:
                return up_reader, up_writer, head
            up_writer.close()
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        up_writer.write(request)
        await up_writer.drain()
        head = await _read_head(up_reader)
        if head is None:
            up_writer.close()
            raise ConnectionError("upstream closed before answering")
        return up_reader, up_writer, head

    async def _relay(
        self,
        up_reader: asyncio.StreamReader,
        head: _Head,
        writer: asyncio.StreamWriter,
        exchange: _Exchange | None,
        is_head: bool,
    ) -> tuple[bool, bool, str]:
        """Stream the upstream response to the client.

        Returns (upstream connection reusable, client connection reusable, outcome).
        """
        status = int(head.first_line.split(b" ", 2)[1])
        upstream_open = (head.get(b"connection") or b"").lower() != b"close"
        if exchange is not None:
            exchange.status = status
        writer.write(head.first_line + b"\r\n" + _header_bytes(head.headers) + b"\r\n")
        length = head.get(b"content-length")
        chunked = (head.get(b"transfer-encoding") or b"").lower().endswith(b"chunked")
        no_body = is_head or status in (204, 304) or 100 <= status < 200
        outcome = "ok" if status < 400 else "error"
        if no_body:
            await writer.drain()
            return upstream_open, True, outcome
        if chunked:
            await self._relay_chunked(up_reader, writer, exchange)
            return upstream_open, True, outcome
        if length is not None:
            remaining = int(length)
            while remaining > 0:
                data = await up_reader.read(min(READ_CHUNK, remaining))
                if not data:
                    raise ConnectionError("upstream closed mid-body")
                remaining -= len(data)
                if exchange is not None:
                    self._observe(exchange, data)
                writer.write(data)
                await writer.drain()
            return upstream_open, True, outcome
        # Neither length nor chunked: the body ends when the upstream closes.
        while data := await up_reader.read(READ_CHUNK):
            if exchange is not None:
                self._observe(exchange, data)
            writer.write(data)
            await writer.drain()
        return False, False, outcome

    async def _relay_chunked(
        self,
        up_reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        exchange: _Exchange | None,
    ) -> None:
        """Relay a chunked body: one read per arriving segment, chunks passed through as
        they are (looked at after they left), one write per segment, drain only when the
        client falls behind. ~3x less CPU per SSE frame than awaiting each chunk's parts."""
        buffer = b""
        while True:
            data = await up_reader.read(READ_CHUNK)
            if not data:
                raise ConnectionError("upstream closed mid-body")
            buffer += data
            out = bytearray()
            seen: list[bytes] = []
            done = False
            while True:
                line_end = buffer.find(b"\r\n")
                if line_end < 0:
                    break
                size = int(buffer[:line_end].split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    end = buffer.find(b"\r\n\r\n", line_end)  # after any trailers
                    if end < 0:
                        break
                    out += b"0\r\n\r\n"
                    buffer, done = b"", True
                    break
                total = line_end + 2 + size + 2
                if len(buffer) < total:
                    break
                chunk, payload = buffer[:total], buffer[line_end + 2 : total - 2]
                buffer = buffer[total:]
                if exchange is None:
                    out += chunk
                elif _forward_first(exchange, payload):
                    out += chunk
                    seen.append(payload)
                else:
                    for earlier in seen:  # keep the order the events were observed in
                        self._observe(exchange, earlier)
                    seen.clear()
                    kept = self._observe(exchange, payload)
                    if kept:
                        out += b"%x\r\n%b\r\n" % (len(kept), kept)
            if writer.is_closing():
                raise ConnectionError("client went away")
            if out:
                writer.write(bytes(out))
                if writer.transport.get_write_buffer_size() > DRAIN_ABOVE_BYTES:
                    await writer.drain()
            if exchange is not None:
                for payload in seen:
                    self._observe(exchange, payload)
            if done:
                await writer.drain()
                return

    # -- what is recorded ------------------------------------------------------------------

    def _observe(self, exchange: _Exchange, payload: bytes) -> bytes:
        """Note token timing and usage; returns the payload to forward (usage frame removed
        when the proxy added it)."""
        if not exchange.streaming:
            if len(exchange.kept) < MAX_KEPT_BYTES:
                exchange.kept += payload
            if exchange.first_token_at is None:
                exchange.first_token_at = time.perf_counter()
            return payload
        buffer = exchange.sse_buffer + payload
        forward = bytearray()
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            event, buffer = buffer[: end + 2], buffer[end + 2 :]
            if _observe_event(exchange, event):
                forward += event
        exchange.sse_buffer = buffer
        return bytes(forward)

    def _record(self, exchange: _Exchange, outcome: str) -> None:
        if exchange.status == 404:
            return  # no such model (or path) upstream: not the workload of any deployment
        if exchange.sse_buffer:  # an unterminated last event
            _observe_event(exchange, exchange.sse_buffer + b"\n\n")
        ended = time.perf_counter()
        usage = exchange.usage
        if usage is None and not exchange.streaming and exchange.kept:
            with contextlib.suppress(ValueError, AttributeError):
                found = json.loads(bytes(exchange.kept)).get("usage")
                usage = found if isinstance(found, dict) else None
        prompt_tokens = _count(usage, "prompt_tokens")
        output_tokens = _count(usage, "completion_tokens")
        if output_tokens is None:
            output_tokens = exchange.content_frames
        row: dict[str, Any] = {
            "served_name": exchange.model or "unknown",
            "arrival_ts": exchange.arrival_s,
            "prompt_tokens": prompt_tokens or 0,
            "output_tokens": output_tokens,
            "e2e_s": ended - exchange.started,
            "status": outcome if outcome != "ok" or exchange.status < 400 else "error",
        }
        if exchange.streaming and exchange.first_token_at is not None:
            row["ttft_s"] = exchange.first_token_at - exchange.started
        self.recorded += 1
        hashable = row["status"] != "error" and row["prompt_tokens"] > 0
        if self.hasher is not None and exchange.prompt is not None and hashable:
            # Hashed on the hasher's thread, which then records the row.
            self.hasher.submit(row, exchange.prompt)
            return
        try:
            self.record(row)
        except Exception:  # a recording failure must never break serving
            log.exception("could not record a proxied request")


def _forward_first(exchange: _Exchange, payload: bytes) -> bool:
    """Can this chunk go to the client unchanged before it is observed?"""
    if not exchange.streaming:
        return True
    complete = not exchange.sse_buffer and payload.endswith(b"\n\n")
    return complete and not (exchange.strip_usage and b'"usage"' in payload)


def _observe_event(exchange: _Exchange, event: bytes) -> bool:
    """Look at one SSE event; False when it must not be forwarded (our usage frame)."""
    data = event.strip()
    if not data.startswith(b"data:"):
        return True
    data = data[5:].strip()
    if data == b"[DONE]":
        return True
    if exchange.first_token_at is not None and b'"usage"' not in data:
        exchange.content_frames += 1  # the common frame: no parsing needed
        return True
    try:
        frame = json.loads(data)
    except ValueError:
        return True
    if not isinstance(frame, dict):
        return True
    choices = frame.get("choices")
    usage = frame.get("usage")
    if isinstance(usage, dict):
        exchange.usage = usage
    if choices:
        exchange.content_frames += 1
        if exchange.first_token_at is None and _has_text(choices):
            exchange.first_token_at = time.perf_counter()
        return True
    # A usage-only frame (choices == []): drop it if the client never asked for it.
    return not (exchange.strip_usage and isinstance(usage, dict))


def _has_text(choices: Any) -> bool:
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        if choice.get("text"):
            return True
        delta = choice.get("delta")
        if isinstance(delta, dict) and (
            delta.get("content") or delta.get("reasoning_content") or delta.get("tool_calls")
        ):
            return True
    return False


def _prepare_body(body: bytes, exchange: _Exchange) -> tuple[bytes, dict[str, Any] | None]:
    """Read model and stream flag; ask for usage on streams (see the module docstring).
    Returns the body to send and the request as parsed (None: not a JSON object)."""
    try:
        request = json.loads(body)
    except ValueError:
        return body, None  # vLLM will answer 400; recorded as an error
    if not isinstance(request, dict):
        return body, None
    model = request.get("model")
    exchange.model = model if isinstance(model, str) and model else None
    exchange.streaming = request.get("stream") is True
    if not exchange.streaming:
        return body, request
    options = request.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return body, request
    exchange.strip_usage = True
    request["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                 "include_usage": True}  # fmt: skip
    return json.dumps(request, separators=(",", ":")).encode(), request


def _count(usage: dict[str, Any] | None, key: str) -> int | None:
    if usage is None:
        return None
    value = usage.get(key)
    return value if isinstance(value, int) and value >= 0 else None


async def _read_head(reader: asyncio.StreamReader) -> _Head | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadRequest("incomplete request head") from exc
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("request head too large") from exc
    if len(raw) > MAX_HEAD_BYTES:
        raise BadRequest("request head too large")
    lines = raw[:-4].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise BadRequest(f"malformed header line {line[:80]!r}")
        headers.append((name.strip(), value.strip()))
    return _Head(lines[0], headers)


async def _read_body(head: _Head, reader: asyncio.StreamReader) -> bytes:
    encoding = (head.get(b"transfer-encoding") or b"").lower()
    if encoding.endswith(b"chunked"):
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                await _skip_trailers(reader)
                return bytes(body)
            body += (await reader.readexactly(size + 2))[:-2]
            if len(body) > MAX_BODY_BYTES:
                raise BadRequest("request body too large")
    length = head.get(b"content-length")
    if length is None:
        return b""
    if not length.isdigit() or int(length) > MAX_BODY_BYTES:
        raise BadRequest("bad or too large Content-Length")
    return await reader.readexactly(int(length))


async def _skip_trailers(reader: asyncio.StreamReader) -> None:
    while (await reader.readuntil(b"\r\n")) != b"\r\n":
        pass


def _request_bytes(method: str, target: str, head: _Head, body: bytes, host: str) -> bytes:
    headers = [
        (name, value)
        for name, value in head.headers
        if name.lower() not in HOP_BY_HOP and name.lower() not in (b"content-length", b"expect")
    ]
    if body or method in ("POST", "PUT", "PATCH"):
        headers.append((b"Content-Length", str(len(body)).encode()))
    if not any(name.lower() == b"host" for name, _ in headers):
        headers.append((b"Host", host.encode()))
    line = f"{method} {target} HTTP/1.1\r\n".encode("latin-1")
    return line + _header_bytes(headers) + b"\r\n" + body


def _header_bytes(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(
        name + b": " + value + b"\r\n"
        for name, value in headers
        if name.lower() not in (b"connection", b"keep-alive")
    )


def _keep_alive(version: str, connection: bytes | None) -> bool:
    token = (connection or b"").lower()
    if version.strip().upper() == "HTTP/1.0":
        return token == b"keep-alive"
    return token != b"close"


async def _respond(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    reason = {400: "Bad Request", 502: "Bad Gateway"}.get(status, "Error")
    body = json.dumps({"error": message}).encode()
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()
