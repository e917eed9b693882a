"""The Faust shell's settings that users rely on, read from the app it builds (no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
