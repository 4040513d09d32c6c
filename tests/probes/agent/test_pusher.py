"""Delivery: what each server answer does to the spooled batch."""

import gzip
import json
import time
from pathlib import Path

import httpx
import pytest

from probes.agent.pusher import Pusher
from probes.agent.spool import Spool
from tests.support.components import free_port


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
                                                 (409, True), (413, True), (422, True),
                                                 (500, False), (503, False), (429, False),
                                                 (401, False), (404, False), (405, False),
                                                 (415, False)])  # fmt: skip
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
    dead_letters = list((tmp_path / "spool" / "dead-letter").glob("*.json.gz"))
    assert len(dead_letters) == (1 if status in (400, 409, 413, 422) else 0)


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


def test_it_backs_off_while_draining_a_spool_the_server_is_down_for(tmp_path: Path) -> None:
    """Given a server that is down, when the agent stops with a 3-s drain, then the pusher
    tries once at once and then at 1 s and 2 s backoffs: <= 4 connection attempts in all
    (it made ~4,000 a second before: every wait of the drain ended at once)."""
    token = tmp_path / "token"
    token.write_text("secret")
    spool = Spool(tmp_path / "spool", max_bytes=2**20)
    spool.put("b1", 1, b"x")
    with httpx.Client(timeout=1.0) as client:
        pusher = Pusher(spool, f"http://127.0.0.1:{free_port()}", token, client)
        pusher.start()
        started = time.monotonic()
        pusher.stop(drain_timeout_s=3.0)
        drained_s = time.monotonic() - started
    assert 2.9 <= drained_s <= 4.0
    assert 2 <= pusher.stats.attempts <= 4
    assert pusher.stats.failures == pusher.stats.attempts
    assert "ConnectError" in (pusher.stats.last_error or "")
    assert spool.pending()[0] == 1  # still spooled for the next start


def _sealed(batch_id: str, util_pct: float) -> bytes:
    payload = {
        "batch_id": batch_id,
        "agent": {"version": "1", "dropped_records": 0, "dropped_batches": 0},
        "gpu_samples": {"gpu_uuid": ["GPU-0"], "ts": [10.0], "util_pct": [util_pct]},
    }
    return gzip.compress(json.dumps(payload).encode())


def test_it_moves_a_batch_the_server_refuses_aside_and_reports_it_in_the_next(
    tmp_path: Path,
) -> None:
    """Given the server answers 400 for one batch, the batch goes to the dead letters with
    the server's error, the next batch is delivered and its `agent` metadata counts it."""

    def validate(request: httpx.Request) -> httpx.Response:
        payload = json.loads(gzip.decompress(request.content))
        if payload["gpu_samples"]["util_pct"][0] > 100:
            errors = [{"field": "gpu_samples.util_pct[0]", "message": "must be <= 100"}]
            return httpx.Response(400, json={"errors": errors})
        return httpx.Response(201, json={"status": "stored"})

    pusher, spool, seen = _pusher(tmp_path, validate)
    spool.put("bad", 1, _sealed("bad", 250.0))
    spool.put("good", 1, _sealed("good", 50.0))
    spool.put("later", 1, _sealed("later", 60.0))
    delivered = []
    while (entry := spool.oldest()) is not None:
        assert pusher.push_one(entry) is True
        delivered.append(entry.batch_id)
    assert delivered == ["bad", "good", "later"]
    assert (pusher.stats.stored, pusher.stats.rejected) == (2, 1)
    agents = [json.loads(gzip.decompress(r.content))["agent"] for r in seen]
    error = 'HTTP 400: {"errors":[{"field":"gpu_samples.util_pct[0]","message":"must be <= 100"}]}'
    assert agents[0] == {"version": "1", "dropped_records": 0, "dropped_batches": 0}
    for agent in agents[1:]:
        assert agent == {"version": "1", "dropped_records": 0, "dropped_batches": 0,
                         "dead_letter_batches": 1, "dead_letter_last_error": error}  # fmt: skip
    dead = tmp_path / "spool" / "dead-letter"
    assert [p.name for p in dead.glob("*.json.gz")] == ["000000000001-bad-1.json.gz"]
    assert (dead / "000000000001-bad-1.reason").read_text() == error + "\n"
    # A restarted agent still reports it (the count is kept in the spool's state).
    assert Spool(tmp_path / "spool", max_bytes=2**20).dead_letter_batches == 1


