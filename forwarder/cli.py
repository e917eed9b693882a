"""The ``forwarder`` command."""

from __future__ import annotations

import argparse
import asyncio
import sys

import uvloop

from control.commands import add_client_commands
from core.settings import load_settings


def _worker(args: argparse.Namespace) -> int:
    from streams.app import Forwarder

    settings = load_settings()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    forwarder = Forwarder(settings)
    asyncio.run(forwarder.create_topics())
    return forwarder.run_worker()


def _sink(args: argparse.Namespace) -> int:
    from sinks.runner import run_sinks

    return run_sinks(args.output, load_settings())


def _api(args: argparse.Namespace) -> int:
    from control.api import run_api

    return run_api(load_settings())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forwarder",
        description="Forward audience members' identities to partner outputs, on Kafka. "
        "Settings come from FORWARDER_* environment variables (see README).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run the stream processor")
    worker.set_defaults(run=_worker)
    sink = commands.add_parser("sink", help="deliver outputs' records to their partners")
    sink.add_argument(
        "--output",
        action="append",
        required=True,
        metavar="OUTPUT_ID",
        help="an output to deliver; repeat to run several in one process",
    )
    sink.set_defaults(run=_sink)
    api = commands.add_parser("api", help="serve the control-plane HTTP API")
    api.set_defaults(run=_api)
    add_client_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
