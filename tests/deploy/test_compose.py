"""docker-compose.yml cannot run here (no Docker engine), so its wiring is checked as text."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from forwarder.cli import build_parser

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return document


def test_kafka_image_is_the_release_the_local_broker_pins() -> None:
    pinned = re.search(
        r"<kafka.version>(.+)</kafka.version>", (REPO / "scripts/kafka/pom.xml").read_text()
    )
    assert pinned is not None
    assert compose()["services"]["kafka"]["image"] == f"apache/kafka:{pinned.group(1)}"


def test_every_forwarder_service_runs_an_existing_command_of_a_buildable_image() -> None:
    parser = build_parser()
    services = compose()["services"]
    forwarder_services = [s for s in services.values() if s.get("command", [""])[0] == "forwarder"]
    assert forwarder_services, "the compose file runs the forwarder"
    for service in forwarder_services:
        assert service.get("build") == "." and (REPO / "Dockerfile").exists()
        # argparse exits on an unknown subcommand or option: the command line must parse.
        parser.parse_args(service["command"][1:])


def test_bootstrap_settings_name_the_kafka_services_advertised_listener() -> None:
    services = compose()["services"]
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    listeners = {address.split("://", 1)[1] for address in advertised.split(",")}
    for name, service in services.items():
        bootstrap = service.get("environment", {}).get("FORWARDER_KAFKA_BOOTSTRAP")
        if bootstrap is not None:
            assert set(bootstrap.split(",")) <= listeners, name
            assert "kafka" in service.get("depends_on", {}), name


def test_the_worker_keeps_its_rocksdb_tables_on_a_persistent_volume() -> None:
    document = compose()
    worker = document["services"]["worker"]
    data_dir = worker["environment"]["FORWARDER_DATA_DIR"]
    assert worker["environment"]["FORWARDER_STORE"] == "rocksdb"
    volume, _, mounted = next(v for v in worker["volumes"] if v.endswith(data_dir)).partition(":")
    assert mounted == data_dir and volume in document["volumes"]
    # The API shares the connection settings but keeps no table.
    assert "FORWARDER_STORE" not in document["services"]["api"]["environment"]
