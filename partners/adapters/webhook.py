"""Webhook: JSON batches POSTed to a URL, with an Authorization header.

Request: ``{"output_id": ..., "records": [OutboundRecord, ...]}`` with the records in topic
order. A 2xx answer accepts the batch; its JSON body may refuse some records one by one with
``{"rejected": [{"record_id": ..., "reason": ...}]}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from pydantic import Field, HttpUrl, field_validator

from partners.adapters.base import (
    Accepted,
    AdapterContext,
    AdapterSettings,
    HttpAdapter,
    HttpRequest,
    HttpResponse,
    Outcome,
    Plan,
    check_base_url,
    chunks,
    json_object,
    status_outcome,
)
from partners.secrets import EnvName
from schemas.records import OutboundRecord


class WebhookSettings(AdapterSettings):
    url: HttpUrl
    token_env: EnvName = Field(description="Environment variable holding the token.")
    auth_scheme: str = Field("Bearer", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,31}$")

    _check_url = field_validator("url")(check_base_url)


class WebhookAdapter(HttpAdapter):
    def __init__(self, settings: WebhookSettings, context: AdapterContext) -> None:
        super().__init__(context, settings.request_timeout_s)
        self.settings = settings

    def auth_headers(self) -> dict[str, str]:
        token = self.secrets.get(self.settings.token_env)
        return {"Authorization": f"{self.settings.auth_scheme} {token}"}

    def plan(self, records: Sequence[OutboundRecord]) -> Plan[HttpRequest]:
        # One request keeps the batch's order, so the receiver sees each mpid's records in order.
        return Plan(
            steps=[
                HttpRequest(
                    method="POST",
                    url=str(self.settings.url),
                    body=orjson.dumps(
                        {
                            "output_id": self.output.output_id,
                            "records": [records[i].model_dump(mode="json") for i in items],
                        }
                    ),
                    items=items,
                    index_of={records[i].record_id: i for i in items},
                )
                for items in chunks(range(len(records)), self.partner.batch_limit)
            ]
        )

    def interpret(self, request: HttpRequest, response: HttpResponse) -> Outcome:
        if not 200 <= response.status < 300:
            return status_outcome(response, response.text())
        rejected = json_object(response.body).get("rejected")
        if not isinstance(rejected, list):
            return Accepted()
        return Accepted(
            request.rejected(
                {
                    str(entry.get("record_id")): str(entry.get("reason", "rejected"))
                    for entry in rejected
                    if isinstance(entry, dict)
                }
            )
        )
