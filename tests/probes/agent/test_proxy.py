"""The recording proxy: responses pass through unchanged, each request is recorded once."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest

from probes.agent.prefix_hashes import PrefixHasher, block_hashes
from probes.agent.proxy import RecordingProxy
from tests.probes.agent.fake_vllm import FIRST_TOKEN_S, MODEL, fake_vllm, prompt_tokens
from tests.probes.agent.stub_http import serving, text
from tests.support.components import free_port


@pytest.fixture
def upstream_seen() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def upstream(upstream_seen: list[dict[str, Any]]) -> Iterator[str]:
    with fake_vllm(upstream_seen) as url:
        yield url


@pytest.fixture
def proxied(upstream: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    records: list[dict[str, Any]] = []
    proxy = RecordingProxy(upstream, records.append)
    port = proxy.start()
    try:
        yield f"http://127.0.0.1:{port}", records
    finally:
        proxy.stop()


def _stream(base: str, body: dict[str, Any], path: str = "/v1/completions") -> bytes:
    with httpx.Client(timeout=10) as client, client.stream("POST", base + path, json=body) as r:
        return b"".join(r.iter_raw())


def _unstamped(raw: bytes) -> bytes:
    return re.sub(rb', "sent_ns": \d+', b"", raw)


def _wait_for(records: list[dict[str, Any]], count: int) -> None:
    deadline = time.monotonic() + 5
    while len(records) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_it_streams_the_same_bytes_and_records_usage_it_asked_for(
    upstream: str, proxied: tuple[str, list[dict[str, Any]]], upstream_seen: list[dict[str, Any]]
) -> None:
    base, records = proxied
    body = {"model": MODEL, "prompt": "hello", "max_tokens": 8, "stream": True}
    before = time.time()
    through_proxy = _stream(base, body)
    direct = _stream(upstream, body)
    # Byte for byte the same but for the stand-in's send times.
    assert _unstamped(through_proxy) == _unstamped(direct)
    assert b'"usage"' not in through_proxy
    # The proxy asked vLLM for usage on the client's behalf...
    assert upstream_seen[0]["stream_options"] == {"include_usage": True}
    assert "stream_options" not in upstream_seen[1]
    _wait_for(records, 1)
    (row,) = records
    assert row["served_name"] == MODEL
    assert (row["prompt_tokens"], row["output_tokens"], row["status"]) == (11, 8, "ok")
    assert before <= row["arrival_ts"] <= time.time()
    assert FIRST_TOKEN_S <= row["ttft_s"] < row["e2e_s"] < 2.0


def test_it_passes_the_usage_frame_to_a_client_that_asked(
    proxied: tuple[str, list[dict[str, Any]]],
) -> None:
    base, records = proxied
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
            "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    raw = _stream(base, body, "/v1/chat/completions")
    assert b'"usage"' in raw
    _wait_for(records, 1)
    assert (records[0]["prompt_tokens"], records[0]["output_tokens"]) == (11, 3)
    assert records[0]["ttft_s"] >= FIRST_TOKEN_S


def test_it_records_a_non_streaming_request_from_its_usage(
    proxied: tuple[str, list[dict[str, Any]]],
) -> None:
    base, records = proxied
    response = httpx.post(base + "/v1/completions", json={"model": MODEL, "prompt": "x",
                                                           "max_tokens": 5})  # fmt: skip
    assert response.status_code == 200
    assert response.json()["usage"]["completion_tokens"] == 5
    _wait_for(records, 1)
    assert (records[0]["prompt_tokens"], records[0]["output_tokens"]) == (11, 5)
    assert "ttft_s" not in records[0]
    assert records[0]["e2e_s"] >= FIRST_TOKEN_S


def test_it_records_upstream_errors_but_not_unknown_models(
    proxied: tuple[str, list[dict[str, Any]]],
) -> None:
    base, records = proxied
    bad = httpx.post(base + "/v1/completions", json={"model": MODEL, "prompt": "x",
                                                      "max_tokens": 0})  # fmt: skip
    assert bad.status_code == 400
    missing = httpx.post(base + "/v1/completions", json={"model": "other", "prompt": "x"})
    assert missing.status_code == 404
    assert httpx.get(base + "/metrics").text.startswith("vllm:num_requests_running")
    _wait_for(records, 1)
    time.sleep(0.1)
    assert [(r["served_name"], r["status"]) for r in records] == [(MODEL, "error")]


def test_it_records_a_client_that_hangs_up_mid_stream_as_aborted(
    proxied: tuple[str, list[dict[str, Any]]],
) -> None:
    base, records = proxied
    port = int(base.rsplit(":", 1)[1])
    body = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 200, "stream": True})
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        time.sleep(0.1)
    _wait_for(records, 1)
    assert records[0]["status"] == "aborted"
    assert 0 < records[0]["output_tokens"] < 200


def test_it_answers_502_and_records_an_error_when_vllm_is_down() -> None:
    records: list[dict[str, Any]] = []
    proxy = RecordingProxy(f"http://127.0.0.1:{free_port()}", records.append)
    base = f"http://127.0.0.1:{proxy.start()}"
    try:
        response = httpx.post(base + "/v1/completions", json={"model": MODEL, "prompt": "x"})
    finally:
        proxy.stop()
    assert response.status_code == 502
    assert records[0]["status"] == "error"


def test_it_serves_many_requests_over_kept_alive_connections(
    proxied: tuple[str, list[dict[str, Any]]],
) -> None:
    base, records = proxied
    with httpx.Client(timeout=10) as client:
        for i in range(20):
            body = {"model": MODEL, "prompt": str(i), "max_tokens": 2, "stream": i % 2 == 0}
            assert client.post(base + "/v1/completions", json=body).status_code == 200
    _wait_for(records, 20)
    assert len(records) == 20
    assert all(r["status"] == "ok" and r["output_tokens"] == 2 for r in records)


SYSTEM = "You are a careful assistant. " * 4  # 116 bytes: shared by both requests


def _chat(user: str) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 2, "messages": [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]}  # fmt: skip


def test_it_records_the_prompts_block_hashes_and_never_its_text() -> None:
    tokenized: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    with fake_vllm(tokenized=tokenized) as upstream:
        hasher = PrefixHasher(upstream, records.append, block_tokens=16)
        hasher.start()
        proxy = RecordingProxy(upstream, records.append, hasher=hasher)
        base = f"http://127.0.0.1:{proxy.start()}"
        try:
            first, second = _chat("What is a KV cache?"), _chat("And what is a block?")
            assert httpx.post(base + "/v1/chat/completions", json=first).status_code == 200
            _stream(base, {**second, "stream": True}, "/v1/chat/completions")
            _wait_for(records, 2)
        finally:
            proxy.stop()
            hasher.stop()
    a, b = records
    expected = [block_hashes(prompt_tokens(body), 16) for body in (first, second)]
    assert [a["prefix_block_hashes"], b["prefix_block_hashes"]] == expected
    assert a["prefix_block_tokens"] == b["prefix_block_tokens"] == 16
    # "system:" + SYSTEM + "\nuser:" is 129 bytes: 8 full blocks the same in both chains.
    assert a["prefix_block_hashes"][:8] == b["prefix_block_hashes"][:8]
    assert a["prefix_block_hashes"][8] != b["prefix_block_hashes"][8]
    assert (a["prompt_tokens"], len(a["prefix_block_hashes"])) == (149, 9)
    assert (b["prompt_tokens"], len(b["prefix_block_hashes"])) == (150, 9)
    assert [t["messages"] for t in tokenized] == [first["messages"], second["messages"]]
    assert all(t["model"] == MODEL for t in tokenized)
    # Nothing of the prompt is in the rows: only numbers, the model name and the status.
    strings = {v for row in records for v in row.values() if isinstance(v, str)}
    assert strings == {MODEL, "ok"}
    assert hasher.stats.hashed == 2


def test_a_slow_tokenize_delays_neither_the_response_nor_other_recording() -> None:
    release = threading.Event()
    asked = threading.Event()

    def stuck_tokenize(request: BaseHTTPRequestHandler) -> None:
        request.rfile.read(int(request.headers.get("Content-Length", "0")))
        asked.set()
        release.wait(timeout=10)
        text(json.dumps({"tokens": [1] * 11}), content_type="application/json")(request)

    records: list[dict[str, Any]] = []
    with fake_vllm() as upstream, serving({("POST", "/tokenize"): stuck_tokenize}) as tokenizer:
        hasher = PrefixHasher(tokenizer, records.append, block_tokens=4)
        hasher.start()
        proxy = RecordingProxy(upstream, records.append, hasher=hasher)
        base = f"http://127.0.0.1:{proxy.start()}"
        try:
            started = time.perf_counter()
            response = httpx.post(base + "/v1/completions", json={"model": MODEL, "prompt": "x",
                                                                   "max_tokens": 2})  # fmt: skip
            elapsed_s = time.perf_counter() - started
            assert response.status_code == 200
            assert asked.wait(timeout=5)
            assert records == []  # its row waits for the hashes, the client did not
            assert elapsed_s < 1.0
            release.set()
            _wait_for(records, 1)
        finally:
            release.set()
            proxy.stop()
            hasher.stop()
    assert records[0]["prefix_block_hashes"] == block_hashes([1] * 11, 4)
