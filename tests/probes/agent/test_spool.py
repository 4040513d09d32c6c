"""The on-disk spool: durable, oldest first, bounded, and it counts what it drops."""

from pathlib import Path

import pytest

from probes.agent import spool as spool_module
from probes.agent.spool import Spool


def test_it_keeps_batches_in_order_across_restarts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10 * 2**20)
    spool.put("aaa", 3, b"first")
    spool.put("bbb", 4, b"second")
    (tmp_path / "000000000009-ccc-1.json.gz.tmp").write_bytes(b"half-written")
    reopened = Spool(tmp_path, max_bytes=10 * 2**20)
    oldest = reopened.oldest()
    assert oldest is not None
    assert (oldest.batch_id, oldest.records, oldest.path.read_bytes()) == ("aaa", 3, b"first")
    assert not list(tmp_path.glob("*.tmp"))
    reopened.remove(oldest)
    third = reopened.put("ddd", 1, b"third")
    assert third.sequence == 3
    assert [e.batch_id for e in _drain(reopened)] == ["bbb", "ddd"]


def test_it_drops_the_oldest_batches_when_full_and_counts_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=2**20)
    chunk = b"x" * (400 * 1024)
    spool.put("a", 10, chunk)
    spool.put("b", 20, chunk)
    spool.put("c", 30, chunk)  # over 1 MiB: "a" goes
    assert (spool.dropped_batches, spool.dropped_records) == (1, 10)
    assert [e.batch_id for e in _drain(Spool(tmp_path, max_bytes=2**20))] == ["b", "c"]
    reopened = Spool(tmp_path, max_bytes=2**20)
    assert (reopened.dropped_batches, reopened.dropped_records) == (1, 10)


def test_it_moves_refused_batches_to_the_dead_letters_and_counts_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=2**20)
    entry = spool.put("bad", 7, b"body")
    spool.dead_letter(entry, "HTTP 400: gpu_samples[0].util_pct: must be between 0 and 100")
    assert spool.oldest() is None
    kept = tmp_path / "dead-letter" / entry.path.name
    assert kept.read_bytes() == b"body"
    reason = tmp_path / "dead-letter" / "000000000001-bad-7.reason"
    assert reason.read_text() == "HTTP 400: gpu_samples[0].util_pct: must be between 0 and 100\n"
    reopened = Spool(tmp_path, max_bytes=2**20)
    assert (reopened.dead_letter_batches, reopened.dead_letter_records) == (1, 7)
    assert reopened.dead_letter_last_error.startswith("HTTP 400: gpu_samples[0].util_pct")


def test_it_keeps_only_the_newest_dead_letters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "DEAD_LETTER_MAX_BYTES", 2500)
    spool = Spool(tmp_path, max_bytes=2**20)
    for i in range(25):
        spool.dead_letter(spool.put(f"b{i}", 1, b"x" * 1000), f"HTTP 400: number {i}")
    kept = sorted(p.name for p in (tmp_path / "dead-letter").glob("*.json.gz"))
    # 2,500 bytes hold two 1,000-byte batches (the newest is always kept).
    assert kept == ["000000000024-b23-1.json.gz", "000000000025-b24-1.json.gz"]
    assert len(list((tmp_path / "dead-letter").glob("*.reason"))) == 2
    assert spool.dead_letter_batches == 25
    monkeypatch.setattr(spool_module, "DEAD_LETTER_MAX_BYTES", 2**20)
    for i in range(25, 50):
        spool.dead_letter(spool.put(f"b{i}", 1, b"x"), f"HTTP 400: number {i}")
    assert len(list((tmp_path / "dead-letter").glob("*.json.gz"))) == 20
    assert spool.dead_letter_last_error == "HTTP 400: number 49"


def _drain(spool: Spool) -> list:
    entries = []
    while (entry := spool.oldest()) is not None:
        entries.append(entry)
        spool.remove(entry)
    return entries


def test_it_does_not_count_a_batch_dropped_before_it_could_be_dead_lettered(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_bytes=2**20)
    entry = spool.put("bad", 3, b"body")
    entry.path.unlink()  # the cap dropped it (and counted it) while it was being sent
    spool.dead_letter(entry, "HTTP 400: bad")
    assert (spool.dead_letter_batches, spool.dead_letter_records) == (0, 0)
    assert list((tmp_path / "dead-letter").iterdir()) == []