def test_it_cuts_the_reported_error_to_500_characters(tmp_path: Path) -> None:
    pusher, spool, seen = _pusher(tmp_path, lambda r: httpx.Response(201))
    spool.dead_letter(spool.put("bad", 1, b"x"), "HTTP 400: " + "e" * 3000)
    pusher.push_one(spool.put("next", 1, _sealed("next", 1.0)))
    agent = json.loads(gzip.decompress(seen[0].content))["agent"]
    assert agent["dead_letter_last_error"] == "HTTP 400: " + "e" * 490


def test_it_stops_reporting_dead_letters_to_a_server_that_predates_them(
    tmp_path: Path,
) -> None:
    """A server without the dead-letter keys refuses them as unknown fields (as
    `probes.ingest.schema` did before them): the batch goes again without them, and so do
    the later ones, instead of every batch being dead-lettered in turn."""

    def old_server(request: httpx.Request) -> httpx.Response:
        agent = json.loads(gzip.decompress(request.content))["agent"]
        unknown = sorted(set(agent) - {"version", "dropped_records", "dropped_batches"})
        if unknown:
            errors = [{"field": f"agent.{key}", "message": "unknown field"} for key in unknown]
            return httpx.Response(400, json={"errors": errors})
        return httpx.Response(201)

    pusher, spool, seen = _pusher(tmp_path, old_server)
    spool.dead_letter(spool.put("bad", 1, b"x"), "HTTP 400: bad")
    spool.put("a", 1, _sealed("a", 1.0))
    spool.put("b", 1, _sealed("b", 2.0))
    while (entry := spool.oldest()) is not None:
        assert pusher.push_one(entry) is True
    assert (pusher.stats.stored, pusher.stats.rejected) == (2, 0)
    assert pusher.no_dead_letter_keys
    sent = [sorted(json.loads(gzip.decompress(r.content))["agent"]) for r in seen]
    with_keys = ["dead_letter_batches", "dead_letter_last_error", "dropped_batches",
                 "dropped_records", "version"]  # fmt: skip
    assert sent == [with_keys, with_keys[2:], with_keys[2:]]


def test_it_stops_sending_prefix_hashes_to_a_server_that_predates_them(
    tmp_path: Path,
) -> None:
    """An older server refuses the hash columns and the agent's count of rows without
    hashes as unknown fields: the batch goes again without them, and so do later ones,
    in rows as in columns."""
    newer = {"prefix_block_hashes", "prefix_block_tokens"}

    def old_server(request: httpx.Request) -> httpx.Response:
        payload = json.loads(gzip.decompress(request.content))
        fields = set(payload["requests"]) & newer
        errors = [{"field": f"requests.{name}", "message": "unknown field"} for name in fields]
        if "dropped_prefix_hashes" in payload["agent"]:
            errors.append({"field": "agent.dropped_prefix_hashes", "message": "unknown field"})
        return httpx.Response(400, json={"errors": errors}) if errors else httpx.Response(201)

    pusher, spool, seen = _pusher(tmp_path, old_server)
    for batch_id in ("a", "b"):
        payload = {
            "batch_id": batch_id,
            "agent": {"version": "1", "dropped_prefix_hashes": 3},
            "requests": {"served_name": ["m"], "arrival_ts": [10.0], "prompt_tokens": [40],
                         "output_tokens": [1], "prefix_block_hashes": [[5, -6]],
                         "prefix_block_tokens": [16]},
        }  # fmt: skip
        spool.put(batch_id, 1, gzip.compress(json.dumps(payload).encode()))
    while (entry := spool.oldest()) is not None:
        assert pusher.push_one(entry) is True
    assert (pusher.stats.stored, pusher.stats.rejected) == (2, 0)
    assert pusher.no_prefix_hashes
    sent = [json.loads(gzip.decompress(r.content)) for r in seen]
    assert [sorted(p["requests"]) for p in sent] == [
        ["arrival_ts", "output_tokens", "prefix_block_hashes", "prefix_block_tokens",
         "prompt_tokens", "served_name"],
        ["arrival_ts", "output_tokens", "prompt_tokens", "served_name"],
        ["arrival_ts", "output_tokens", "prompt_tokens", "served_name"],
    ]  # fmt: skip
    assert [p["agent"] for p in sent[1:]] == [{"version": "1"}] * 2


