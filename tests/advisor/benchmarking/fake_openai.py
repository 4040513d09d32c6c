"""A small, fast fake of vLLM's OpenAI server for client-side tests and the client benchmark.

Not a stand-in for vLLM in integration tests (those use the real CPU node): it exists to make
the client the bottleneck (`tests/benchmarks/bench_client.py`) and to misbehave on demand
(HTTP errors, hangs, dropped streams, error frames), which a real server will not do.

Raw asyncio HTTP/1.1 with keep-alive and chunked responses; frames are pre-encoded. Endpoints:
`GET /v1/models`, `POST /tokenize` and `/detokenize` (one token per character: `ord`/`chr`, so
counts are exact), `POST /v1/completions` and `/v1/chat/completions` (streams `max_tokens`
frames `itl_s` apart, then usage and `[DONE]`), `GET /metrics` (vLLM-named counters and the
running gauge), `POST /_control` (JSON merged into the behaviour, see `Behaviour`).

Pacing: `itl_s` sleeps per stream between frames; `tick_s` has one shared clock write a frame
to every open stream each tick (offered tokens/s = streams / tick_s), cheap enough that the
server outpaces the client under test.

Run alone: `python -m tests.advisor.benchmarking.fake_openai --port 8123 [--tick-s 0.005]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from tests.support.components import free_port

MODEL = "fake-model"
CHAT_TEMPLATE = "user: {content}\nassistant:"
MAX_MODEL_LEN = 4096


@dataclass
class Behaviour:
    """What the next requests get; change it with `POST /_control`."""

    itl_s: float = 0.0  # pause between token frames (0: write them all at once)
    tick_s: float = 0.0  # instead: one shared clock writes a frame to every stream per tick
    ttft_s: float = 0.0  # pause before the first frame
    fail_status: int = 0  # answer completions with this HTTP status
    fail_every: int = 0  # ... only every n-th completion request (0: all, if fail_status)
    hang: bool = False  # read the request, never answer
    drop_after: int = -1  # close the connection after this many frames (-1: never)
    error_frame_after: int = -1  # send an error frame after this many frames
    omit_usage: bool = False
    crlf: bool = False  # end events with \r\n\r\n instead of \n\n
    ping_comments: bool = False  # an SSE comment line (":ping") before every frame
    split_frames: bool = False  # write each frame in two halves, flushed apart
    metrics_cut: list[int] = field(default_factory=list)  # /metrics answers (1-based) cut short


class FakeServer:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.running = 0
        self.max_running = 0
        self.requests = 0
        self.metrics_answers = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.bodies: list[dict[str, Any]] = []
        # tick mode: writer -> [frames left, frame bytes, done future]; one task writes all
        self.ticking: dict[asyncio.StreamWriter, list[Any]] = {}
        self.ticker: asyncio.Task[None] | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _version = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                keep = await self.route(method, path, body, writer)
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def route(
        self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        data = json.loads(body) if body else {}
        if path == "/v1/models":
            return await _json(writer, {"data": [{"id": MODEL, "max_model_len": MAX_MODEL_LEN}]})
        if path == "/tokenize":
            if "messages" in data:
                text = CHAT_TEMPLATE.format(content=data["messages"][0]["content"])
            else:
                text = data["prompt"]
            return await _json(writer, {"tokens": [ord(c) for c in text], "count": len(text)})
        if path == "/detokenize":
            return await _json(writer, {"prompt": "".join(chr(t) for t in data["tokens"])})
        if path == "/metrics":
            self.metrics_answers += 1
            if self.metrics_answers in self.behaviour.metrics_cut:
                return await _cut_short(writer, self.metrics_text().encode())
            return await _text(writer, self.metrics_text())
        if path == "/_control":
            for key, value in data.items():
                setattr(self.behaviour, key, value)
            return await _json(writer, asdict(self.behaviour))
        if path in ("/v1/completions", "/v1/chat/completions"):
            return await self.stream(path, data, writer)
        return await _json(writer, {"error": f"no route {path}"}, status=404)

    async def stream(self, path: str, data: dict[str, Any], writer: asyncio.StreamWriter) -> bool:
        behaviour = self.behaviour
        self.requests += 1
        self.bodies.append(data)
        if behaviour.hang:
            await asyncio.sleep(3600)
        if behaviour.fail_status and (
            not behaviour.fail_every or self.requests % behaviour.fail_every == 0
        ):
            return await _json(writer, {"error": "injected failure"}, status=behaviour.fail_status)
        chat = path.endswith("chat/completions")
        n = int(data.get("max_completion_tokens" if chat else "max_tokens", 16))
        prompt = data.get("prompt")
        if chat:
            prompt_n = len(CHAT_TEMPLATE.format(content=data["messages"][0]["content"]))
        else:
            prompt_n = len(prompt) if isinstance(prompt, str | list) else 0
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        raw = _CHAT_FRAME if chat else _TEXT_FRAME
        if behaviour.ping_comments:
            raw = b": ping\n\n" + raw
        if behaviour.crlf:
            raw = raw.replace(b"\n", b"\r\n")
        frame = _chunk(raw)
        halves = (_chunk(raw[: len(raw) // 2]), _chunk(raw[len(raw) // 2 :]))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if behaviour.ttft_s:
                await asyncio.sleep(behaviour.ttft_s)
            if behaviour.tick_s:
                await self.ticked(writer, n, frame)
            for i in range(0 if behaviour.tick_s else n):
                if i == behaviour.drop_after:
                    writer.transport.abort()
                    return False
                if i == behaviour.error_frame_after:
                    writer.write(_chunk(b'data: {"error": {"message": "injected"}}\n\n'))
                    break
                if behaviour.split_frames:
                    writer.write(halves[0])
                    await writer.drain()
                    await asyncio.sleep(0.001)
                    writer.write(halves[1])
                else:
                    writer.write(frame)
                if behaviour.itl_s:
                    await writer.drain()
                    await asyncio.sleep(behaviour.itl_s)
            if not behaviour.omit_usage:
                usage = {"prompt_tokens": prompt_n, "completion_tokens": n}
                writer.write(
                    _chunk(b"data: " + json.dumps({"choices": [], "usage": usage}).encode()
                           + b"\n\n")
                )  # fmt: skip
            writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            await writer.drain()
        finally:
            self.running -= 1
        self.prompt_tokens += prompt_n
        self.generation_tokens += n
        return True

    async def ticked(self, writer: asyncio.StreamWriter, n: int, frame: bytes) -> None:
        """Stream `n` frames on the shared clock: cheap pacing for thousands of frames/s."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ticking[writer] = [n, frame, done]
        if self.ticker is None or self.ticker.done():
            self.ticker = asyncio.create_task(self.tick())
        await done

    async def tick(self) -> None:
        while self.ticking:
            await asyncio.sleep(self.behaviour.tick_s)
            for writer, state in list(self.ticking.items()):
                writer.write(state[1])
                state[0] -= 1
                if state[0] <= 0:
                    del self.ticking[writer]
                    state[2].set_result(None)

    def metrics_text(self) -> str:
        labels = f'{{engine="0",model_name="{MODEL}"}}'
        return (
            "# TYPE vllm:num_requests_running gauge\n"
            f"vllm:num_requests_running{labels} {self.running}\n"
            "# TYPE vllm:prompt_tokens_total counter\n"
            f"vllm:prompt_tokens_total{labels} {self.prompt_tokens}\n"
            "# TYPE vllm:generation_tokens_total counter\n"
            f"vllm:generation_tokens_total{labels} {self.generation_tokens}\n"
        )


