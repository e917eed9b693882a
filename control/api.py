"""The control-plane API (`forwarder api`): outputs, connections, partners and stats over HTTP.

Writes go to the compacted config topics (key = id, JSON value, a tombstone deletes); reads are
answered from the API's own ConfigView, the worker's reader of those topics. After a write the
handler waits until its view has applied the record, so a response reflects the write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from control import metrics
from control.bodies import Access, ConnectionUpdate, FieldProblem, OutputUpdate
from control.console import add_console_routes, is_console_path
from control.dead_letter_tail import DEFAULT_LIMIT, MAX_LIMIT, DeadLetterTail
from control.openapi import openapi_document
from control.stats import connection_stats
from control.validation import (
    InvalidBodyError,
    connection_problems,
    duplicate_connection,
    merged,
    output_record,
    output_view,
    parse_body,
    partner_view,
    validated_output,
)
from control.workers import (
    EXPORT_MAX,
    EXPORT_PAGE,
    RETRY_AFTER_S,
    NoOwnerError,
    WorkerRefusedError,
    ask_workers,
    decode_cursor,
    encode_cursor,
    owner_answer,
    resync_running,
    worker_base_urls,
)
from core.auth import bearer_matches
from core.config import ConfigView
from core.kafka_admin import TopicSpec, ensure_topics
from core.prometheus import exposition
from core.routing import Routing
from core.settings import Settings, SettingsError
from partners.catalog import CATALOG, Output
from schemas.records import ConnectionConfig, OutputConfig, Resync, SourceRef

log = logging.getLogger(__name__)

WRITE_TIMEOUT_S = 10.0
SCRAPE_TIMEOUT_S = 2.0
# Answered before the configuration is read (/access: a console asks it first).
_PROBES = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/access"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Found = TypeVar("Found")


class ApiError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ControlPlane:
    """The API's connections to Kafka and the workers: config view, producer, HTTP session."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.routing = Routing()
        self.view = ConfigView(settings, self.routing, _ignore_output)
        self.outputs_topic = self.view.outputs_topic
        self.connections_topic = self.view.connections_topic
        self.producer = AIOKafkaProducer(
            **settings.kafka_client_options(), acks="all", enable_idempotence=True
        )
        self.session: aiohttp.ClientSession | None = None
        self.dead_letters = DeadLetterTail(settings)
        self.worker_urls = worker_base_urls(settings.worker_metrics_urls)
        self.resync_lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        # Compacted with one partition, as the worker declares them: whichever starts first.
        await ensure_topics(
            self.settings.kafka_client_options(),
            [
                TopicSpec(self.outputs_topic, 1, compacted=True),
                TopicSpec(self.connections_topic, 1, compacted=True),
            ],
            self.settings.replication_factor,
        )
        await self.producer.start()
        await self.dead_letters.start()
        view_task = asyncio.create_task(self.view.run())
        try:
            async with aiohttp.ClientSession() as self.session:
                yield
        finally:
            view_task.cancel()
            await asyncio.gather(view_task, return_exceptions=True)
            await self.dead_letters.stop()
            await self.producer.stop()

    async def write(self, topic: str, key: str, value: bytes | None) -> None:
        sent = await self.producer.send_and_wait(topic, key=key.encode(), value=value)
        ref = SourceRef(topic=sent.topic, partition=sent.partition, offset=sent.offset)
        try:
            await asyncio.wait_for(self.view.applied(ref), WRITE_TIMEOUT_S)
        except TimeoutError:
            raise ApiError(504, "written, but not read back in time; retry the read") from None

    async def scrape_workers(self) -> tuple[list[str], int]:
        """The workers' expositions, and how many could not be read."""
        assert self.session is not None
        results = await asyncio.gather(
            *(self._scrape(self.session, url) for url in self.settings.worker_metrics_urls)
        )
        texts = [text for text in results if text is not None]
        return texts, len(results) - len(texts)

    @staticmethod
    async def _scrape(session: aiohttp.ClientSession, url: str) -> str | None:
        try:
            timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
            async with session.get(url, timeout=timeout) as response:
                response.raise_for_status()
                return await response.text()
        except (aiohttp.ClientError, TimeoutError):
            log.warning("could not scrape %s", url)
            return None


async def _ignore_output(output: Output) -> None:
    """The API creates no topics for outputs: the worker does when it first sees one."""


PLANE = web.AppKey("plane", ControlPlane)


def _json(
    data: BaseModel | Sequence[BaseModel] | dict[str, Any], status: int = 200
) -> web.Response:
    if isinstance(data, BaseModel):
        body = data.model_dump_json().encode()
    elif isinstance(data, dict):
        body = orjson.dumps(data)
    else:
        body = orjson.dumps([item.model_dump(mode="json") for item in data])
    return web.Response(body=body, status=status, content_type="application/json")


