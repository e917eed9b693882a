"""The ``forwarder`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

import uvloop

from control.commands import add_client_commands
from core import native
from core.errors import BrokerUnreachableError, ConfigError, ForwarderError
from core.kafka_admin import wait_for_broker
from core.settings import Settings, SettingsError, load_settings
from forwarder.produce import INPUT_TOPICS, keyed, produce

# By kind (sysexits.h), so that a supervisor can tell a setting to change from a broker that
# is not up yet; any other ForwarderError exits 1.
EXIT_CODES: tuple[tuple[type[ForwarderError], int], ...] = (
    (ConfigError, os.EX_CONFIG),
    (BrokerUnreachableError, os.EX_UNAVAILABLE),
)


def _wait_for_broker(settings: Settings) -> None:
    """Before a process starts: retry until the broker answers, one log line per attempt."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(wait_for_broker(settings.kafka_client_options(), settings.kafka_connect_timeout_s))


def _worker(args: argparse.Namespace) -> int:
    from streams.app import Forwarder

    settings = load_settings()
    try:
        # Faust creates only the last folder of its data dir; the default one is relative.
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SettingsError(
            f"forwarder: invalid setting FORWARDER_DATA_DIR: cannot create {settings.data_dir}: "
            f"{error.strerror}"
        ) from None
    _wait_for_broker(settings)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    forwarder = Forwarder(settings)
    asyncio.run(forwarder.create_topics())
    return forwarder.run_worker()


def _sink(args: argparse.Namespace) -> int:
    from sinks.runner import run_sinks

    settings = load_settings()
    _wait_for_broker(settings)
    return run_sinks(args.output, settings)


def _api(args: argparse.Namespace) -> int:
    from control.api import check_api_settings, run_api

    settings = load_settings()
    check_api_settings(settings)  # before waiting for the broker: a missing token is quicker
    _wait_for_broker(settings)
    return run_api(settings)


def _produce(args: argparse.Namespace) -> int:
    settings = load_settings()
    records = keyed(sys.stdin)
    _wait_for_broker(settings)
    asyncio.run(produce(settings, args.topic, records))
    print(f"sent {len(records)} records to {settings.topic(args.topic)}")
    return 0


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
    produce = commands.add_parser(
        "produce", help="publish JSON records (one a line, on stdin) to an input topic, to try it"
    )
    produce.add_argument("topic", choices=INPUT_TOPICS)
    produce.set_defaults(run=_produce)
    add_client_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; a ForwarderError becomes its message on stderr and its exit code."""
    args = build_parser().parse_args(argv)
    try:
        stale = native.stale()
        if stale:
            raise ConfigError(f"forwarder: {native.stale_message(stale)}")
        result: int = args.run(args)
    except ForwarderError as error:
        print(error, file=sys.stderr)
        return next((code for kind, code in EXIT_CODES if isinstance(error, kind)), 1)
    except KeyboardInterrupt:
        return 130  # Ctrl-C before a process installed its own signal handling
    return result


if __name__ == "__main__":
    sys.exit(main())
