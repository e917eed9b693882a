"""Topic names of the contract (each prefixed by FORWARDER_TOPIC_PREFIX in a deployment)."""

from __future__ import annotations

PROFILE_UPDATES = "profile-updates"
AUDIENCE_MEMBERSHIPS = "audience-memberships"
OUTPUTS = "forwarder-outputs"
CONNECTIONS = "forwarder-connections"
DEAD_LETTERS = "forwarder-dead-letters"
ERASURE_STATUS = "forwarder-erasure-status"
# Internal: sync requests after config changes, co-partitioned with the input topics.
SYNC = "forwarder-sync"


def outbound(output_id: str) -> str:
    """The topic one output's records go to."""
    return f"forward-{output_id}"
