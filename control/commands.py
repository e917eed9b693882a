"""CLI commands over the control-plane API: `forwarder partners|outputs|connections ...`.

They talk HTTP to `forwarder api` (--api-url, default from FORWARDER_API_HOST/PORT) with the
token in FORWARDER_API_TOKEN, and print tables, or the API's JSON with --json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import orjson

from core.settings import load_settings

Render = Callable[[Any], str]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(headers), *([_cell(value) for value in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(str(item) for item in value) or "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def fields_table(document: dict[str, Any]) -> str:
    return table(["field", "value"], list(document.items()))


def partners_table(partners: list[dict[str, Any]]) -> str:
    return table(
        ["partner", "identities", "attributes", "sink", "required settings"],
        [
            [
                p["name"],
                # Configurable partners take whatever each output lists: all 29 types.
                "any, per output" if p["configurable"] else p["accepted_identities"],
                p["supports_attributes"],
                p["sink"],
                p["required_settings"],
            ]
            for p in partners
        ],
    )


def records_table(columns: Sequence[tuple[str, str]], documents: list[dict[str, Any]]) -> str:
    """One row per document; ``columns`` are (header, field) pairs."""
    return table(
        [header for header, _ in columns],
        [[document[name] for _, name in columns] for document in documents],
    )


def outputs_table(outputs: list[dict[str, Any]]) -> str:
    columns = [("output", "output_id"), ("partner", "partner"), ("name", "name"),
               ("identities", "accepted_identities"),
               ("attributes", "supports_attributes")]  # fmt: skip
    return records_table(columns, outputs)


def connections_table(connections: list[dict[str, Any]]) -> str:
    columns = [("connection", "connection_id"), ("audience", "audience_id"),
               ("output", "output_id"), ("status", "status"),
               ("attributes", "forwarded_attributes")]  # fmt: skip
    return records_table(columns, connections)


def setting(text: str) -> tuple[str, Any]:
    """KEY=VALUE; a VALUE that is JSON (2, true, [..]) is taken as such, else as a string."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return name, orjson.loads(value)
    except orjson.JSONDecodeError:
        return name, value


def problems(status: int, document: Any) -> str:
    detail = document.get("detail") if isinstance(document, dict) else document
    if isinstance(detail, list):
        lines = [f"  {p.get('field')}: {p.get('reason')}" for p in detail if isinstance(p, dict)]
        return "\n".join([f"forwarder: HTTP {status}: the request is invalid", *lines])
    return f"forwarder: HTTP {status}: {detail}"


async def _call(
    method: str, url: str, token: str | None, body: dict[str, Any] | None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = orjson.dumps(body) if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=data, headers=headers) as response,
    ):
        raw = await response.read()
        return response.status, orjson.loads(raw) if raw else None


def _request(
    args: argparse.Namespace,
    method: str,
    path: str,
    render: Render,
    body: dict[str, Any] | None = None,
) -> int:
    settings = load_settings()
    base = args.api_url or f"http://{settings.api_host}:{settings.api_port}"
    token = settings.api_token.get_secret_value() if settings.api_token else None
    try:
        status, document = asyncio.run(_call(method, base.rstrip("/") + path, token, body))
    except (aiohttp.ClientError, OSError) as error:
        print(f"forwarder: cannot reach the API at {base}: {type(error).__name__}", file=sys.stderr)
        return 1
    if status >= 400:
        print(problems(status, document), file=sys.stderr)
        return 1
    print(
        orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()
        if args.json
        else render(document)
    )
    return 0


def _export(args: argparse.Namespace, path: str) -> int:
    """Print every member line, page after page, until the export's cursor is null."""
    settings = load_settings()
    base = (args.api_url or f"http://{settings.api_host}:{settings.api_port}").rstrip("/")
    token = settings.api_token.get_secret_value() if settings.api_token else None
    try:
        return asyncio.run(_export_pages(base + path, token))
    except (aiohttp.ClientError, OSError) as error:
        print(f"forwarder: cannot reach the API at {base}: {type(error).__name__}", file=sys.stderr)
        return 1