def test_an_unknown_field_that_is_not_a_newer_key_is_refused_for_good(tmp_path: Path) -> None:
    errors = [{"field": "requests.prefix_block_hashes", "message": "unknown field"},
              {"field": "requests.surprise", "message": "unknown field"}]  # fmt: skip
    pusher, spool, seen = _pusher(tmp_path, lambda r: httpx.Response(400, json={"errors": errors}))
    assert pusher.push_one(spool.put("a", 1, _sealed("a", 1.0))) is True
    assert (len(seen), pusher.stats.rejected, pusher.no_prefix_hashes) == (1, 1, False)


def test_it_splits_a_batch_the_server_finds_too_large_until_each_part_goes(
    tmp_path: Path,
) -> None:
    """Given a body limit of 2 rows (a proxy's, say), a 5-row batch goes as 2 + (1 + 2)...
    halves, every row once, in order, under ids derived from the batch's; a single row
    still too large is dead-lettered."""

    def at_most_two_rows(request: httpx.Request) -> httpx.Response:
        payload = json.loads(gzip.decompress(request.content))
        rows = len(payload["gpu_samples"].get("ts", [])) if payload["gpu_samples"] else 0
        if rows > 2 or payload["batch_id"].startswith("huge"):
            return httpx.Response(413, json={"errors": [{"field": "(body)", "message": "big"}]})
        return httpx.Response(201)

    pusher, spool, seen = _pusher(tmp_path, at_most_two_rows)
    stamps = [10.0, 11.0, 12.0, 13.0, 14.0]
    payload = {"batch_id": "b1", "agent": {"version": "1"}, "gpus": [{"uuid": "GPU-0"}],
               "gpu_samples": {"gpu_uuid": ["GPU-0"] * 5, "ts": stamps, "util_pct": [1] * 5},
               "engine_samples": [], "requests": []}  # fmt: skip
    spool.put("b1", 5, gzip.compress(json.dumps(payload).encode()))
    spool.put("huge", 1, _sealed("huge", 1.0))
    spool.put("b2", 1, _sealed("b2", 2.0))
    while (entry := spool.oldest()) is not None:
        assert pusher.push_one(entry) is True
    stored = [json.loads(gzip.decompress(r.content)) for r in seen]
    stored = [p for p in stored if p["batch_id"] not in ("b1", "b1.2", "huge")]
    assert [p["batch_id"] for p in stored] == ["b1.1", "b1.2.1", "b1.2.2", "b2"]
    assert [p["gpu_samples"]["ts"] for p in stored] == [[10.0, 11.0], [12.0], [13.0, 14.0],
                                                        [10.0]]  # fmt: skip
    assert all(p["gpus"] == [{"uuid": "GPU-0"}] for p in stored[:3])
    assert (pusher.stats.split, pusher.stats.stored, pusher.stats.rejected) == (2, 4, 1)
    dead = [p.name for p in (tmp_path / "spool" / "dead-letter").glob("*.json.gz")]
    assert dead == ["000000000002-huge-1.json.gz"]
