"""The Faust shell's settings that users rely on, read from the app it builds (no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest
from faust.types import TP

from core.settings import Settings
from streams.app import Forwarder


def test_the_rocksdb_table_is_opened_with_the_memory_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORWARDER_ROCKSDB_WRITE_BUFFER_MB", "8")
    monkeypatch.setenv("FORWARDER_ROCKSDB_BLOCK_CACHE_MB", "24")
    worker = Forwarder(Settings(store="rocksdb", data_dir=tmp_path))
    options = worker.profiles.data.rocksdb_options
    mib = 1024 * 1024
    assert (options.write_buffer_size, options.max_write_buffer_number) == (8 * mib, 2)
    assert options.block_cache_size == 24 * mib
    assert options.bloom_filter_size == 10  # bits a key: a new profile's lookup skips the data


def test_a_graceful_stop_leaves_the_rocksdb_table_on_disk(tmp_path: Path) -> None:
    """The table's writes skip RocksDB's write-ahead log (the changelog is the log): what a
    graceful stop persists is what a restart finds without replaying the changelog."""
    worker = Forwarder(Settings(store="rocksdb", data_dir=tmp_path))
    worker.store.apply(3, {b"3:a": b'{"v":2}', b"3:b": b'{"v":2}'}, 41)
    db = worker.profiles.data._db_for_partition(3)
    assert all(log.stat().st_size == 0 for log in Path(db.path()).glob("*.log"))
    assert db.property_int_value("rocksdb.num-entries-active-mem-table") == 3  # with the offset
    worker.store.persist()
    assert db.property_int_value("rocksdb.num-entries-active-mem-table") == 0
    assert db.property_int_value("rocksdb.total-sst-files-size") > 0
    assert worker.profiles.data.persisted_offset(TP(worker.store.changelog_topic, 3)) == 41
    assert [key for key, _ in worker.store.items(3)] == [b"3:a", b"3:b"]


def test_a_syncs_scan_leaves_the_block_cache_to_the_live_events_reads(tmp_path: Path) -> None:
    """A sync reads every state of a partition once: cached, those blocks would evict the
    states that live events read again and again."""
    worker = Forwarder(Settings(store="rocksdb", data_dir=tmp_path))
    states = {f"5:{n:06d}".encode(): b'{"v":2,"pad":"%s"}' % (b"x" * 500) for n in range(4000)}
    worker.store.apply(5, states, 4000)
    worker.store.persist()
    db = worker.profiles.data._db_for_partition(5)
    cached = db.property_int_value("rocksdb.block-cache-usage")
    scanned = list(worker.store.items(5, after=b"5:001999"))
    assert [key for key, _ in scanned] == sorted(states)[2000:]
    assert db.property_int_value("rocksdb.block-cache-usage") - cached < 64 * 1024
    assert worker.store.get(5, b"5:000007") == states[b"5:000007"]
    # A point read (a live event's) is cached as before.
    assert db.property_int_value("rocksdb.block-cache-usage") > cached
