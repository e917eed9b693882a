"""Secrets by reference: output settings name environment variables, never hold the values.

Values are read from the environment when a sink starts and kept here only; every text that
leaves a sink (log line, dead letter, error) goes through ``redact`` first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Annotated

from pydantic import StringConstraints

ENV_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]{0,127}$"
EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME_PATTERN)]

REDACTED = "<redacted>"


class MissingSecretError(LookupError):
    """A named environment variable is unset or empty. The message names it, nothing more."""


class Secrets:
    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    @classmethod
    def from_env(cls, names: Iterable[str], environ: Mapping[str, str] = os.environ) -> Secrets:
        values: dict[str, str] = {}
        for name in names:
            value = environ.get(name, "")
            if not value:
                raise MissingSecretError(f"environment variable {name} is not set")
            values[name] = value
        return cls(values)

    def get(self, name: str) -> str:
        return self._values[name]

    def redact(self, text: str) -> str:
        # Longest first, so that a secret containing another is replaced whole.
        for value in sorted(self._values.values(), key=len, reverse=True):
            text = text.replace(value, REDACTED)
        return text
