"""Deliver spooled batches to the server, oldest first, with retries and backoff.

Answers: 201 stored or 200 already stored (a retry of a batch whose first answer was lost)
-> the batch leaves the spool. 400/413/415/422 -> refused for good: set aside in
`spool/rejected/` with the reason, so one bad batch cannot block the queue. 401/403 -> the
token is wrong: keep the batch, re-read the token file, retry with backoff. Anything else
(5xx, 408, 429, connection refused, timeouts) -> retry with exponential backoff and jitter
(Retry-After is honoured), keeping the batch.

A server older than the column layout answers a columnar batch 400 "`gpu_samples`: must be
a list": the batch is sent again as rows at once, and so is every later one (until the
agent restarts), so an agent upgraded before its server loses nothing.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from probes.agent.batch import COLUMN_LISTS, columns_to_rows
from probes.agent.spool import Spool, SpoolEntry

log = logging.getLogger(__name__)
INGEST_PATH = "/api/v1/ingest/"
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 60.0
PERMANENT = frozenset({400, 404, 405, 413, 415, 422})


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
        self._drain_deadline: float | None = None
        self._backoff_s = 0.0
        self._sleep = sleep
        self.stats = PushStats()
        self._thread: threading.Thread | None = None
        self._said_down = False
        # Set once the server has refused the column layout (it predates it).
        self.rows_only = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="gca-pusher", daemon=True)
        self._thread.start()

    def stop(self, drain_timeout_s: float) -> None:
        """Ask the thread to finish what is spooled within `drain_timeout_s`, then stop."""
        self._drain_deadline = time.monotonic() + drain_timeout_s
        self._stop.set()
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
            if response.status_code == 400 and not self.rows_only and _refuses_columns(response):
                log.warning("the server predates the column layout; sending rows from now on")
                self.rows_only = True
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
        if status in PERMANENT:
            reason = f"{status}: {response.text[:2000]}"
            log.error("server refused batch %s for good (%s)", entry.batch_id, reason)
            self.spool.reject(entry, reason)
            self.stats.rejected += 1
            return True
        if status in (401, 403):
            self._token = None  # the token file may have been replaced: read it again
        retry_after = response.headers.get("Retry-After", "")
        if retry_after.isdigit():
            self._backoff_s = min(BACKOFF_MAX_S, float(retry_after)) / 2
        return self._failed(f"HTTP {status}: {response.text[:300]}")

    def _post(self, body: bytes, token: str) -> httpx.Response:
        if self.rows_only:
            try:
                body = columns_to_rows(body)
            except (OSError, EOFError, ValueError) as exc:  # unreadable: let the server say
                log.error("cannot re-encode a spooled batch as rows: %s", exc)
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
        self._stop.wait(timeout=max(0.0, deadline - time.monotonic()))


def _refuses_columns(response: httpx.Response) -> bool:
    """Is this 400 the answer of a server that takes rows only (one object per row)?"""
    try:
        errors = response.json()["errors"]
        return any(
            error["field"] in COLUMN_LISTS and error["message"] == "must be a list"
            for error in errors
        )
    except (ValueError, KeyError, TypeError):
        return False
