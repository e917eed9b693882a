"""The configuration snapshot the forwarding decisions read: outputs and connections."""

from __future__ import annotations

from collections.abc import Iterable

from partners.catalog import Output
from schemas.records import ConnectionConfig


class Routing:
    """Outputs and connections by id, and connections by audience.

    Plain data: the worker's config view fills it from the compacted config topics, the
    forwarding functions read it. Deleted outputs and connections are retired, not forgotten:
    their last version says where removes go and whether they are sent (``on_disconnect``).
    """

    def __init__(self) -> None:
        self.outputs: dict[str, Output] = {}
        self.connections: dict[str, ConnectionConfig] = {}
        self._by_audience: dict[str, dict[str, ConnectionConfig]] = {}
        self._retired_outputs: dict[str, Output] = {}
        self._retired_connections: dict[str, ConnectionConfig] = {}
        # connection_id -> the offset of its latest config record (0 when not read from Kafka):
        # part of its record ids, so that a reactivation's adds differ from the first ones.
        self._epochs: dict[str, int] = {}
        # connection_id -> its resync generation, read per profile by the decisions (the
        # model's property runs interpreted; this is read once per config record).
        self._generations: dict[str, int] = {}

    def put_output(self, output: Output) -> None:
        self._retired_outputs.pop(output.output_id, None)
        self.outputs[output.output_id] = output

    def delete_output(self, output_id: str) -> None:
        previous = self.outputs.pop(output_id, None)
        if previous is not None:
            self._retired_outputs[output_id] = previous

    def put_connection(self, connection: ConnectionConfig, epoch: int = 0) -> None:
        self._epochs[connection.connection_id] = epoch
        self._generations[connection.connection_id] = connection.resync_generation
        self._unlink(connection.connection_id)
        self._retired_connections.pop(connection.connection_id, None)
        self.connections[connection.connection_id] = connection
        self._by_audience.setdefault(connection.audience_id, {})[connection.connection_id] = (
            connection
        )

    def delete_connection(self, connection_id: str) -> None:
        previous = self._unlink(connection_id)
        if previous is not None:
            self._retired_connections[connection_id] = previous

    def _unlink(self, connection_id: str) -> ConnectionConfig | None:
        previous = self.connections.pop(connection_id, None)
        if previous is not None:
            audience = self._by_audience[previous.audience_id]
            del audience[connection_id]
            if not audience:
                del self._by_audience[previous.audience_id]
        return previous

    def connections_for(self, audience_id: str) -> Iterable[ConnectionConfig]:
        return self._by_audience.get(audience_id, {}).values()

    def find_connection(self, connection_id: str) -> ConnectionConfig | None:
        """The live connection, or the last version of a deleted one."""
        return self.connections.get(connection_id) or self._retired_connections.get(connection_id)

    def epoch(self, connection_id: str) -> int:
        """The offset of the connection's latest config record, the same on every worker."""
        return self._epochs.get(connection_id, 0)

    def resync_generation(self, connection_id: str) -> int:
        """The generation of the connection's last resync (0: none)."""
        return self._generations.get(connection_id, 0)

    def find_output(self, output_id: str) -> Output | None:
        """The live output, or the last version of a deleted one."""
        return self.outputs.get(output_id) or self._retired_outputs.get(output_id)

    def is_live(self, connection: ConnectionConfig) -> bool:
        """Active, not deleted, and its output not deleted: records may flow."""
        return (
            connection.status == "active"
            and connection.connection_id in self.connections
            and connection.output_id in self.outputs
        )

    def is_previewed(self, connection: ConnectionConfig) -> bool:
        """In preview, not deleted, and its output not deleted: evaluated, nothing sent."""
        return (
            connection.status == "preview"
            and connection.connection_id in self.connections
            and connection.output_id in self.outputs
        )

    def connections_of_output(self, output_id: str) -> list[ConnectionConfig]:
        every = [*self.connections.values(), *self._retired_connections.values()]
        return [connection for connection in every if connection.output_id == output_id]
