"""Prometheus metrics of the control-plane API."""

from __future__ import annotations

from prometheus_client import Counter

REQUESTS = Counter(
    "forwarder_api_requests",
    "API requests answered, per method, route and status code.",
    ["method", "route", "status"],
)
