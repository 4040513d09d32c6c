"""The on-disk spool: durable, oldest first, bounded, and it counts what it drops."""

from pathlib import Path

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


def test_it_sets_refused_batches_aside_with_the_reason(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=2**20)
    entry = spool.put("bad", 1, b"body")
    spool.reject(entry, "400: gpu_samples[0].util_pct: must be between 0 and 100")
    assert spool.oldest() is None
    kept = tmp_path / "rejected" / entry.path.name
    assert kept.read_bytes() == b"body"
    assert "util_pct" in kept.with_suffix(".reason").read_text()


def _drain(spool: Spool) -> list:
    entries = []
    while (entry := spool.oldest()) is not None:
        entries.append(entry)
        spool.remove(entry)
    return entries
