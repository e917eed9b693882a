"""The ``forwarder`` command: one entry point for the worker, the sink runner and the API."""
