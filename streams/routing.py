"""The configuration snapshot the forwarding decisions read: outputs and connections."""

from __future__ import annotations

from collections.abc import Iterable

from partners.catalog import Output
from schemas.records import ConnectionConfig


class Routing:
    """Outputs and connections by id, and connections by audience.

    Plain data: the worker's config view fills it from the compacted config topics, the
    forwarding functions read it.
    """

    def __init__(self) -> None:
        self.outputs: dict[str, Output] = {}
        self.connections: dict[str, ConnectionConfig] = {}
        self._by_audience: dict[str, dict[str, ConnectionConfig]] = {}

    def put_output(self, output: Output) -> None:
        self.outputs[output.output_id] = output

    def delete_output(self, output_id: str) -> None:
        self.outputs.pop(output_id, None)

    def put_connection(self, connection: ConnectionConfig) -> None:
        self.delete_connection(connection.connection_id)
        self.connections[connection.connection_id] = connection
        self._by_audience.setdefault(connection.audience_id, {})[connection.connection_id] = (
            connection
        )

    def delete_connection(self, connection_id: str) -> None:
        previous = self.connections.pop(connection_id, None)
        if previous is not None:
            audience = self._by_audience[previous.audience_id]
            del audience[connection_id]
            if not audience:
                del self._by_audience[previous.audience_id]

    def connections_for(self, audience_id: str) -> Iterable[ConnectionConfig]:
        return self._by_audience.get(audience_id, {}).values()
