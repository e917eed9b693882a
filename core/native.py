"""The hot path compiled with mypyc (``make native``), and the check that it is not stale.

The modules in ``COMPILED`` are plain, typed Python. mypyc (part of mypy) compiles each into
an extension module beside its source, which Python imports instead of the source: the
worker's CPU per event falls by about a third. Without a C compiler the build says so and the
sources run as they are. An extension older than its source would run old code unseen, so the
command line and the tests refuse to start while one is stale (``stale``).

python -m core.native build    compile what is missing or stale
python -m core.native clean    remove the compiled modules (the sources run)
python -m core.native check    exit 1, naming them, when a compiled module is stale
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The per-event loop, the decision core and what they call per event; each is compiled on
# its own (mypyc's ``separate``), so its runtime library sits beside it in its package. mypyc
# cannot compile a subclass of a builtin exception: those live in core/errors.py.
COMPILED = (
    "streams/forwarding.py",
    "streams/tally.py",
    "streams/partner_counts.py",
    "schemas/state.py",
    "core/routing.py",
    "core/partitioner.py",
    "streams/processor.py",
    "streams/record_batches.py",
)
_BUILD = """
from mypyc.build import mypycify
from setuptools import setup

setup(
    name="audience-forwarder-native",
    ext_modules=mypycify({sources!r}, opt_level="3", separate=True),
    script_args=["build_ext", "--inplace", "--build-temp", "build/native"],
)
"""


def extensions(source: str) -> list[Path]:
    """The compiled modules of one source: the module and its runtime library."""
    path = ROOT / source
    return sorted(path.parent.glob(f"{path.stem}.*.so")) + sorted(
        path.parent.glob(f"{path.stem}__mypyc.*.so")
    )


def stale() -> list[str]:
    """The sources changed since their compiled module was built."""
    return [
        source
        for source in COMPILED
        for built in extensions(source)[:1]
        if built.stat().st_mtime < (ROOT / source).stat().st_mtime
    ]


def stale_message(sources: list[str]) -> str:
    return (
        f"{', '.join(sources)} changed after being compiled: run `make native` to compile "
        "them again, or `make native-clean` to run the sources"
    )


def build() -> int:
    outdated = stale()
    wanted = [source for source in COMPILED if not extensions(source) or source in outdated]
    if not wanted:
        return 0
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        print("native: no C compiler: the sources run uncompiled (slower)", file=sys.stderr)
        return 0
    clean(wanted)
    done = subprocess.run(
        [sys.executable, "-c", _BUILD.format(sources=wanted)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        clean(wanted)  # nothing half-built is left to be imported
        print(done.stdout[-4000:], done.stderr[-4000:], sep="\n", file=sys.stderr)
        print("native: mypyc failed: the sources run uncompiled (slower)", file=sys.stderr)
        return 0
    for source in wanted:
        # setuptools copies an unchanged build with its old time: mark them built from now on.
        for built in extensions(source):
            built.touch()
    print(f"native: compiled {', '.join(wanted)}")
    return 0


def clean(sources: list[str] | tuple[str, ...] = COMPILED) -> None:
    for source in sources:
        for built in extensions(source):
            built.unlink()


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "build"
    if command == "build":
        return build()
    if command == "clean":
        clean()
        return 0
    if command == "check":
        found = stale()
        if found:
            print(stale_message(found), file=sys.stderr)
            return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
