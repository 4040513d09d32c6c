"""Deliver spooled batches to the server, oldest first, with retries and backoff.

Answers: 201 stored or 200 already stored (a retry of a batch whose first answer was lost)
-> the batch leaves the spool. 413 (too large: the server's or a proxy's body limit) -> the
batch is split in two halves that take its place (ids `<id>.1`, `<id>.2`), down to single
rows. 400/422 (invalid), 409 (its id stored before with other rows), or 413 for a single row
-> this batch is refused for good: it moves to the dead letters (`Spool.dead_letter`, with
the server's answer) so one bad batch cannot block the node's telemetry, and every later
batch reports `dead_letter_batches` /
`dead_letter_last_error` in its `agent` metadata. 401/403 -> the token is wrong: keep the
batch, re-read the token file, retry with backoff. Anything else (5xx, 404/405/415 from a
wrong URL or a proxy in between, 408, 429, connection refused, timeouts) -> retry with
exponential backoff and jitter (Retry-After is honoured), keeping the batch: those say
nothing against the batch, and dead-lettering them would throw away every batch of a
misconfigured node. The backoff holds during the shutdown drain too.

A server older than the column layout answers a columnar batch 400 "`gpu_samples`: must be
a list": the batch is sent again as rows at once, and so is every later one (until the
agent restarts), so an agent upgraded before its server loses nothing. Likewise a server
older than the dead-letter report answers "`agent.dead_letter_batches`: unknown field": the
batch goes again without those keys, and so does every later one; the same for a server
older than prompt block hashes (`requests.prefix_block_hashes`: unknown field).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from probes.agent.batch import (
    COLUMN_LISTS,
    PREFIX_HASH_AGENT_KEY,
    PREFIX_HASH_FIELDS,
    reencode,
    split_sealed,
)
from probes.agent.spool import Spool, SpoolEntry

log = logging.getLogger(__name__)
INGEST_PATH = "/api/v1/ingest/"
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 60.0
# The longest dead-letter reason sent in `agent.dead_letter_last_error`.
MAX_ERROR_CHARS = 500
# Answers that refuse this batch's body for good (any other batch may still go through).
# 409: the batch id was stored with other rows; the server will never take this batch.
PERMANENT = frozenset({400, 409, 413, 422})
DEAD_LETTER_KEYS = ("dead_letter_batches", "dead_letter_last_error")
# `requests.prefix_block_hashes` (columns) or `requests[3].prefix_block_hashes` (rows).
_PREFIX_HASH_FIELD = re.compile(
    rf"^requests(\[\d+\])?\.({'|'.join(PREFIX_HASH_FIELDS)})$|^agent\.{PREFIX_HASH_AGENT_KEY}$"
)


class TokenError(RuntimeError):
    """The token file is missing or empty."""


def read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise TokenError(f"token file {path}: {exc}") from exc
    if not token:
        raise TokenError(f"token file {path} is empty")
    return token


@dataclass
class PushStats:
    """Counters since the agent started (written to --stats-file on exit)."""

    attempts: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    split: int = 0  # batches the server found too large (413), sent as two halves
    failures: int = 0
    records_delivered: int = 0
    last_error: str | None = None
    last_status: dict[str, int] = field(default_factory=dict)


class Pusher:
    """Runs in its own thread; `stop()` lets it drain for `drain_timeout_s`, then ends it."""

    def __init__(
        self,
        spool: Spool,
        server: str,
        token_file: Path,
        client: httpx.Client,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.spool = spool
        self.url = server.rstrip("/") + INGEST_PATH
        self.token_file = token_file
        self._client = client
        self._token: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._drain_deadline: float | None = None
        self._backoff_s = 0.0
        self._sleep = sleep
        self.stats = PushStats()
        self._thread: threading.Thread | None = None
        self._said_down = False
        # Set once the server has refused the column layout (it predates it).
        self.rows_only = False
        # Set once the server has refused the dead-letter keys in `agent` (it predates them).
        self.no_dead_letter_keys = False
        # Set once the server has refused prompt block hashes (it predates them).
        self.no_prefix_hashes = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="gca-pusher", daemon=True)
        self._thread.start()

    def stop(self, drain_timeout_s: float) -> None:
        """Ask the thread to finish what is spooled within `drain_timeout_s`, then stop."""
        self._drain_deadline = time.monotonic() + drain_timeout_s
        self._stop.set()
        # Cut the current backoff short once, for a last try; later waits are full ones.
        self._wake.set()
        self.spool.has_items.set()
        if self._thread is not None:
            self._thread.join(timeout=drain_timeout_s + 15.0)

    def run(self) -> None:
        while True:
            if self._stop.is_set() and (
                self._drain_deadline is None or time.monotonic() >= self._drain_deadline
            ):
                return
            entry = self.spool.oldest()
            if entry is None:
                if self._stop.is_set():
                    return
                self.spool.has_items.wait(timeout=1.0)
                continue
            delivered = self.push_one(entry)
            if not delivered:
                self._wait(self._next_backoff())

    def push_one(self, entry: SpoolEntry) -> bool:
        """Try to deliver one batch; True when it left the spool (stored, duplicate, refused)."""
        self.stats.attempts += 1
        try:
            token = self._token or read_token(self.token_file)
            self._token = token
            body = entry.path.read_bytes()
        except TokenError as exc:
            return self._failed(str(exc))
        except FileNotFoundError:
            return True  # removed meanwhile (the spool dropped it to stay under its cap)
        try:
            response = self._post(body, token)
            # At most thrice: each fallback is taken once, for good.
            while response.status_code == 400 and self._predates_layout(response):
                response = self._post(body, token)
        except httpx.HTTPError as exc:
            return self._failed(f"{type(exc).__name__}: {exc}")
        status = response.status_code
        self.stats.last_status[str(status)] = self.stats.last_status.get(str(status), 0) + 1
        if status in (200, 201):
            self.spool.remove(entry)
            if status == 200:
                self.stats.duplicates += 1
            else:
                self.stats.stored += 1
            self.stats.records_delivered += entry.records
            self._backoff_s = 0.0
            if self._said_down:
                log.warning("server reachable again; delivering the spool")
                self._said_down = False
            return True
        if status == 413 and self._split(entry, body):
            return True
        if status in PERMANENT:
            reason = f"HTTP {status}: {response.text[:2000]}"
            log.error("server refused batch %s for good; moved to the dead letters (%s)",
                      entry.batch_id, reason)  # fmt: skip
            self.spool.dead_letter(entry, reason)
            self.stats.rejected += 1
            return True
        if status in (401, 403):
            self._token = None  # the token file may have been replaced: read it again
        retry_after = response.headers.get("Retry-After", "")
        if retry_after.isdigit():
            self._backoff_s = min(BACKOFF_MAX_S, float(retry_after)) / 2
        return self._failed(f"HTTP {status}: {response.text[:300]}")

    def _split(self, entry: SpoolEntry, body: bytes) -> bool:
        """Too large for the server (or a proxy in front of it): send it as two halves."""
        try:
            halves = split_sealed(entry.batch_id, body)
        except (OSError, EOFError, ValueError) as exc:
            log.error("cannot split spooled batch %s: %s", entry.batch_id, exc)
            return False
        if not halves:
            return False
        self.spool.split(entry, [(h.batch_id, h.records, h.body_gz) for h in halves])
        self.stats.split += 1
        log.warning("server refused batch %s (%d records, %d bytes) as too large: sent as two "
                    "halves", entry.batch_id, entry.records, len(body))  # fmt: skip
        return True

    def _predates_layout(self, response: httpx.Response) -> bool:
        """Is this 400 a server older than the columns or the dead-letter keys? Then fall
        back for good (True: send the batch again)."""
        errors = _errors(response)
        if not self.rows_only and any(
            e.get("field") in COLUMN_LISTS and e.get("message") == "must be a list" for e in errors
        ):
            log.warning("the server predates the column layout; sending rows from now on")
            self.rows_only = True
            return True
        dead_letter = {f"agent.{key}" for key in DEAD_LETTER_KEYS}
        if not errors or any(e.get("message") != "unknown field" for e in errors):
            return False
        fields = [str(e.get("field")) for e in errors]
        newer_dead_letter = [f for f in fields if f in dead_letter]
        newer_hashes = [f for f in fields if _PREFIX_HASH_FIELD.match(f)]
        if len(newer_dead_letter) + len(newer_hashes) < len(fields):
            return False
        changed = False
        if newer_dead_letter and not self.no_dead_letter_keys:
            log.warning("the server predates the dead-letter report; no longer sending it")
            self.no_dead_letter_keys = changed = True
        if newer_hashes and not self.no_prefix_hashes:
            log.warning("the server predates prompt block hashes; no longer sending them")
            self.no_prefix_hashes = changed = True
        return changed

    def _agent_extra(self) -> dict[str, object]:
        """What the spooled batch's `agent` metadata lacks: the dead letters so far."""
        if self.no_dead_letter_keys or not self.spool.dead_letter_batches:
            return {}
        return {
            "dead_letter_batches": self.spool.dead_letter_batches,
            "dead_letter_last_error": self.spool.dead_letter_last_error[:MAX_ERROR_CHARS],
        }

    def _post(self, body: bytes, token: str) -> httpx.Response:
        agent_extra = self._agent_extra()
        if self.rows_only or agent_extra or self.no_prefix_hashes:
            try:
                body = reencode(
                    body,
                    rows=self.rows_only,
                    agent_extra=agent_extra,
                    strip_prefix_hashes=self.no_prefix_hashes,
                )
            except (OSError, EOFError, ValueError) as exc:  # unreadable: let the server say
                log.error("cannot re-encode a spooled batch: %s", exc)
        return self._client.post(
            self.url,
            content=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
            },
        )

    def _failed(self, error: str) -> bool:
        self.stats.failures += 1
        self.stats.last_error = error
        if not self._said_down:
            log.warning("cannot deliver to %s (%s); batches stay in the spool", self.url, error)
            self._said_down = True
        return False

    def _next_backoff(self) -> float:
        self._backoff_s = min(BACKOFF_MAX_S, max(BACKOFF_START_S, self._backoff_s * 2))
        return self._backoff_s * random.uniform(0.8, 1.2)

    def _wait(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        # While draining on shutdown, do not sleep past the deadline.
        if self._drain_deadline is not None:
            deadline = min(deadline, self._drain_deadline)
        # Not `_stop`: once set it would end every wait of the drain at once (a hot loop of
        # connection attempts to a server that is down).
        if self._wake.wait(timeout=max(0.0, deadline - time.monotonic())):
            self._wake.clear()


def _errors(response: httpx.Response) -> list[dict[str, object]]:
    """The `errors` of a 400 answer (`[{"field": ..., "message": ...}]`), or []."""
    try:
        errors = response.json()["errors"]
    except (ValueError, KeyError, TypeError):
        return []
    if not isinstance(errors, list):
        return []
    return [error for error in errors if isinstance(error, dict)]
