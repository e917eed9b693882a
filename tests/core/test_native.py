"""The compiled hot path's staleness check: a compiled module older than its source is found."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from core import native

Built = Callable[[float, float], None]


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Built:
    """Lays out one compiled module, with its source, under a tree of its own."""
    monkeypatch.setattr(native, "ROOT", tmp_path)
    monkeypatch.setattr(native, "COMPILED", ("streams/forwarding.py",))

    def lay_out(compiled_at: float, source_at: float) -> None:
        package = tmp_path / "streams"
        package.mkdir()
        source = package / "forwarding.py"
        source.write_text("x = 1\n")
        for name in ("forwarding.cpython-311-x86_64-linux-gnu.so", "forwarding__mypyc.abi3.so"):
            (package / name).write_bytes(b"")
            os.utime(package / name, (compiled_at, compiled_at))
        os.utime(source, (source_at, source_at))

    return lay_out


def test_a_compiled_module_older_than_its_source_is_stale(built: Built) -> None:
    built(1_000, 2_000)
    assert native.stale() == ["streams/forwarding.py"]
    assert "make native" in native.stale_message(native.stale())
    assert native.main(["check"]) == 1
    native.clean()
    assert native.extensions("streams/forwarding.py") == [] and native.stale() == []


def test_a_compiled_module_newer_than_its_source_is_not_stale(built: Built) -> None:
    built(2_000, 1_000)
    assert len(native.extensions("streams/forwarding.py")) == 2
    assert native.stale() == [] and native.main(["check"]) == 0
