"""Where the worker's time goes: py-spy samples of the running process, summarised.

py-spy samples from outside (no change to the worker) at 100 Hz without pausing it
(--nonblocking), so the profile is taken during the measured run at a small cost.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from devtools.local import REPO

PY_SPY = Path(sys.executable).parent / "py-spy"
_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
_OWN_CODE = ("streams/", "core/", "schemas/", "partners/", "forwarder/")


@dataclass
class Profile:
    samples: int
    # (frame, share of samples): where the CPU was (self) and what was on the stack (inclusive).
    self_top: list[tuple[str, float]] = field(default_factory=list)
    own_code: list[tuple[str, float]] = field(default_factory=list)
    # self time per top-level package (faust, aiokafka, streams, asyncio, ...)
    by_package: list[tuple[str, float]] = field(default_factory=list)


class Profiler:
    def __init__(self, pid: int, output: Path) -> None:
        self.output = output
        self.process = subprocess.Popen(
            [
                *(str(PY_SPY), "record", "--pid", str(pid), "--rate", "100", "--nonblocking"),
                *("--format", "raw", "--output", str(output)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> Profile:
        # py-spy writes its samples when interrupted
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)
        if not self.output.exists():  # py-spy could not attach (no ptrace permission)
            return Profile(samples=0)
        return summarize(self.output.read_text().splitlines())


def frame_name(frame: str) -> str:
    """'decide (/work/main/streams/forwarding.py:61)' -> 'decide (streams/forwarding.py)'."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3.", f"{REPO}/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    path = re.sub(r"^\d+/", "", path)  # the stdlib's "11/asyncio/..." after "python3."
    return f"{match['name']} ({path})"


def summarize(lines: list[str], top: int = 15) -> Profile:
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = 0
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(frame) for frame in stack.split(";")]
        samples += count
        self_counts[frames[-1]] += count
        packages[_package(frames[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not samples:
        return Profile(samples=0)
    own = [(frame, n) for frame, n in inclusive.most_common() if _is_own(frame)]
    return Profile(
        samples=samples,
        self_top=[(frame, n / samples) for frame, n in self_counts.most_common(top)],
        own_code=[(frame, n / samples) for frame, n in own[:top]],
        by_package=[(package, n / samples) for package, n in packages.most_common(8)],
    )


def _package(frame: str) -> str:
    """'decide (streams/forwarding.py)' -> 'streams'; the standard library's single modules
    (typing.py, <frozen abc>, generated code) count as one."""
    match = _FRAME.match(frame)
    if not match or "/" not in match["file"]:
        return "other stdlib"
    return match["file"].split("/", 1)[0]


def _is_own(frame: str) -> bool:
    return any(f"({prefix}" in frame for prefix in _OWN_CODE)
