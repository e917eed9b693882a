"""The errors that stop a forwarder process.

Library code raises them with a one-line message that says what is wrong and what to do; only
the ``forwarder`` command (forwarder/cli.py) turns them into that line on stderr and an exit
code.
"""

from __future__ import annotations


class ForwarderError(Exception):
    """Root of the errors a process cannot go on after."""


class ConfigError(ForwarderError):
    """Something the operator must change (a setting, a topic, an output): a restart alone
    does not help."""


class BrokerUnreachableError(ForwarderError):
    """No broker of FORWARDER_KAFKA_BOOTSTRAP answered within the connect timeout."""
