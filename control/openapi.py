"""The API's OpenAPI 3.1 document, built from the pydantic models the handlers use."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from control.bodies import (
    Access,
    ConnectionStats,
    ConnectionUpdate,
    Explanation,
    HeldMember,
    OutputUpdate,
    OutputView,
    PartnerView,
    Problem,
    ValidationProblem,
)
from control.dead_letter_tail import DEFAULT_LIMIT, MAX_LIMIT
from control.workers import EXPORT_MAX, EXPORT_PAGE
from partners.catalog import CATALOG
from schemas.records import ConnectionConfig, DeadLetter, OutputConfig

_REF = "#/components/schemas/{model}"
# A tuple: an NDJSON stream of the model's lines.
Shape = (
    type[BaseModel]
    | list[type[BaseModel]]
    | tuple[Literal["ndjson"], type[BaseModel]]
    | Literal["text"]
    | None
)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    responses: dict[int, tuple[str, Shape]]
    body: type[BaseModel] | None = None
    # Optional query parameters and their schemas.
    query: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    required_query: tuple[str, ...] = ()
    # A read that returns identity values: it needs the token as writes do.
    needs_token: bool = False

    @property
    def writes(self) -> bool:
        return self.method != "get"


_STRING = {"type": "string"}


def _integer(default: int, maximum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}


_NOT_FOUND: dict[int, tuple[str, Shape]] = {404: ("No such resource.", Problem)}
_INVALID: dict[int, tuple[str, Shape]] = {
    422: ("The body is invalid: each problem names its field and reason.", ValidationProblem)
}
_RETRY: dict[int, tuple[str, Shape]] = {
    503: (
        "The worker owning the partition is rebalancing, or none answered; retry after the "
        "Retry-After seconds.",
        Problem,
    )
}

OPERATIONS = [
    Operation("get", "/healthz", "healthz", "Alive.", {200: ("Alive.", None)}, tags=("probes",)),
    Operation(
        "get",
        "/readyz",
        "readyz",
        "Ready: the configuration topics are read.",
        {200: ("Ready.", None), 503: ("Not ready yet.", None)},
        tags=("probes",),
    ),
    Operation(
        "get",
        "/metrics",
        "metrics",
        "Prometheus metrics.",
        {200: ("Metrics.", "text")},
        tags=("probes",),
    ),
    Operation(
        "get",
        "/access",
        "getAccess",
        "Whether writes are enabled and the request's bearer token would be accepted.",
        {200: ("What the caller may do.", Access)},
        tags=("access",),
    ),
    Operation(
        "get",
        "/partners",
        "listPartners",
        "The partner directory: identity types, attribute support, settings.",
        {200: ("Every partner.", [PartnerView])},
        tags=("partners",),
    ),
    Operation(
        "get",
        "/outputs",
        "listOutputs",
        "Every output.",
        {200: ("Outputs.", [OutputView])},
        tags=("outputs",),
    ),
    Operation(
        "post",
        "/outputs",
        "createOutput",
        "Create an output, checked against its partner.",
        {201: ("Created.", OutputView), 409: ("The output exists.", Problem), **_INVALID},
        body=OutputConfig,
        tags=("outputs",),
    ),
    Operation(
        "get",
        "/outputs/{output_id}",
        "getOutput",
        "One output.",
        {200: ("The output.", OutputView), **_NOT_FOUND},
        tags=("outputs",),
    ),
    Operation(
        "patch",
        "/outputs/{output_id}",
        "updateOutput",
        "Change an output's name, identities, attribute support or settings.",
        {200: ("Updated.", OutputView), **_NOT_FOUND, **_INVALID},
        body=OutputUpdate,
        tags=("outputs",),
    ),
    Operation(
        "delete",
        "/outputs/{output_id}",
        "deleteOutput",
        "Delete an output that has no connections.",
        {204: ("Deleted.", None), 409: ("It has connections.", Problem), **_NOT_FOUND},
        tags=("outputs",),
    ),
    Operation(
        "get",
        "/connections",
        "listConnections",
        "Every connection, optionally of one audience or output.",
        {200: ("Connections.", [ConnectionConfig])},
        query={"audience_id": _STRING, "output_id": _STRING},
        tags=("connections",),
    ),
    Operation(
        "post",
        "/connections",
        "createConnection",
        "Connect an audience to an output.",
        {
            201: ("Created.", ConnectionConfig),
            409: ("The connection, or one of the audience to the output, exists.", Problem),
            **_INVALID,
        },
        body=ConnectionConfig,
        tags=("connections",),
    ),
    Operation(
        "get",
        "/connections/{connection_id}",
        "getConnection",
        "One connection.",
        {200: ("The connection.", ConnectionConfig), **_NOT_FOUND},
        tags=("connections",),
    ),
    Operation(
        "patch",
        "/connections/{connection_id}",
        "updateConnection",
        "Change a connection's status, forwarded attributes, disconnect or consent rule.",
        {200: ("Updated.", ConnectionConfig), **_NOT_FOUND, **_INVALID},
        body=ConnectionUpdate,
        tags=("connections",),
    ),
    Operation(
        "delete",
        "/connections/{connection_id}",
        "deleteConnection",
        "Delete a connection.",
        {204: ("Deleted.", None), **_NOT_FOUND},
        tags=("connections",),
    ),
    Operation(
        "get",
        "/connections/{connection_id}/stats",
        "getConnectionStats",
        "Records added, removed, dropped by reason and the last record time, from the workers.",
        {200: ("Stats.", ConnectionStats), **_NOT_FOUND},
        tags=("connections",),
    ),
    Operation(
        "get",
        "/dead-letters",
        "listDeadLetters",
        "The latest dead letters, newest first; settings of output records redacted.",
        {
            200: ("Dead letters.", [DeadLetter]),
            422: ("The limit is out of range.", ValidationProblem),
        },
        query={"limit": _integer(DEFAULT_LIMIT, MAX_LIMIT)},
        tags=("dead-letters",),
    ),
    Operation(
        "get",
        "/connections/{connection_id}/explain",
        "explainProfile",
        "Why a profile is or is not at the connection's partner, from the worker owning it: "
        "membership, identity types against those accepted, consent, status, what was sent. "
        "Identity types only, never values.",
        {200: ("The explanation.", Explanation), **_NOT_FOUND, **_INVALID, **_RETRY},
        required_query=("mpid",),
        tags=("operations",),
    ),
    Operation(
        "get",
        "/connections/{connection_id}/members",
        "exportMembers",
        "What the partner should hold now, as NDJSON: one line per profile (identities and "
        'attributes as sent), then a last line {"next_cursor": ...} to pass as cursor for '
        "the next page (null: complete). Needs the token: it returns identities.",
        {
            200: ("The members.", ("ndjson", HeldMember)),
            **_NOT_FOUND,
            **_INVALID,
            **_RETRY,
        },
        query={"cursor": _STRING, "limit": _integer(EXPORT_PAGE, EXPORT_MAX)},
        needs_token=True,
        tags=("operations",),
    ),
    Operation(
        "post",
        "/connections/{connection_id}/resync",
        "resyncConnection",
        "Send every current member of an active connection to its partner again, as adds, "
        "under record ids of a new resync generation; progress in the stats.",
        {
            202: ("Requested; the connection with its new resync generation.", ConnectionConfig),
            409: ("Not active, or a resync of it is running.", Problem),
            **_NOT_FOUND,
        },
        tags=("operations",),
    ),
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _content(shape: Shape) -> dict[str, Any]:
    if shape is None:
        return {}
    if shape == "text":
        return {"content": {"text/plain": {"schema": {"type": "string"}}}}
    if isinstance(shape, tuple):
        return {"content": {"application/x-ndjson": {"schema": _ref(shape[1])}}}
    schema = {"type": "array", "items": _ref(shape[0])} if isinstance(shape, list) else _ref(shape)
    return {"content": {"application/json": {"schema": schema}}}


def _operation(operation: Operation) -> dict[str, Any]:
    responses = {
        str(status): {"description": description, **_content(shape)}
        for status, (description, shape) in operation.responses.items()
    }
    spec: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": list(operation.tags),
        "responses": responses,
    }
    parameters = (
        [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in ("output_id", "connection_id")
            if "{" + name + "}" in operation.path
        ]
        + [
            {"name": name, "in": "query", "required": True, "schema": _STRING}
            for name in operation.required_query
        ]
        + [
            {"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in operation.query.items()
        ]
    )
    if parameters:
        spec["parameters"] = parameters
    if operation.body is not None:
        spec["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(operation.body)}},
        }
    if operation.method == "post" and 201 in operation.responses:
        responses["201"]["links"] = _links_from(operation)
    if operation.writes or operation.needs_token:
        spec["security"] = [{"bearer": []}]
        responses["401"] = {"description": "No valid bearer token.", **_content(Problem)}
        responses["403"] = {
            "description": "Writes are disabled." if operation.writes else "The API has no token.",
            **_content(Problem),
        }
    return spec


def _links_from(create: Operation) -> dict[str, Any]:
    """From a create to the operations on what it created, which take its id from the answer."""
    links: dict[str, Any] = {}
    for operation in OPERATIONS:
        if not operation.path.startswith(create.path + "/{"):
            continue
        parameter = operation.path[len(create.path) + 2 :].split("}", 1)[0]
        links[operation.operation_id] = {
            "operationId": operation.operation_id,
            "parameters": {parameter: f"$response.body#/{parameter}"},
        }
    return links


def _models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    shapes: set[type[BaseModel]] = set()
    for operation in OPERATIONS:
        if operation.body is not None:
            shapes.add(operation.body)
        for _, shape in operation.responses.values():
            if isinstance(shape, list):
                shapes.update(shape)
            elif isinstance(shape, tuple):
                shapes.add(shape[1])
            elif isinstance(shape, type):
                shapes.add(shape)
    shapes.add(Problem)
    # Bodies are read as input, answers written as output; a model used both ways reads alike.
    bodies = {operation.body for operation in OPERATIONS}
    return [
        (model, "validation" if model in bodies else "serialization")
        for model in sorted(shapes, key=lambda model: model.__name__)
    ]


@functools.cache
def openapi_document() -> dict[str, Any]:
    _, schemas = models_json_schema(_models(), ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = _operation(operation)
    # The records take any partner name (the worker dead-letters unknown ones); the API only
    # those of the catalog, which the document says so that clients and fuzzers know them.
    schemas["$defs"]["OutputConfig"]["properties"]["partner"]["enum"] = sorted(CATALOG)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "audience-forwarder control plane",
            "version": "1",
            "description": "Outputs, connections and the partner directory. Writes go to the "
            "compacted config topics and need a bearer token.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
