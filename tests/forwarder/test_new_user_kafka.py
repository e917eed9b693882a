"""A new user's first commands: each process started from an empty folder with default settings.

Only FORWARDER_KAFKA_BOOTSTRAP names the test broker. The web ports move to free ones because
the defaults may be taken on a developer's machine (by `make run`); the API gets the token it
refuses to start without. The worker runs on the default topics and consumer group.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.local import BOOTSTRAP, free_port
from tests.conftest import unique

TOKEN = "new-user-token"


def default_env(**settings: str) -> dict[str, str]:
    """The environment without any FORWARDER_* setting but the broker and ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORWARDER_")}
    env["FORWARDER_KAFKA_BOOTSTRAP"] = BOOTSTRAP
    env.update(settings)
    return env


def forwarder(*args: str) -> list[str]:
    return [sys.executable, "-m", "forwarder", *args]


def status(url: str, headers: dict[str, str] | None = None) -> int | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2):
            return 200
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


class Started:
    """A `forwarder` process started in ``folder``, its output in a log file there."""

    def __init__(self, folder: Path, env: dict[str, str], *args: str) -> None:
        self.log = folder / "process.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                forwarder(*args), cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_until(self, url: str, expected: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            if status(url) == expected:
                return
            time.sleep(0.25)
        raise AssertionError(f"{url} did not answer {expected} in {timeout}s:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    started = Started(
        tmp_path_factory.mktemp("api"),
        default_env(FORWARDER_API_PORT=str(port), FORWARDER_API_TOKEN=TOKEN),
        "api",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        started.wait_until(f"{url}/readyz", 200)
        yield url
    finally:
        started.stop()


def call(url: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def test_the_worker_becomes_healthy_and_creates_its_data_dir(tmp_path: Path) -> None:
    port = free_port()
    worker = Started(tmp_path, default_env(FORWARDER_WEB_PORT=str(port)), "worker")
    try:
        worker.wait_until(f"http://127.0.0.1:{port}/healthz", 200)
        assert (tmp_path / "var" / "forwarder").is_dir()
        # The worker created the input topics: a member can be published to try it.
        member = {"mpid": "u-1", "audience_id": unique("aud"), "action": "add", "timestamp_ms": 1}
        sent = subprocess.run(
            forwarder("produce", "audience-memberships"),
            cwd=tmp_path,
            env=default_env(),
            input=json.dumps(member),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (sent.returncode, sent.stdout) == (0, "sent 1 records to audience-memberships\n")
    finally:
        worker.stop()


def test_the_api_answers(api: str) -> None:
    partners = call(f"{api}/partners")
    assert "jsonl" in {partner["name"] for partner in partners}


def test_the_api_without_a_token_says_which_setting_to_set(tmp_path: Path) -> None:
    done = subprocess.run(
        forwarder("api"), cwd=tmp_path, env=default_env(), capture_output=True, text=True
    )
    assert done.returncode == os.EX_CONFIG
    [line] = done.stderr.splitlines()
    assert line.startswith("forwarder: invalid setting FORWARDER_API_TOKEN: ")


def test_a_sink_of_an_output_that_does_not_exist_says_how_to_create_it(tmp_path: Path) -> None:
    output_id = unique("missing")
    done = subprocess.run(
        forwarder("sink", "--output", output_id),
        cwd=tmp_path,
        env=default_env(FORWARDER_SINK_WEB_PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == os.EX_CONFIG, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"forwarder sink: output {output_id} is not on forwarder-outputs")
    assert f"forwarder outputs create --id {output_id}" in last


def test_a_jsonl_sink_runs_once_its_output_exists(api: str, tmp_path: Path) -> None:
    output_id = unique("files")
    output = {
        "output_id": output_id,
        "partner": "jsonl",
        "accepted_identities": ["email"],
        "settings": {"directory": str(tmp_path / "jsonl")},
    }
    call(f"{api}/outputs", "POST", output)
    port = free_port()
    sink = Started(
        tmp_path, default_env(FORWARDER_SINK_WEB_PORT=str(port)), "sink", "--output", output_id
    )
    try:
        sink.wait_until(f"http://127.0.0.1:{port}/healthz", 200)
    finally:
        sink.stop()
        call(f"{api}/outputs/{output_id}", "DELETE")


@pytest.mark.parametrize(
    "command", [["worker"], ["api"], ["sink", "--output", "files"]], ids=lambda c: c[0]
)
def test_without_a_broker_each_command_stops_with_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    closed = f"127.0.0.1:{free_port()}"
    env = default_env(
        FORWARDER_KAFKA_BOOTSTRAP=closed,
        FORWARDER_KAFKA_CONNECT_TIMEOUT_S="1",
        FORWARDER_API_TOKEN=TOKEN,
    )
    done = subprocess.run(
        forwarder(*command), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == os.EX_UNAVAILABLE
    assert "Traceback" not in done.stderr
    *attempts, last = done.stderr.splitlines()
    assert last.startswith(f"forwarder: no Kafka broker answered at {closed} within 1s")
    assert "FORWARDER_KAFKA_BOOTSTRAP" in last
    # Before it, one log line per attempt, and nothing else.
    assert attempts
    assert all(f"Kafka at {closed} did not answer (attempt " in line for line in attempts)