async def _export_pages(url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    cursor: str | None = ""
    async with aiohttp.ClientSession() as session:
        while cursor is not None:
            params = {"cursor": cursor} if cursor else {}
            async with session.get(url, params=params, headers=headers) as response:
                if response.status >= 400:
                    raw = await response.read()
                    refused = problems(response.status, orjson.loads(raw) if raw else None)
                    print(refused, file=sys.stderr)
                    return 1
                async for line in response.content:
                    document = orjson.loads(line)
                    if "next_cursor" in document:
                        cursor = document["next_cursor"]
                    else:
                        sys.stdout.write(line.decode())
    return 0


def _said(message: str) -> Render:
    return lambda document: message


def _set(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The options given, by body field name."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


# Commands.


def _partners(args: argparse.Namespace) -> int:
    return _request(args, "GET", "/partners", partners_table)


def _outputs(args: argparse.Namespace) -> int:
    path = f"/outputs/{args.output_id}" if getattr(args, "output_id", None) else "/outputs"
    if args.action == "list":
        return _request(args, "GET", path, outputs_table)
    if args.action == "get":
        return _request(args, "GET", path, fields_table)
    if args.action == "delete":
        return _request(args, "DELETE", path, _said(f"deleted output {args.output_id}"))
    fields = _set(args, ("name", "accepted_identities", "supports_attributes", "settings"))
    if "settings" in fields:
        fields["settings"] = dict(fields["settings"])
    if args.action == "create":
        body = {"output_id": args.id, "partner": args.partner, **fields}
        return _request(args, "POST", path, fields_table, body)
    return _request(args, "PATCH", path, fields_table, fields)


def _connections(args: argparse.Namespace) -> int:
    path = (
        f"/connections/{args.connection_id}"
        if getattr(args, "connection_id", None)
        else "/connections"
    )
    fields = ("status", "forwarded_attributes", "on_disconnect")
    if args.action == "list":
        query = urllib.parse.urlencode(_set(args, ("audience_id", "output_id")))
        return _request(args, "GET", f"{path}?{query}" if query else path, connections_table)
    if args.action == "get":
        return _request(args, "GET", path, fields_table)
    if args.action == "stats":
        return _request(args, "GET", f"{path}/stats", fields_table)
    if args.action == "explain":
        query = urllib.parse.urlencode({"mpid": args.mpid})
        return _request(args, "GET", f"{path}/explain?{query}", fields_table)
    if args.action == "resync":
        said = _said(f"resync of {args.connection_id} requested; see `connections stats`")
        return _request(args, "POST", f"{path}/resync", said)
    if args.action == "members":
        return _export(args, f"{path}/members")
    if args.action == "create":
        body = {
            "connection_id": args.id,
            "audience_id": args.audience,
            "output_id": args.output,
            **_set(args, fields),
        }
        return _request(args, "POST", path, fields_table, body)
    if args.action == "update":
        return _request(args, "PATCH", path, fields_table, _set(args, fields))
    return _request(args, "DELETE", path, _said(f"deleted connection {args.connection_id}"))


# The parser.


def _client_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--api-url", help="the API's base URL (default: http://FORWARDER_API_HOST:PORT)"
    )
    options.add_argument("--json", action="store_true", help="print the API's JSON")
    return options


def _output_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name")
    parser.add_argument(
        "--identity",
        dest="accepted_identities",
        action="append",
        metavar="TYPE",
        help="an identity type the output accepts; repeat for several",
    )
    parser.add_argument(
        "--attributes",
        dest="supports_attributes",
        action=argparse.BooleanOptionalAction,
        help="whether the output takes user attributes",
    )
    parser.add_argument(
        "--setting",
        dest="settings",
        action="append",
        type=setting,
        metavar="KEY=VALUE",
        help="a partner setting (secrets by env-var name: token_env=HOOK_TOKEN); "
        "given settings replace the output's whole settings",
    )


def _connection_fields(parser: argparse.ArgumentParser, status_default: str | None) -> None:
    parser.add_argument(
        "--status", choices=["active", "inactive", "preview"], default=status_default
    )
    parser.add_argument(
        "--attribute",
        dest="forwarded_attributes",
        action="append",
        metavar="NAME",
        help="a user attribute to forward; repeat for several",
    )
    parser.add_argument("--on-disconnect", choices=["keep", "remove"])


def add_client_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    client = _client_options()
    partners = commands.add_parser("partners", parents=[client], help="the partner directory")
    partners.set_defaults(run=_partners)

    outputs = commands.add_parser("outputs", help="manage outputs through the API")
    outputs.set_defaults(run=_outputs)
    output_actions = outputs.add_subparsers(dest="action", required=True)
    output_actions.add_parser("list", parents=[client], help="every output")
    for action in ("get", "delete"):
        output_actions.add_parser(action, parents=[client]).add_argument("output_id")
    create = output_actions.add_parser("create", parents=[client], help="create an output")
    create.add_argument("--id", required=True, help="the output_id")
    create.add_argument("--partner", required=True, help="a partner of `forwarder partners`")
    _output_fields(create)
    update = output_actions.add_parser("update", parents=[client], help="change an output")
    update.add_argument("output_id")
    _output_fields(update)

    connections = commands.add_parser("connections", help="manage connections through the API")
    connections.set_defaults(run=_connections)
    connection_actions = connections.add_subparsers(dest="action", required=True)
    listing = connection_actions.add_parser("list", parents=[client], help="every connection")
    listing.add_argument("--audience", dest="audience_id")
    listing.add_argument("--output", dest="output_id")
    for action in ("get", "delete", "stats"):
        connection_actions.add_parser(action, parents=[client]).add_argument("connection_id")
    explain = connection_actions.add_parser(
        "explain", parents=[client], help="why a profile is or is not at the partner"
    )
    explain.add_argument("connection_id")
    explain.add_argument("--mpid", required=True)
    connection_actions.add_parser(
        "resync", parents=[client], help="send every member to the partner again"
    ).add_argument("connection_id")
    connection_actions.add_parser(
        "members", parents=[client], help="what the partner should hold, as NDJSON (token)"
    ).add_argument("connection_id")
    connect = connection_actions.add_parser(
        "create", parents=[client], help="connect an audience to an output"
    )
    connect.add_argument("--id", required=True, help="the connection_id")
    connect.add_argument("--audience", required=True, help="the audience_id")
    connect.add_argument("--output", required=True, help="the output_id")
    _connection_fields(connect, status_default="inactive")
    change = connection_actions.add_parser("update", parents=[client], help="change one")
    change.add_argument("connection_id")
    _connection_fields(change, status_default=None)
    change.add_argument(
        "--no-attributes",
        dest="forwarded_attributes",
        action="store_const",
        const=[],
        help="forward no attributes",
    )
