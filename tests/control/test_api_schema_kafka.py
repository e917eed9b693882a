"""The API against its own OpenAPI document: schemathesis finds no server error; a read-only
API refuses writes."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from devtools.local import REPO, ControlApi

TOKEN = "schema-token-" + uuid.uuid4().hex


def test_schemathesis_finds_no_server_error(tmp_path: Path, prefix: str) -> None:
    api = ControlApi(prefix=prefix, data_dir=tmp_path, token=TOKEN)
    api.start()
    try:
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                f"{api.url}/openapi.json",
                "--checks", "not_a_server_error",
                "--max-examples", "25",
                "--header", f"Authorization: Bearer {TOKEN}",
                "--workers", "1",
                "--seed", "20261129",
                "--no-color",
                # Without workers (none here) these answer 503 to retry, by design; they are
                # tested with workers in test_operator_kafka.py.
                "--exclude-operation-id-regex", "^(explainProfile|exportMembers)$",
            ],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        api.stop()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:] + api.log_tail()
    assert "No issues found" in done.stdout


def test_a_read_only_api_refuses_every_write(tmp_path: Path, prefix: str) -> None:
    api = ControlApi(
        prefix=prefix,
        data_dir=tmp_path,
        token="",
        extra_env={"FORWARDER_API_WRITES_ENABLED": "false"},
    )
    api.start()
    try:
        with urllib.request.urlopen(f"{api.url}/outputs", timeout=5) as response:
            assert response.status == 200
        request = urllib.request.Request(
            f"{api.url}/outputs", method="POST", data=b"{}", headers={"Authorization": "Bearer x"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 403
    finally:
        api.stop()
