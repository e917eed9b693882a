"""Write the JSON Schema of every topic's records to schemas/json/ (``make schemas``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.records import (
    ConnectionConfig,
    DeadLetter,
    MembershipEvent,
    OutboundRecord,
    OutputConfig,
    ProfileUpdate,
)

JSON_DIR = Path(__file__).parent / "json"

TOPIC_SCHEMAS: dict[str, type[BaseModel]] = {
    "profile-updates": ProfileUpdate,
    "audience-memberships": MembershipEvent,
    "forwarder-outputs": OutputConfig,
    "forwarder-connections": ConnectionConfig,
    "forward-output": OutboundRecord,
    "forwarder-dead-letters": DeadLetter,
}


def render(model: type[BaseModel]) -> str:
    return json.dumps(model.model_json_schema(mode="validation"), indent=2, sort_keys=True) + "\n"


def main() -> int:
    JSON_DIR.mkdir(exist_ok=True)
    for topic, model in TOPIC_SCHEMAS.items():
        (JSON_DIR / f"{topic}.schema.json").write_text(render(model))
    print(f"wrote {len(TOPIC_SCHEMAS)} schemas to {JSON_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
