"""The open batch's records, appended to a file as they are collected, so a SIGKILL loses none.

Rows wait in memory (`BatchBuilder`) until the batch is sealed into the spool, every push
interval; a killed or crashed agent would lose them. So each addition is also appended to
`<spool>/journal/<batch id>.jsonl` (one JSON line: `{"o": observations}` or `{"r": request
record}`) with one write(2) before `add` returns: from then on it is in the kernel's page
cache, which outlives the process. Once the sealed batch is in the spool (fsync'd) its
journal is deleted. At start, `Agent.replay_journal` seals each journal left behind into
the spool under the batch id it was going to have: if that batch reached the spool, or even
the server, before the kill, the spool already holds it or the server answers "already
stored", so no row is stored twice.

The journal is not fsync'd (that costs ~4 ms per round on a virtual disk): a power cut or
kernel crash can lose the open batch's rows that the kernel had not written back yet.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
SUFFIX = ".jsonl"


class Journal:
    """Append-only files, one per open batch. Thread-safe: the builder appends (from the
    sampling and proxy threads) while the agent loop discards sealed batches."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._batch_id: str | None = None
        self._failed = False

    def append(self, batch_id: str, entry: dict[str, Any]) -> None:
        """Write one line for `batch_id`'s file (opened on its first line)."""
        with self._lock:
            self._append(batch_id, entry)

    def _append(self, batch_id: str, entry: dict[str, Any]) -> None:
        try:
            if batch_id != self._batch_id:
                self._close()
                self.directory.mkdir(parents=True, exist_ok=True)
                path = self.directory / f"{batch_id}{SUFFIX}"
                flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
                self._fd = os.open(path, flags, 0o600)
                self._batch_id = batch_id
            assert self._fd is not None
            data = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
            while data:  # a regular file takes it all at once, short of a full disk
                data = data[os.write(self._fd, data) :]
            self._failed = False
        except (OSError, ValueError, TypeError) as exc:
            # The rows are still in memory: only their crash-safety is lost, so keep going.
            if not self._failed:
                log.error("cannot write the journal in %s: %s", self.directory, exc)
                self._failed = True

    def discard(self, batch_id: str) -> None:
        """The batch is sealed into the spool: its journal is no longer needed."""
        with self._lock:
            if batch_id == self._batch_id:
                self._close()
            try:
                (self.directory / f"{batch_id}{SUFFIX}").unlink(missing_ok=True)
            except OSError as exc:  # left behind, it is found in the spool at the next start
                log.warning("cannot delete the journal of batch %s: %s", batch_id, exc)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._batch_id = None

    def left_behind(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """(batch id, entries) of each journal a previous run did not seal, oldest first."""
        paths = sorted(self.directory.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime)
        for path in paths:
            batch_id = path.name.removesuffix(SUFFIX)
            if batch_id == self._batch_id:
                continue
            entries = []
            for number, line in enumerate(path.read_bytes().splitlines(), 1):
                try:
                    entry = json.loads(line)
                except ValueError:  # a line torn by a power cut: the rest still counts
                    log.warning("journal %s line %d is unreadable; skipped", path, number)
                    continue
                if isinstance(entry, dict):
                    entries.append(entry)
            yield batch_id, entries
