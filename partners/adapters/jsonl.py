"""JSON lines files for warehouse loaders, rotated by size.

Each record is one line (the OutboundRecord as on the topic) appended to
``<directory>/<output_id>-<start ms>-<writer>-<n>.jsonl.part``; the file is fsynced before the
offsets are committed. When it reaches ``max_file_bytes`` (or the sink stops) it is renamed to
``.jsonl``: loaders pick up ``*.jsonl`` only. A writer holds an flock on its open file, so a
sink that starts after a crash finishes (renames) the files no live writer holds.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pydantic import Field

from partners.adapters.base import (
    Accepted,
    Adapter,
    AdapterContext,
    AdapterSettings,
    Outcome,
    Plan,
    Retry,
    chunks,
)
from schemas.records import OutboundRecord

OPEN_SUFFIX = ".part"


class JsonlSettings(AdapterSettings):
    directory: Path
    max_file_bytes: int = Field(64 * 1024 * 1024, ge=1024)


@dataclass(frozen=True, slots=True)
class JsonlWrite:
    items: tuple[int, ...]
    lines: tuple[bytes, ...]


def finish_abandoned(directory: Path) -> list[Path]:
    """Rename the open files no live writer holds a lock on; returns the finished files."""
    finished = []
    for path in sorted(directory.glob(f"*.jsonl{OPEN_SUFFIX}")):
        with path.open("ab") as file:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a running sink writes it
            final = path.with_suffix("")
            path.rename(final)
            finished.append(final)
    return finished


class JsonlAdapter(Adapter[JsonlWrite]):
    def __init__(self, settings: JsonlSettings, context: AdapterContext) -> None:
        super().__init__(context)
        self.settings = settings
        self.writer = uuid.uuid4().hex[:8]
        self.sequence = 0
        self.file: IO[bytes] | None = None
        self.path: Path | None = None

    def plan(self, records: Sequence[OutboundRecord]) -> Plan[JsonlWrite]:
        return Plan(
            steps=[
                JsonlWrite(
                    items=items,
                    lines=tuple(records[i].model_dump_json().encode() + b"\n" for i in items),
                )
                for items in chunks(range(len(records)), self.partner.batch_limit)
            ]
        )

    async def send(self, step: JsonlWrite) -> Outcome:
        try:
            await asyncio.to_thread(self._append, step.lines)
        except OSError as error:
            # A full or read-only disk heals with an operator's help: wait rather than drop.
            return Retry(f"write failed: {error.strerror or type(error).__name__}")
        return Accepted()

    def _append(self, lines: tuple[bytes, ...]) -> None:
        for line in lines:
            # A file holds at least one line, and no more than max_file_bytes otherwise.
            size = self.file.tell() if self.file is not None else 0
            if size and size + len(line) > self.settings.max_file_bytes:
                self._finish()
            if self.file is None:
                self._open()
            assert self.file is not None
            self.file.write(line)
        self._sync()

    def _sync(self) -> None:
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())

    def _open(self) -> None:
        directory = self.settings.directory
        directory.mkdir(parents=True, exist_ok=True)
        finish_abandoned(directory)
        # The sequence number keeps names apart when files rotate within one millisecond.
        self.sequence += 1
        started_ms = time.time_ns() // 1_000_000
        name = f"{self.output.output_id}-{started_ms}-{self.writer}-{self.sequence:06d}.jsonl"
        self.path = directory / (name + OPEN_SUFFIX)
        self.file = self.path.open("ab")
        fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _finish(self) -> None:
        if self.file is None or self.path is None:
            return
        self._sync()
        self.path.rename(self.path.with_suffix(""))
        self.file.close()
        self.file = self.path = None

    async def close(self) -> None:
        await asyncio.to_thread(self._finish)
