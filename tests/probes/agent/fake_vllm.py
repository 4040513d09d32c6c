"""A stand-in for vLLM's OpenAI API that streams like it does (chunked SSE, usage frame).

For proxy tests that need exact control of timing and failures; the real vLLM CPU node is
used by the integration tests.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.probes.agent.stub_http import serving, text

MODEL = "tiny"
TOKENS = 8
FRAME_GAP_S = 0.005
FIRST_TOKEN_S = 0.03
# A short prompt's token count (BOS tokens pad it to this): what the first tests assert.
SHORT_PROMPT_TOKENS = 11
BOS = 1


def prompt_tokens(body: dict[str, Any]) -> list[int]:
    """The stand-in's tokenizer: token ids given as the prompt, else one token per UTF-8 byte
    of the prompt (chat: `role:content\n` per message), after BOS tokens that make a short
    prompt SHORT_PROMPT_TOKENS long."""
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        return list(prompt)
    if "messages" in body:
        prompt = "".join(f"{m['role']}:{m['content']}\n" for m in body["messages"])
    data = str(prompt).encode()
    return [BOS] * max(0, SHORT_PROMPT_TOKENS - len(data)) + list(data)


def frames(body: dict[str, Any]) -> list[dict[str, Any] | None]:
    """The stream's frames (None is `[DONE]`); each gets `sent_ns` (CLOCK_MONOTONIC, shared
    by the processes of one machine) when it is written, so a reader can tell how long a
    frame took to reach it."""
    chat = "messages" in body
    out: list[dict[str, Any] | None] = []
    for i in range(body.get("max_tokens", TOKENS)):
        choice = (
            {"index": 0, "delta": {"content": f"t{i}"}} if chat else {"index": 0, "text": f"t{i}"}
        )
        out.append({"id": "x", "model": MODEL, "choices": [choice]})
    options = body.get("stream_options") or {}
    if options.get("include_usage"):
        n = len(prompt_tokens(body))
        usage = {"prompt_tokens": n, "completion_tokens": len(out), "total_tokens": n + len(out)}
        out.append({"id": "x", "model": MODEL, "choices": [], "usage": usage})
    return [*out, None]


@contextmanager
def fake_vllm(
    received: list[dict[str, Any]] | None = None,
    port: int = 0,
    tokenized: list[dict[str, Any]] | None = None,
    metrics: str = "vllm:num_requests_running 0\n",
) -> Iterator[str]:
    """`received`: the completion bodies it was sent; `tokenized`: the /tokenize bodies."""

    def completions(request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length", "0"))
        body = json.loads(request.rfile.read(length))
        if received is not None:
            received.append(body)
        if body.get("model") != MODEL:
            return text('{"error": "model not found"}', status=404)(request)
        if body.get("max_tokens") == 0:
            return text('{"error": "max_tokens must be at least 1"}', status=400)(request)
        if not body.get("stream"):
            n, p = body.get("max_tokens", TOKENS), len(prompt_tokens(body))
            usage = {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n}
            choices = [{"index": 0, "text": "t" * n}]
            answer = {"id": "x", "model": MODEL, "choices": choices, "usage": usage}
            time.sleep(FIRST_TOKEN_S)
            return text(json.dumps(answer), content_type="application/json")(request)
        request.send_response(200)
        request.send_header("Content-Type", "text/event-stream")
        request.send_header("Transfer-Encoding", "chunked")
        request.end_headers()
        time.sleep(FIRST_TOKEN_S)
        try:
            for frame in frames(body):
                if frame is None:
                    data = b"data: [DONE]\n\n"
                else:
                    frame["sent_ns"] = time.monotonic_ns()
                    data = b"data: " + json.dumps(frame).encode() + b"\n\n"
                request.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
                request.wfile.flush()
                # A decode step between tokens; like vLLM, the usage frame and [DONE]
                # follow the last token at once.
                if frame is not None and frame["choices"]:
                    time.sleep(FRAME_GAP_S)
            request.wfile.write(b"0\r\n\r\n")
            request.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            request.close_connection = True

    def tokenize(request: BaseHTTPRequestHandler) -> None:
        body = json.loads(request.rfile.read(int(request.headers.get("Content-Length", "0"))))
        if tokenized is not None:
            tokenized.append(body)
        if body.get("model") != MODEL:
            return text('{"error": "model not found"}', status=404)(request)
        tokens = prompt_tokens(body)
        answer = {"tokens": tokens, "count": len(tokens), "max_model_len": 2048}
        return text(json.dumps(answer), content_type="application/json")(request)

    with serving(
        {
            ("POST", "/tokenize"): tokenize,
            ("POST", "/v1/completions"): completions,
            ("POST", "/v1/chat/completions"): completions,
            ("GET", "/metrics"): text(metrics),
        },
        port,
    ) as url:
        yield url


def main() -> None:
    """`python -m tests.probes.agent.fake_vllm PORT MODEL FIRST_TOKEN_S FRAME_GAP_S`."""
    global MODEL, FIRST_TOKEN_S, FRAME_GAP_S
    port, MODEL = int(sys.argv[1]), sys.argv[2]
    FIRST_TOKEN_S, FRAME_GAP_S = float(sys.argv[3]), float(sys.argv[4])
    with fake_vllm(port=port):
        threading.Event().wait()


if __name__ == "__main__":
    main()