def _problem(status: int, detail: object, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps({"detail": detail}),
        status=status,
        content_type="application/json",
        headers=headers,
    )


# Middlewares, outermost first: count, turn errors into answers, wait for config, check token.


@web.middleware
async def _count(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    try:
        response = await handler(request)
    except web.HTTPException as error:
        metrics.REQUESTS.labels(request.method, name, str(error.status)).inc()
        raise
    metrics.REQUESTS.labels(request.method, name, str(response.status)).inc()
    return response


@web.middleware
async def _answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except InvalidBodyError as error:
        return _problem(422, [problem.model_dump() for problem in error.problems])
    except ApiError as error:
        return _problem(error.status, error.detail)


@web.middleware
async def _wait_for_config(request: web.Request, handler: Handler) -> web.StreamResponse:
    waits = request.path not in _PROBES and not is_console_path(request.path)
    if waits and not request.app[PLANE].view.loaded.is_set():
        raise ApiError(503, "the configuration is not read yet")
    return await handler(request)


def _writes_enabled(settings: Settings) -> bool:
    return settings.api_writes_enabled and settings.api_token is not None


def _carries_token(request: web.Request) -> bool:
    token = request.app[PLANE].settings.api_token
    return token is not None and bearer_matches(request.headers.get("Authorization", ""), token)


def _token_valid(request: web.Request) -> bool:
    """Whether a write with this request's token would be accepted."""
    return _writes_enabled(request.app[PLANE].settings) and _carries_token(request)


@web.middleware
async def _check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return await handler(request)
    if not _writes_enabled(request.app[PLANE].settings):
        raise ApiError(403, "writes are disabled on this API")
    refused = _token_refused(request, "write")
    return refused if refused is not None else await handler(request)


def _token_refused(request: web.Request, what: str) -> web.Response | None:
    """401 unless the request carries the API token; the reads that return identity values
    need it as writes do."""
    if request.app[PLANE].settings.api_token is None:
        raise ApiError(403, f"this API has no FORWARDER_API_TOKEN: it cannot {what}")
    if not _carries_token(request):
        # The answer never says what was sent, nor what was expected.
        return _problem(
            401, f"a valid bearer token is needed to {what}", {"WWW-Authenticate": "Bearer"}
        )
    return None


# Probes and documents.


async def healthz(request: web.Request) -> web.Response:
    return _json({"alive": True})


async def readyz(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    ready = plane.view.loaded.is_set()
    body = {
        "ready": ready,
        "outputs": len(plane.routing.outputs),
        "connections": len(plane.routing.connections),
    }
    return _json(body, 200 if ready else 503)


async def prometheus(request: web.Request) -> web.Response:
    body, content_type = exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())


async def access(request: web.Request) -> web.Response:
    writes_enabled = _writes_enabled(request.app[PLANE].settings)
    return _json(Access(writes_enabled=writes_enabled, token_valid=_token_valid(request)))


async def list_partners(request: web.Request) -> web.Response:
    return _json([partner_view(partner) for partner in CATALOG.values()])


# Outputs.


def _found(items: Mapping[str, Found], key: str, what: str) -> Found:
    item = items.get(key)
    if item is None:
        raise ApiError(404, f"no such {what}")
    return item


def _output(plane: ControlPlane, output_id: str) -> Output:
    return _found(plane.routing.outputs, output_id, "output")


async def _put_output(plane: ControlPlane, config: OutputConfig) -> Output:
    validated_output(config)
    await plane.write(plane.outputs_topic, config.output_id, config.model_dump_json().encode())
    return _output(plane, config.output_id)


async def list_outputs(request: web.Request) -> web.Response:
    outputs = request.app[PLANE].routing.outputs
    return _json([output_view(outputs[output_id]) for output_id in sorted(outputs)])


async def create_output(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    config = parse_body(OutputConfig, await request.read())
    if config.output_id in plane.routing.outputs:
        raise ApiError(409, "an output with this output_id exists; update it instead")
    return _json(output_view(await _put_output(plane, config)), 201)


async def get_output(request: web.Request) -> web.Response:
    return _json(output_view(_output(request.app[PLANE], request.match_info["output_id"])))


async def update_output(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    current = _output(plane, request.match_info["output_id"])
    update = parse_body(OutputUpdate, await request.read())
    config = merged(OutputConfig, output_record(current), update)
    return _json(output_view(await _put_output(plane, config)))


async def delete_output(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    output = _output(plane, request.match_info["output_id"])
    connected = sorted(
        c.connection_id
        for c in plane.routing.connections.values()
        if c.output_id == output.output_id
    )
    if connected:
        raise ApiError(
            409, f"the output has connections; delete them first: {', '.join(connected)}"
        )
    await plane.write(plane.outputs_topic, output.output_id, None)
    return web.Response(status=204)


# Connections.


def _connection(plane: ControlPlane, connection_id: str) -> ConnectionConfig:
    return _found(plane.routing.connections, connection_id, "connection")


async def _put_connection(plane: ControlPlane, connection: ConnectionConfig) -> ConnectionConfig:
    problems = connection_problems(connection, plane.routing)
    if problems:
        raise InvalidBodyError(problems)
    other = duplicate_connection(connection, plane.routing)
    if other is not None:
        raise ApiError(409, f"the audience is connected to this output already by {other}")
    key = connection.connection_id
    await plane.write(plane.connections_topic, key, connection.model_dump_json().encode())
    return _connection(plane, key)


async def list_connections(request: web.Request) -> web.Response:
    connections = request.app[PLANE].routing.connections
    wanted = {
        name: request.query[name] for name in ("audience_id", "output_id") if name in request.query
    }
    return _json(
        [
            connections[key]
            for key in sorted(connections)
            if all(getattr(connections[key], name) == value for name, value in wanted.items())
        ]
    )


async def create_connection(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    connection = parse_body(ConnectionConfig, await request.read())
    if connection.connection_id in plane.routing.connections:
        raise ApiError(409, "a connection with this connection_id exists; update it instead")
    return _json(await _put_connection(plane, connection), 201)


async def get_connection(request: web.Request) -> web.Response:
    return _json(_connection(request.app[PLANE], request.match_info["connection_id"]))


async def update_connection(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    current = _connection(plane, request.match_info["connection_id"])
    update = parse_body(ConnectionUpdate, await request.read())
    return _json(await _put_connection(plane, merged(ConnectionConfig, current, update)))


async def delete_connection(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    connection = _connection(plane, request.match_info["connection_id"])
    await plane.write(plane.connections_topic, connection.connection_id, None)
    return web.Response(status=204)


async def get_connection_stats(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    connection = _connection(plane, request.match_info["connection_id"])
    expositions, unreachable = await plane.scrape_workers()
    return _json(connection_stats(connection, expositions, unreachable))


def _limit(request: web.Request, default: int, maximum: int) -> int:
    """The ``limit`` query parameter: an integer from 1 to ``maximum``, else a 422."""
    raw = request.query.get("limit", str(default))
    # ASCII digits only ("²" is a digit to str.isdigit), and few: int() refuses long strings.
    limit = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 6 else 0
    if not 1 <= limit <= maximum:
        raise InvalidBodyError(
            [FieldProblem(field="limit", reason=f"an integer from 1 to {maximum}")]
        )
    return limit


async def list_dead_letters(request: web.Request) -> web.Response:
    limit = _limit(request, DEFAULT_LIMIT, MAX_LIMIT)
    return _json(await request.app[PLANE].dead_letters.latest(limit))


# Operator questions (explain, export, resync), forwarded to the workers (control/workers.py).


async def _ask_owner(
    plane: ControlPlane, path: str, params: dict[str, str], with_token: bool = False
) -> dict[str, Any]:
    assert plane.session is not None
    token = plane.settings.api_token
    headers = (
        {"Authorization": f"Bearer {token.get_secret_value()}"} if with_token and token else {}
    )
    answers = await ask_workers(plane.session, plane.worker_urls, path, params, headers)
    try:
        return owner_answer(answers)
    except WorkerRefusedError as error:
        raise ApiError(error.status, error.detail) from None


def _retry_later(error: NoOwnerError) -> web.Response:
    return _problem(503, error.detail, {"Retry-After": str(RETRY_AFTER_S)})


async def explain_profile(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    connection = _connection(plane, request.match_info["connection_id"])
    mpid = request.query.get("mpid")
    if not mpid:
        raise InvalidBodyError([FieldProblem(field="mpid", reason="Query parameter required")])
    try:
        answer = await _ask_owner(
            plane,
            "/operator/explain",
            {"connection_id": connection.connection_id, "mpid": mpid},
        )
    except NoOwnerError as error:
        return _retry_later(error)
    return _json(answer)


async def export_members(request: web.Request) -> web.StreamResponse:
    """NDJSON: one line per profile the partner should hold, then ``{"next_cursor": ...}``."""
    refused = _token_refused(request, "export identities")
    if refused is not None:
        return refused
    plane = request.app[PLANE]
    connection = _connection(plane, request.match_info["connection_id"])
    try:
        partition, after = decode_cursor(request.query.get("cursor"))
    except ValueError as error:
        raise InvalidBodyError([FieldProblem(field="cursor", reason=str(error))]) from None
    limit = _limit(request, EXPORT_PAGE, EXPORT_MAX)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    written = 0
    partitions = plane.settings.input_partitions
    while partition < partitions and written < limit:
        params = {
            "connection_id": connection.connection_id,
            "partition": str(partition),
            "after": after,
            "limit": str(limit - written),
        }
        try:
            page = await _ask_owner(plane, "/operator/members", params, with_token=True)
        except NoOwnerError as error:
            if not response.prepared:
                return _retry_later(error)
            break  # the cursor below resumes here, once the partition has its owner again
        if not response.prepared:
            await response.prepare(request)
        members = page["members"]
        await response.write(b"".join(orjson.dumps(member) + b"\n" for member in members))
        written += len(members)
        partition, after = (
            (partition + 1, "") if page["next_after"] is None else (partition, page["next_after"])
        )
    if not response.prepared:
        await response.prepare(request)
    cursor = encode_cursor(partition, after) if partition < partitions else None
    await response.write(orjson.dumps({"next_cursor": cursor}) + b"\n")
    await response.write_eof()
    return response


def now_ms() -> int:
    return int(time.time() * 1000)


async def resync_connection(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    connection_id = request.match_info["connection_id"]
    # One resync decision at a time in this process: two requests racing would both pass.
    async with plane.resync_lock:
        connection = _connection(plane, connection_id)
        if connection.status != "active":
            raise ApiError(409, f"the connection is {connection.status}; only active ones resync")
        now = now_ms()
        if connection.resync is not None:
            expositions, _ = await plane.scrape_workers()
            if resync_running(
                connection_id,
                connection.resync.generation,
                connection.resync.requested_ms,
                now,
                plane.settings.input_partitions,
                expositions,
            ):
                raise ApiError(409, "a resync of this connection is running; see its stats")
        resync = Resync(generation=connection.resync_generation + 1, requested_ms=now)
        updated = connection.model_copy(update={"resync": resync})
        await plane.write(
            plane.connections_topic, connection_id, updated.model_dump_json().encode()
        )
    return _json(_connection(plane, connection_id), 202)


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/healthz", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/metrics", prometheus),
    ("GET", "/openapi.json", openapi),
    ("GET", "/access", access),
    ("GET", "/partners", list_partners),
    ("GET", "/outputs", list_outputs),
    ("POST", "/outputs", create_output),
    ("GET", "/outputs/{output_id}", get_output),
    ("PATCH", "/outputs/{output_id}", update_output),
    ("DELETE", "/outputs/{output_id}", delete_output),
    ("GET", "/connections", list_connections),
    ("POST", "/connections", create_connection),
    ("GET", "/connections/{connection_id}", get_connection),
    ("PATCH", "/connections/{connection_id}", update_connection),
    ("DELETE", "/connections/{connection_id}", delete_connection),
    ("GET", "/connections/{connection_id}/stats", get_connection_stats),
    ("GET", "/connections/{connection_id}/explain", explain_profile),
    ("GET", "/connections/{connection_id}/members", export_members),
    ("POST", "/connections/{connection_id}/resync", resync_connection),
    ("GET", "/dead-letters", list_dead_letters),
]


async def build_app(settings: Settings) -> web.Application:
    # Async: aiokafka clients are made inside the loop that runs them.
    app = web.Application(middlewares=[_count, _answer_errors, _wait_for_config, _check_token])
    plane = ControlPlane(settings)
    app[PLANE] = plane

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with plane.running():
            yield

    app.cleanup_ctx.append(lifecycle)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    add_console_routes(app)
    return app


def check_api_settings(settings: Settings) -> None:
    """Writes need a token: refuse to start without one rather than serve unauthenticated."""
    token = settings.api_token.get_secret_value() if settings.api_token else ""
    if settings.api_writes_enabled and not token:
        raise SettingsError(
            "forwarder: invalid setting FORWARDER_API_TOKEN: needed while "
            "FORWARDER_API_WRITES_ENABLED is true (or set that to false for a read-only API)"
        )


def run_api(settings: Settings) -> int:
    """The ``forwarder api`` command: serve until SIGTERM or SIGINT."""
    check_api_settings(settings)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    log.info("control-plane API on %s:%d", settings.api_host, settings.api_port)
    web.run_app(
        build_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        access_log=None,
        print=None,
    )
    return 0
