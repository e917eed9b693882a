"""Ad-platform audience API shaped like Meta Custom Audiences.

Adds are ``POST {base_url}/{audience_id}/users`` and removes ``DELETE`` on the same path, with
``{"payload": {"schema": ["EMAIL", "PHONE", "MADID"], "data": [[...], ...]}}``: one row per
profile (more when it has several values of a type), email and phone SHA-256 of the normalized
value, mobile advertising ids lower-cased and not hashed, "" where a row has no value. At most
``batch_limit`` (10,000) rows a request. The token goes in an Authorization header, not in the
URL where access logs would keep it.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import zip_longest

import orjson
from pydantic import Field

from partners.adapters.base import (
    Accepted,
    AdapterContext,
    HttpAdapter,
    HttpRequest,
    HttpResponse,
    Outcome,
    Plan,
    Retry,
    UrlSettings,
    json_object,
    ordered_groups,
    retry_after_seconds,
    status_outcome,
)
from partners.identity import prepare_all
from partners.secrets import EnvName
from schemas.records import IdentityType, OutboundRecord

I = IdentityType

SCHEMA = ("EMAIL", "PHONE", "MADID")
_COLUMN = {I.EMAIL: 0, I.MOBILE_NUMBER: 1, I.IOS_IDFA: 2, I.ANDROID_AAID: 2}
_METHOD = {"add": "POST", "remove": "DELETE"}
# Graph API error codes that mean "later": unknown/temporary (1, 2) and the throttling codes
# (4, 17, 32, 341, 613, 80003), which Meta often sends with HTTP 400 rather than 429.
_TRANSIENT_CODES = frozenset({1, 2, 4, 17, 32, 341, 613, 80003})

Row = tuple[str, str, str]


class AdAudiencesSettings(UrlSettings):
    audience_id: str = Field(pattern=r"^[0-9A-Za-z_-]{1,64}$")
    token_env: EnvName = Field(description="Environment variable holding the access token.")


def rows_of(record: OutboundRecord, hashed: frozenset[IdentityType]) -> tuple[list[Row], str]:
    """The record's rows, or none and why."""
    prepared, problems = prepare_all(record.identities, hashed)
    columns: list[list[str]] = [[], [], []]
    for identity in prepared:
        if identity.type in _COLUMN:
            columns[_COLUMN[identity.type]].append(identity.value)
    rows = [(email, phone, madid) for email, phone, madid in zip_longest(*columns, fillvalue="")]
    reason = "no usable identity" + (f" ({'; '.join(problems)})" if problems else "")
    return rows, reason


class AdAudiencesAdapter(HttpAdapter):
    def __init__(self, settings: AdAudiencesSettings, context: AdapterContext) -> None:
        super().__init__(context, settings.request_timeout_s)
        self.settings = settings
        self.url = settings.endpoint(f"/{settings.audience_id}/users")

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets.get(self.settings.token_env)}"}

    def plan(self, records: Sequence[OutboundRecord]) -> Plan[HttpRequest]:
        rejected: dict[int, str] = {}
        rows: dict[int, list[Row]] = {}
        for index, record in enumerate(records):
            if record.action == "attribute_update":
                continue  # the partner takes no attributes: nothing to send
            rows[index], reason = rows_of(record, self.partner.hashed_identities)
            if not rows[index]:
                rejected[index] = reason
        steps: list[HttpRequest] = []
        sendable = [index for index, record_rows in rows.items() if record_rows]
        for segment in ordered_groups(records, sendable, lambda record: record.action):
            for action in ("add", "remove"):
                steps.extend(self._requests(action, segment.get(action, []), rows))
        return Plan(steps=steps, rejected=rejected)

    def _requests(
        self, action: str, indexes: list[int], rows: dict[int, list[Row]]
    ) -> list[HttpRequest]:
        requests: list[HttpRequest] = []
        batch: list[int] = []
        size = 0
        for index in indexes:
            # A record's rows stay in one request, so that it is accepted or refused whole.
            if batch and size + len(rows[index]) > self.partner.batch_limit:
                requests.append(self._request(action, batch, rows))
                batch, size = [], 0
            batch.append(index)
            size += len(rows[index])
        if batch:
            requests.append(self._request(action, batch, rows))
        return requests

    def _request(self, action: str, indexes: list[int], rows: dict[int, list[Row]]) -> HttpRequest:
        data = [list(row) for index in indexes for row in rows[index]]
        return HttpRequest(
            method=_METHOD[action],
            url=self.url,
            body=orjson.dumps({"payload": {"schema": SCHEMA, "data": data}}),
            items=tuple(indexes),
            index_of={
                value: index for index in indexes for row in rows[index] for value in row if value
            },
        )

    def interpret(self, request: HttpRequest, response: HttpResponse) -> Outcome:
        answer = json_object(response.body)
        if 200 <= response.status < 300:
            # Meta reports refused rows as samples of their (hashed) values with the reason.
            samples = answer.get("invalid_entry_samples")
            if not isinstance(samples, dict):
                return Accepted()
            return Accepted(request.rejected({str(k): str(v) for k, v in samples.items()}))
        error = answer.get("error")
        if not isinstance(error, dict):
            return status_outcome(response, response.text())
        reason = f"{error.get('type', 'error')} code {error.get('code')}: {error.get('message')}"
        if error.get("code") in _TRANSIENT_CODES:
            after_s = retry_after_seconds(response.headers.get("Retry-After"))
            return Retry(f"HTTP {response.status}: {reason}", after_s)
        return status_outcome(response, reason)
