"""The errors that stop a forwarder process.

Library code raises them with the one line a user sees ("forwarder: ..." or "forwarder sink:
...": what is wrong and what to do); only the ``forwarder`` command (forwarder/cli.py) prints
it and exits with the code of its kind.
"""

from __future__ import annotations


class ForwarderError(Exception):
    """Root of the errors a process cannot go on after."""


class ConfigError(ForwarderError):
    """Something the operator must change (a setting, a topic, an output): a restart alone
    does not help."""


class BrokerUnreachableError(ForwarderError):
    """No broker of FORWARDER_KAFKA_BOOTSTRAP answered within the connect timeout."""


class AckTimeoutError(RuntimeError):
    """Kafka did not acknowledge a batch's sends in time: the batch is not finished."""
