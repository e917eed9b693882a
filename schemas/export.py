"""Write the JSON Schema of every topic's records to schemas/json/ (``make schemas``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas.records import (
    ConnectionConfig,
    DeadLetter,
    ErasureStatus,
    MembershipEvent,
    OutboundRecord,
    OutputConfig,
    ProfileRecord,
)

JSON_DIR = Path(__file__).parent / "json"

TOPIC_SCHEMAS: dict[str, Any] = {
    "profile-updates": ProfileRecord,
    "audience-memberships": MembershipEvent,
    "forwarder-outputs": OutputConfig,
    "forwarder-connections": ConnectionConfig,
    "forward-output": OutboundRecord,
    "forwarder-dead-letters": DeadLetter,
    "forwarder-erasure-status": ErasureStatus,
}


def render(record_type: Any) -> str:
    schema = TypeAdapter(record_type).json_schema(mode="validation")
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> int:
    JSON_DIR.mkdir(exist_ok=True)
    for topic, model in TOPIC_SCHEMAS.items():
        (JSON_DIR / f"{topic}.schema.json").write_text(render(model))
    print(f"wrote {len(TOPIC_SCHEMAS)} schemas to {JSON_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
