"""The /metrics page every process serves (worker, sink runner, API)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def exposition() -> tuple[bytes, str]:
    """The Prometheus text exposition of this process's metrics, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
