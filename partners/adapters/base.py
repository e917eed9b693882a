"""What every adapter shares: its settings base, the plan/send/outcome contract, HTTP sending.

An adapter is split in two. ``plan`` is pure: it turns a batch of records into steps (HTTP
requests, file writes) that each cover some records, and ``interpret`` (HTTP adapters) turns a
response into an outcome. ``send`` is the one impure call. Batching, rate limiting, retries and
dead letters are the same for every adapter and live in sinks/delivery.py and
sinks/runner.py.
"""

from __future__ import annotations

import email.utils
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from partners.catalog import Output, Partner
from partners.secrets import Secrets
from schemas.records import OutboundRecord

# Setting names that would hold a secret; each must be given as "<name>_env" instead.
_SECRET_WORDS = (
    "token",
    "secret",
    "password",
    "passwd",
    "api_key",
    "apikey",
    "authorization",
    "credential",
)
_REASON_CHARS = 300


class AdapterSettings(BaseModel):
    """An output's ``settings`` object; each adapter extends it with its own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_max_records: int | None = Field(
        None, ge=1, description="Records per batch; capped at the partner's batch limit."
    )
    batch_max_bytes: int = Field(1_000_000, ge=1_000, description="Record bytes per batch.")
    batch_linger_ms: int = Field(200, ge=0, le=60_000, description="Longest wait to fill one.")
    rate_per_second: float | None = Field(None, gt=0, description="Overrides the catalog's.")
    rate_burst: int | None = Field(None, ge=1, description="Overrides the catalog's.")
    request_timeout_s: float = Field(10.0, gt=0, le=300)
    retry_initial_s: float = Field(0.5, gt=0, le=60)
    retry_max_s: float = Field(60.0, gt=0, le=3600)

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in data:
                lowered = str(name).lower()
                if any(word in lowered for word in _SECRET_WORDS) and not lowered.endswith("_env"):
                    raise ValueError(
                        f"{name!r} looks like an inline secret: put the secret in an environment "
                        f"variable and name it in {name}_env"
                    )
        return data

    def secret_env_names(self) -> list[str]:
        """The environment variables this output's secrets are read from."""
        return [
            value
            for name, value in self
            if name.endswith("_env") and isinstance(value, str) and value
        ]


def check_base_url(url: HttpUrl) -> HttpUrl:
    """A base URL carries no credentials: user:password@ or a query string would be secrets."""
    if url.username or url.password or url.query:
        raise ValueError("the URL must not carry credentials or a query string")
    return url


class UrlSettings(AdapterSettings):
    base_url: HttpUrl

    _check_base_url = field_validator("base_url")(check_base_url)

    def endpoint(self, path: str) -> str:
        return str(self.base_url).rstrip("/") + path


@dataclass(frozen=True, slots=True)
class Accepted:
    """The partner took the step; ``rejected`` are the records it refused one by one."""

    rejected: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient failure: the same step goes again, after ``after_s`` when the partner said."""

    reason: str
    after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """A permanent failure of the whole step: every record in it is dead-lettered."""

    reason: str


Outcome = Accepted | Retry | Refused


class Step(Protocol):
    @property
    def items(self) -> tuple[int, ...]:
        """Indexes (into the batch) of the records this step delivers."""
        ...


StepT = TypeVar("StepT", bound=Step)


@dataclass(frozen=True, slots=True)
class Plan(Generic[StepT]):
    """Steps to run in order; records refused before sending (e.g. no usable identity)."""

    steps: list[StepT]
    rejected: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AdapterContext:
    """What an adapter is built from, besides its settings."""

    output: Output
    partner: Partner
    secrets: Secrets
    session: aiohttp.ClientSession


class Adapter(ABC, Generic[StepT]):
    def __init__(self, context: AdapterContext) -> None:
        self.output = context.output
        self.partner = context.partner
        self.secrets = context.secrets

    @abstractmethod
    def plan(self, records: Sequence[OutboundRecord]) -> Plan[StepT]: ...

    @abstractmethod
    async def send(self, step: StepT) -> Outcome: ...

    async def close(self) -> None:
        """Release what ``send`` holds (files, connections)."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    body: bytes
    items: tuple[int, ...]
    # How the partner names a record when it refuses it alone (record id, row value, position).
    index_of: Mapping[str, int] = field(default_factory=dict)

    def rejected(self, entries: Mapping[str, str]) -> dict[int, str]:
        """Per-record refusals, by the partner's name for the record, as batch indexes."""
        return {
            self.index_of[key]: reason for key, reason in entries.items() if key in self.index_of
        }


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def json_object(body: bytes) -> dict[str, Any]:
    """A response body as a JSON object; {} when it is not one (HTML error pages, empty)."""
    try:
        document = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


def status_outcome(response: HttpResponse, reason: str) -> Retry | Refused:
    """The outcome of a non-2xx status: 408, 429 and 5xx are transient, other 4xx permanent."""
    message = f"HTTP {response.status}: {reason}"[:_REASON_CHARS]
    if response.status in (408, 429) or response.status >= 500:
        return Retry(message, retry_after_seconds(response.headers.get("Retry-After")))
    return Refused(message)


def ordered_groups(
    records: Sequence[OutboundRecord],
    indexes: Iterable[int],
    group_of: Callable[[OutboundRecord], str],
) -> list[dict[str, list[int]]]:
    """Split the records at ``indexes`` (in batch order) into consecutive segments, each a map of
    group -> record indexes, in which every mpid falls into one group only.

    The requests of one segment may then go in any order without a profile's later record
    (a remove) overtaking its earlier one (the add): segments are sent one after another.
    """
    segments: list[dict[str, list[int]]] = []
    groups: dict[str, list[int]] = {}
    group_of_mpid: dict[str, str] = {}
    for index in indexes:
        record = records[index]
        group = group_of(record)
        if group_of_mpid.setdefault(record.mpid, group) != group:
            segments.append(groups)
            groups, group_of_mpid = {}, {record.mpid: group}
        groups.setdefault(group, []).append(index)
    if groups:
        segments.append(groups)
    return segments


def chunks(indexes: Sequence[int], size: int) -> list[tuple[int, ...]]:
    return [tuple(indexes[start : start + size]) for start in range(0, len(indexes), size)]


class HttpAdapter(Adapter[HttpRequest]):
    """An adapter whose steps are HTTP requests; subclasses say what a response means."""

    def __init__(self, context: AdapterContext, timeout_s: float) -> None:
        super().__init__(context)
        self.session = context.session
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    @abstractmethod
    def auth_headers(self) -> dict[str, str]:
        """Headers carrying the secret; added only when sending, so plans hold no secret."""

    @abstractmethod
    def interpret(self, request: HttpRequest, response: HttpResponse) -> Outcome: ...

    async def send(self, step: HttpRequest) -> Outcome:
        headers = {"Content-Type": "application/json", **self.auth_headers()}
        try:
            async with self.session.request(
                step.method, step.url, data=step.body, headers=headers, timeout=self.timeout
            ) as response:
                body = await response.read()
                return self.interpret(step, HttpResponse(response.status, response.headers, body))
        except TimeoutError:
            return Retry(f"timed out after {self.timeout.total}s")
        except aiohttp.ClientError as error:
            # The class name only: aiohttp messages can quote request details.
            return Retry(f"connection error: {type(error).__name__}")