_TEXT_FRAME = (
    b'data: {"id":"cmpl-fake","object":"text_completion","created":0,"model":"fake-model",'
    b'"choices":[{"index":0,"text":" tok","logprobs":null,"finish_reason":null,'
    b'"stop_reason":null}]}\n\n'
)
_CHAT_FRAME = (
    b'data: {"id":"chatcmpl-fake","object":"chat.completion.chunk","created":0,'
    b'"model":"fake-model","choices":[{"index":0,"delta":{"content":" tok"},'
    b'"logprobs":null,"finish_reason":null}]}\n\n'
)


def _chunk(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


async def _json(writer: asyncio.StreamWriter, payload: Any, status: int = 200) -> bool:
    return await _send(writer, json.dumps(payload).encode(), "application/json", status)


async def _text(writer: asyncio.StreamWriter, text: str) -> bool:
    return await _send(writer, text.encode(), "text/plain; version=0.0.4", 200)


async def _cut_short(writer: asyncio.StreamWriter, body: bytes) -> bool:
    """Promise the whole body, send half of it, close: the client reads an IncompleteRead."""
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
    writer.write(head.encode() + body[: len(body) // 2])
    await writer.drain()
    return False


async def _send(writer: asyncio.StreamWriter, body: bytes, kind: str, status: int) -> bool:
    reason = {200: "OK", 404: "Not Found"}.get(status, "Error")
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    return True


@contextmanager
def fake_server_thread(behaviour: Behaviour | None = None) -> Iterator[tuple[str, FakeServer]]:
    """Serve in a background thread with its own loop; yields (base_url, server)."""
    server = FakeServer(behaviour)
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, asyncio.Server] = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)
        holder["server"] = loop.run_until_complete(
            asyncio.start_server(server.handle, "127.0.0.1", port)
        )
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True, name="fake-openai")
    thread.start()
    started.wait(10)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:

        async def shutdown() -> None:
            holder["server"].close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--itl-s", type=float, default=0.0)
    parser.add_argument("--tick-s", type=float, default=0.0)
    args = parser.parse_args()
    server = FakeServer(Behaviour(itl_s=args.itl_s, tick_s=args.tick_s))

    async def serve() -> None:
        listener = await asyncio.start_server(server.handle, "127.0.0.1", args.port, backlog=1024)
        print("ready", flush=True)
        async with listener:
            await listener.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
