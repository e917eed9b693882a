"""CRM/engagement API shaped like Braze ``POST /users/track``.

Each record becomes one user attributes object: the user's identifier (``external_id`` from the
customer id, else ``email``), a boolean attribute per audience (``<attribute_prefix><audience_id>``,
true on add, false on remove) and, on add and attribute_update, the forwarded attributes. At
most ``batch_limit`` (75) objects a request. The API key goes in an Authorization header.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

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
    chunks,
    json_object,
    ordered_groups,
    status_outcome,
)
from partners.identity import prepare_all
from partners.secrets import EnvName
from schemas.records import IdentityType, OutboundRecord

# Braze's identifiers, by preference: the customer id is the external id.
_IDENTIFIERS = ((IdentityType.CUSTOMER_ID, "external_id"), (IdentityType.EMAIL, "email"))


class EmailCrmSettings(UrlSettings):
    api_key_env: EnvName = Field(description="Environment variable holding the REST API key.")
    attribute_prefix: str = Field("audience_", pattern=r"^[A-Za-z0-9_]{0,64}$")


class EmailCrmAdapter(HttpAdapter):
    def __init__(self, settings: EmailCrmSettings, context: AdapterContext) -> None:
        super().__init__(context, settings.request_timeout_s)
        self.settings = settings
        self.url = settings.endpoint("/users/track")

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets.get(self.settings.api_key_env)}"}

    def user_object(self, record: OutboundRecord) -> dict[str, Any] | str:
        """The attributes object for one record, or why there is none."""
        prepared, problems = prepare_all(record.identities, self.partner.hashed_identities)
        values = {identity.type: identity.value for identity in reversed(prepared)}
        for identity_type, field_name in _IDENTIFIERS:
            if identity_type in values:
                user: dict[str, Any] = {field_name: values[identity_type]}
                break
        else:
            return "no customer_id or email" + (f" ({'; '.join(problems)})" if problems else "")
        if record.action != "remove":
            user.update(record.attributes)
        if record.action != "attribute_update":
            user[self.settings.attribute_prefix + record.audience_id] = record.action == "add"
        return user

    def plan(self, records: Sequence[OutboundRecord]) -> Plan[HttpRequest]:
        users: dict[int, dict[str, Any]] = {}
        rejected: dict[int, str] = {}
        for index, record in enumerate(records):
            user = self.user_object(record)
            if isinstance(user, str):
                rejected[index] = user
            else:
                users[index] = user
        steps: list[HttpRequest] = []
        # Grouping by record id puts each mpid at most once in a segment: Braze does not promise
        # to apply two objects of one user in array order.
        for segment in ordered_groups(records, users, lambda record: record.record_id):
            indexes = [index for group in segment.values() for index in group]
            for items in chunks(indexes, self.partner.batch_limit):
                steps.append(
                    HttpRequest(
                        method="POST",
                        url=self.url,
                        body=orjson.dumps({"attributes": [users[i] for i in items]}),
                        items=items,
                        index_of={str(position): i for position, i in enumerate(items)},
                    )
                )
        return Plan(steps=steps, rejected=rejected)

    def interpret(self, request: HttpRequest, response: HttpResponse) -> Outcome:
        answer = json_object(response.body)
        if 200 <= response.status < 300:
            errors = answer.get("errors")
            if not isinstance(errors, list):
                return Accepted()
            return Accepted(
                request.rejected(
                    {
                        str(error.get("index")): str(error.get("type", "rejected"))
                        for error in errors
                        if isinstance(error, dict) and error.get("input_array") == "attributes"
                    }
                )
            )
        outcome = status_outcome(response, str(answer.get("message") or response.text()))
        if isinstance(outcome, Retry) and outcome.after_s is None:
            # Braze says when its rate-limit window resets rather than sending Retry-After.
            reset = response.headers.get("X-RateLimit-Reset", "")
            if reset.isdigit():
                return Retry(outcome.reason, max(0.0, int(reset) - time.time()))
        return outcome
