"""A bounded on-disk queue of sealed batches (gzip JSON), oldest first.

Every batch is written to disk before it is sent, so neither a server outage nor an agent
restart loses data: a batch leaves the spool only when the server acknowledged it (or
refused it for good, see `dead_letter`). Files are written atomically (temp file, fsync, rename).
When adding a batch would exceed `max_bytes`, the oldest batches are dropped and counted
(batches and records, kept across restarts in `state.json`) so the loss is reported.
Batches the server refused for good go to `dead-letter/` beside them (the newest
`KEEP_DEAD_LETTERS`, at most `DEAD_LETTER_MAX_BYTES`, each with a `.reason` file holding the
server's answer); they are counted in `state.json` too.

File names: `<sequence>-<batch id>-<records>.json.gz`; the record count is in the name so a
dropped batch can be counted without reading it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
SUFFIX = ".json.gz"
DEAD_LETTER_DIR = "dead-letter"
KEEP_DEAD_LETTERS = 20
# A batch is at most a few MiB gzipped (batch.MAX_RECORDS_PER_BATCH): this keeps the last few
# refused ones for a person to look at without letting them fill the disk.
DEAD_LETTER_MAX_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class SpoolEntry:
    path: Path
    sequence: int
    batch_id: str
    records: int
    size_bytes: int


class Spool:
    """Thread-safe: the agent loop puts, the pusher peeks and removes."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self.dead_letter_directory = self.directory / DEAD_LETTER_DIR
        self.dead_letter_directory.mkdir(exist_ok=True)
        self._lock = threading.Lock()
        self.has_items = threading.Event()
        for stale in self.directory.glob("*.tmp"):
            stale.unlink(missing_ok=True)  # a write interrupted by a crash
        state = self._read_state()
        self.dropped_batches = int(state.get("dropped_batches", 0))
        self.dropped_records = int(state.get("dropped_records", 0))
        self.dead_letter_batches = int(state.get("dead_letter_batches", 0))
        self.dead_letter_records = int(state.get("dead_letter_records", 0))
        self.dead_letter_last_error = str(state.get("dead_letter_last_error", ""))
        entries = self._entries()
        self._next_sequence = entries[-1].sequence + 1 if entries else 1
        if entries:
            self.has_items.set()

    def put(self, batch_id: str, records: int, body_gz: bytes) -> SpoolEntry:
        """Store one sealed batch; drop (and count) the oldest ones if over the cap."""
        with self._lock:
            entries = self._entries()
            used = sum(entry.size_bytes for entry in entries)
            while entries and used + len(body_gz) > self.max_bytes:
                oldest = entries.pop(0)
                oldest.path.unlink(missing_ok=True)
                used -= oldest.size_bytes
                self.dropped_batches += 1
                self.dropped_records += oldest.records
                log.error(
                    "spool full (%d bytes): dropped batch %s with %d records",
                    self.max_bytes, oldest.batch_id, oldest.records,
                )  # fmt: skip
                self._write_state()
            sequence = self._next_sequence
            self._next_sequence += 1
            path = self.directory / f"{sequence:012d}-{batch_id}-{records}{SUFFIX}"
            _write_atomically(path, body_gz)
            self.has_items.set()
            return SpoolEntry(path, sequence, batch_id, records, len(body_gz))

    def oldest(self) -> SpoolEntry | None:
        with self._lock:
            entries = self._entries()
            if not entries:
                self.has_items.clear()
                return None
            return entries[0]

    def remove(self, entry: SpoolEntry) -> None:
        """The server has the batch: forget it."""
        with self._lock:
            entry.path.unlink(missing_ok=True)

    def split(self, entry: SpoolEntry, parts: list[tuple[str, int, bytes]]) -> None:
        """Put `parts` (batch id, records, body) in the entry's place in the queue."""
        with self._lock:
            for batch_id, records, body_gz in parts:
                name = f"{entry.sequence:012d}-{batch_id}-{records}{SUFFIX}"
                _write_atomically(self.directory / name, body_gz)
            entry.path.unlink(missing_ok=True)

    def dead_letter(self, entry: SpoolEntry, reason: str) -> None:
        """The server refused the batch for good: move it to the dead letters, count it."""
        with self._lock:
            target = self.dead_letter_directory / entry.path.name
            try:
                os.replace(entry.path, target)
            except FileNotFoundError:
                return  # dropped meanwhile to stay under the cap, and counted there
            reason_path = target.with_name(target.name.removesuffix(SUFFIX) + ".reason")
            reason_path.write_text(reason + "\n")
            self.dead_letter_batches += 1
            self.dead_letter_records += entry.records
            self.dead_letter_last_error = reason
            self._write_state()
            self._prune_dead_letters()

    def _prune_dead_letters(self) -> None:
        kept = sorted(self.dead_letter_directory.glob(f"*{SUFFIX}"), reverse=True)
        used = 0
        for i, path in enumerate(kept):
            try:
                used += path.stat().st_size
            except FileNotFoundError:
                continue
            if i >= KEEP_DEAD_LETTERS or (i > 0 and used > DEAD_LETTER_MAX_BYTES):
                path.unlink(missing_ok=True)
                path.with_name(path.name.removesuffix(SUFFIX) + ".reason").unlink(missing_ok=True)

    def holds(self, batch_id: str) -> bool:
        """Is this batch waiting here, or among the dead letters?"""
        with self._lock:
            if any(entry.batch_id == batch_id for entry in self._entries()):
                return True
        return any(self.dead_letter_directory.glob(f"*-{batch_id}-*{SUFFIX}"))

    def pending(self) -> tuple[int, int]:
        """(batches, bytes) waiting to be sent."""
        with self._lock:
            entries = self._entries()
            return len(entries), sum(entry.size_bytes for entry in entries)

    def _entries(self) -> list[SpoolEntry]:
        entries = []
        for path in self.directory.glob(f"*{SUFFIX}"):
            stem = path.name.removesuffix(SUFFIX)
            sequence, _, rest = stem.partition("-")
            batch_id, _, records = rest.rpartition("-")
            if not sequence.isdigit() or not records.isdigit() or not batch_id:
                continue
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            entries.append(SpoolEntry(path, int(sequence), batch_id, int(records), size))
        # The halves of a split batch share its sequence: `<id>.1` goes before `<id>.2`.
        entries.sort(key=lambda entry: (entry.sequence, entry.batch_id))
        return entries

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.directory / "state.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_state(self) -> None:
        state = {
            "dropped_batches": self.dropped_batches,
            "dropped_records": self.dropped_records,
            "dead_letter_batches": self.dead_letter_batches,
            "dead_letter_records": self.dead_letter_records,
            "dead_letter_last_error": self.dead_letter_last_error,
        }
        _write_atomically(self.directory / "state.json", json.dumps(state).encode())


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    # The rename must survive a power cut too: sync the directory entry.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
