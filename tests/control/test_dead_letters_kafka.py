"""`GET /dead-letters` on the real broker: the latest letters over all partitions, newest first,
an output record's settings never shown, records that are no dead letter left out."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from devtools.local import ControlApi, create_topics_async, produce


def letter(topic: str, value: str, kind: str, timestamp_ms: int) -> dict[str, Any]:
    return {
        "source": {"topic": topic, "partition": 0, "offset": timestamp_ms},
        "key": "k",
        "value": value,
        "value_encoding": "text",
        "error": {"kind": kind, "message": "m"},
        "timestamp_ms": timestamp_ms,
    }


def latest(api: ControlApi, query: str = "") -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{api.url}/dead-letters{query}", timeout=10) as response:
        return list(json.loads(response.read()))


def test_the_latest_dead_letters_newest_first_without_secrets(tmp_path: Path, prefix: str) -> None:
    topic = f"{prefix}forwarder-dead-letters"
    asyncio.run(create_topics_async([topic], partitions=3))
    secret = "sk-" + uuid.uuid4().hex
    # As an older release or another producer might have written it: settings in the clear.
    output_record = json.dumps({"output_id": "o", "partner": "x", "settings": {"t": secret}})
    records = [
        (f"k{n}", letter(f"{prefix}profile-updates", f"{{bad {n}", "invalid_json", 1000 + n))
        for n in range(6)
    ]
    records.append(
        ("o", letter(f"{prefix}forwarder-outputs", output_record, "invalid_config", 2000))
    )
    records.append(("junk", b"not a dead letter"))
    produce(topic, records)

    api = ControlApi(prefix=prefix, data_dir=tmp_path, token="t")
    api.start()
    try:
        letters = latest(api)
        assert [x["timestamp_ms"] for x in letters] == [2000, 1005, 1004, 1003, 1002, 1001, 1000]
        assert secret not in json.dumps(letters)
        assert json.loads(letters[0]["value"])["settings"] == "<redacted>"
        assert letters[1]["value"] == "{bad 5" and letters[1]["error"]["kind"] == "invalid_json"
        assert [x["timestamp_ms"] for x in latest(api, "?limit=2")] == [2000, 1005]
    finally:
        api.stop()


def test_no_dead_letter_topic_yet_is_an_empty_list(tmp_path: Path, prefix: str) -> None:
    api = ControlApi(prefix=prefix, data_dir=tmp_path, token="t")
    api.start()
    try:
        assert latest(api) == []
    finally:
        api.stop()
