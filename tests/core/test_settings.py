from __future__ import annotations

import os
import subprocess
import sys

import faust
import pytest

from core.prometheus import exposition
from core.settings import SettingsError, load_settings
from streams.faust_glue import credentials


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORWARDER_KAFKA_BOOTSTRAP", "broker-1:9092,broker-2:9092")
    monkeypatch.setenv("FORWARDER_INPUT_PARTITIONS", "12")
    monkeypatch.setenv("FORWARDER_TOPIC_PREFIX", "prod.")
    settings = load_settings()
    assert settings.input_partitions == 12
    assert settings.topic("profile-updates") == "prod.profile-updates"
    assert settings.kafka_client_options()["bootstrap_servers"] == "broker-1:9092,broker-2:9092"
    assert settings.kafka_connect_timeout_s == 30.0


def test_sasl_options_pass_through_to_the_clients_and_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert credentials(load_settings()) is None
    monkeypatch.setenv("FORWARDER_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("FORWARDER_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("FORWARDER_SASL_USERNAME", "svc")
    monkeypatch.setenv("FORWARDER_SASL_PASSWORD", "hunter2")
    settings = load_settings()
    options = settings.kafka_client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == "hunter2"
    assert options["ssl_context"] is not None
    assert "hunter2" not in repr(settings)
    # The Faust app (the worker) connects with the same credentials.
    faust_credentials = credentials(settings)
    assert isinstance(faust_credentials, faust.SASLCredentials)
    assert (faust_credentials.username, faust_credentials.password) == ("svc", "hunter2")
    assert faust_credentials.mechanism.value == "SCRAM-SHA-512"
    assert faust_credentials.ssl_context is not None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FORWARDER_WEB_PORT", "eighty"),
        ("FORWARDER_INPUT_PARTITIONS", "0"),
        ("FORWARDER_STORE", "postgres"),
        ("FORWARDER_KAFKA_CONNECT_TIMEOUT_S", "-1"),
        ("FORWARDER_SECURITY_PROTOCOL", "SASL_SSL"),
    ],
)
def test_a_bad_setting_stops_start_up_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as stopped:
        load_settings()
    message = str(stopped.value)
    assert "\n" not in message
    expected = "FORWARDER_SECURITY_PROTOCOL" if name.startswith("FORWARDER_SEC") else name
    assert expected in message


def test_the_worker_command_reports_a_bad_setting_and_exits_non_zero() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "forwarder.cli", "worker"],
        env={"FORWARDER_WEB_PORT": "not-a-port", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == os.EX_CONFIG
    assert result.stderr.strip().splitlines() == [
        "forwarder: invalid setting FORWARDER_WEB_PORT: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]


def test_the_metrics_page_is_the_prometheus_text_format() -> None:
    body, content_type = exposition()
    assert content_type.startswith("text/plain; version=") and "charset=utf-8" in content_type
    assert b"# TYPE python_info gauge" in body
