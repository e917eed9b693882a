"""Partners: the catalog of partner kinds, the adapters that build their requests, identity
preparation and secret references. No process of its own: the sink runner (sinks/) drives it."""
