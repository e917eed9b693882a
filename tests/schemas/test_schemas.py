"""The exported JSON Schema files are what producers in other languages validate against."""

from __future__ import annotations

from schemas.export import JSON_DIR, TOPIC_SCHEMAS, render


def test_exported_json_schemas_match_the_models() -> None:
    for topic, model in TOPIC_SCHEMAS.items():
        exported = (JSON_DIR / f"{topic}.schema.json").read_text()
        assert exported == render(model), f"run `make schemas`: {topic} is out of date"
