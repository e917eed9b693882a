"""The control plane: an HTTP API (`forwarder api`) and CLI commands over it.

The API writes outputs and connections to the compacted config topics, so Kafka stays the
source of truth and every worker sees each change; it answers reads from its own config view.
"""
