"""Outbound records (as the stream processor writes them) for the sink tests."""

from __future__ import annotations

from typing import Any

import orjson

from schemas.records import OutboundRecord


def outbound_value(
    mpid: str,
    action: str = "add",
    identities: dict[str, str] | None = None,
    attributes: dict[str, Any] | None = None,
    seq: int = 0,
    output_id: str = "out-1",
    partner: str = "webhook",
    audience_id: str = "aud-1",
) -> dict[str, Any]:
    return {
        "record_id": f"{mpid}-{seq}",
        "output_id": output_id,
        "partner": partner,
        "connection_id": "conn-1",
        "audience_id": audience_id,
        "audience_name": "High LTV",
        "mpid": mpid,
        "action": action,
        "identities": [
            {"type": t, "value": v}
            for t, v in (identities or {"email": f"{mpid}@example.com"}).items()
        ],
        "attributes": attributes or {},
        "timestamp_ms": 1764400000000 + seq,
        "source": {"topic": "audience-memberships", "partition": 0, "offset": seq},
    }


def outbound(mpid: str, action: str = "add", *args: Any, **kwargs: Any) -> OutboundRecord:
    value = outbound_value(mpid, action, *args, **kwargs)
    return OutboundRecord.model_validate_json(orjson.dumps(value))
