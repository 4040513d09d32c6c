"""Delivery: what each server answer does to the spooled batch."""

from pathlib import Path

import httpx
import pytest

from probes.agent.pusher import Pusher
from probes.agent.spool import Spool


def _pusher(tmp_path: Path, handler) -> tuple[Pusher, Spool, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    token = tmp_path / "token"
    token.write_text("secret-1\n")
    spool = Spool(tmp_path / "spool", max_bytes=2**20)
    client = httpx.Client(transport=httpx.MockTransport(record))
    return Pusher(spool, "http://server", token, client), spool, seen


@pytest.mark.parametrize(("status", "leaves"), [(201, True), (200, True), (400, True),
                                                 (413, True), (500, False), (503, False),
                                                 (429, False), (401, False)])  # fmt: skip
def test_it_keeps_a_batch_until_the_server_has_it_or_refuses_it_for_good(
    tmp_path: Path, status: int, leaves: bool
) -> None:
    pusher, spool, seen = _pusher(tmp_path, lambda r: httpx.Response(status, text="answer"))
    entry = spool.put("b1", 5, b"\x1f\x8bbody")
    assert pusher.push_one(entry) is leaves
    assert (spool.oldest() is None) is leaves
    request = seen[0]
    assert request.url == "http://server/api/v1/ingest/"
    assert request.headers["Authorization"] == "Bearer secret-1"
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.content == b"\x1f\x8bbody"
    if status == 400:
        assert len(list((tmp_path / "spool" / "rejected").glob("*.json.gz"))) == 1


def test_it_rereads_the_token_file_after_a_401(tmp_path: Path) -> None:
    answers = iter([httpx.Response(401), httpx.Response(201)])
    pusher, spool, seen = _pusher(tmp_path, lambda r: next(answers))
    entry = spool.put("b1", 1, b"x")
    assert pusher.push_one(entry) is False
    (tmp_path / "token").write_text("secret-2")
    assert pusher.push_one(entry) is True
    assert [r.headers["Authorization"] for r in seen] == ["Bearer secret-1", "Bearer secret-2"]


def test_it_keeps_the_batch_when_the_server_is_unreachable(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    pusher, spool, _seen = _pusher(tmp_path, refuse)
    entry = spool.put("b1", 1, b"x")
    assert pusher.push_one(entry) is False
    assert spool.oldest() == entry
    assert "ConnectError" in (pusher.stats.last_error or "")


def test_it_backs_off_exponentially_up_to_a_minute(tmp_path: Path) -> None:
    pusher, _spool, _seen = _pusher(tmp_path, lambda r: httpx.Response(503))
    waits = [pusher._next_backoff() for _ in range(10)]
    assert 0.8 <= waits[0] <= 1.2
    assert 1.6 <= waits[1] <= 2.4
    assert all(48 <= w <= 72 for w in waits[-3:])
