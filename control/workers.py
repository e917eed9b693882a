"""Questions the API forwards to the workers: explain a profile, page through what a partner
holds, and whether a resync is still running.

The API knows the workers by their metrics URLs (FORWARDER_WORKER_METRICS_URLS); their
operator endpoints are on the same web server. Each question goes to every worker at once:
only the one owning the partition answers 200, the others 421 ("not mine"), and a worker that
is rebalancing 503. Nothing here keeps state between requests.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from control.stats import metric_samples

log = logging.getLogger(__name__)

ASK_TIMEOUT_S = 5.0
RETRY_AFTER_S = 2
# A resync whose progress no worker reports any more (a worker restarted and lost its gauges)
# counts as finished this long after it was requested.
RESYNC_RUNNING_MAX_S = 600.0
# Profiles per page of a members export: the default and the most a request may ask for.
EXPORT_PAGE = 1000
EXPORT_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Answer:
    status: int  # 0: the worker did not answer
    body: dict[str, Any] | None


class NoOwnerError(Exception):
    """No worker answered for the partition: rebalancing, or none reachable. Retry later."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def worker_base_urls(metrics_urls: Sequence[str]) -> list[str]:
    """Each worker's web server, from its metrics URL."""
    return [str(URL(url).with_path("/").with_query(None)).rstrip("/") for url in metrics_urls]


def owner_answer(answers: Sequence[Answer]) -> dict[str, Any]:
    """The owner's answer; NoOwnerError when no worker owns the partition right now."""
    for answer in answers:
        if answer.status == 200 and answer.body is not None:
            return answer.body
    for answer in answers:
        if answer.status not in (0, 421, 503) and answer.body is not None:
            # A question the workers refuse (400, 404): the same for every worker.
            raise WorkerRefusedError(answer.status, str(answer.body.get("detail", "")))
    if any(answer.status == 503 for answer in answers):
        raise NoOwnerError("the worker owning the profile is rebalancing; retry")
    if not answers or all(answer.status == 0 for answer in answers):
        raise NoOwnerError("no worker answered (FORWARDER_WORKER_METRICS_URLS)")
    raise NoOwnerError("no worker owns the partition now (a rebalance may be under way); retry")


class WorkerRefusedError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


async def ask_workers(
    session: aiohttp.ClientSession,
    bases: Sequence[str],
    path: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
) -> list[Answer]:
    asked = (_ask(session, base + path, params, headers) for base in bases)
    return list(await asyncio.gather(*asked))


async def _ask(
    session: aiohttp.ClientSession,
    url: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
) -> Answer:
    try:
        timeout = aiohttp.ClientTimeout(total=ASK_TIMEOUT_S)
        async with session.get(url, params=params, headers=headers, timeout=timeout) as response:
            raw = await response.read()
            body = orjson.loads(raw) if raw else None
            return Answer(response.status, body if isinstance(body, dict) else None)
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
        log.warning("worker at %s did not answer", URL(url).origin())
        return Answer(0, None)


# The export cursor: where the next page starts (a partition, and the last table key read in
# it). Opaque to clients.


def encode_cursor(partition: int, after: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([partition, after])).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[int, str]:
    """(partition, after); ValueError for a cursor this API did not give out."""
    if not cursor:
        return 0, ""
    try:
        partition, after = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        raise ValueError("not a cursor of this API") from None
    if not isinstance(partition, int) or not isinstance(after, str) or partition < 0:
        raise ValueError("not a cursor of this API")
    return partition, after


def resync_running(
    connection_id: str,
    generation: int,
    requested_ms: int,
    now_ms: int,
    partitions: int,
    expositions: Sequence[str],
) -> bool:
    """Whether some partition has not reported the resync ``generation`` finished yet.

    Each worker reports, per partition it finished, the last generation done; the highest
    report per partition counts (the old owner of a moved partition may still report an older
    one). Past RESYNC_RUNNING_MAX_S a missing report is taken as lost with a restarted worker.
    """
    if now_ms - requested_ms > RESYNC_RUNNING_MAX_S * 1000:
        return False
    done: dict[str, float] = {}
    for text in expositions:
        for sample in metric_samples(
            text, "forwarder_resync_generation_done", connection_id=connection_id
        ):
            partition = sample.labels["partition"]
            done[partition] = max(done.get(partition, 0.0), sample.value)
    return any(done.get(str(partition), 0.0) < generation for partition in range(partitions))
