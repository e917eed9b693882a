"""Partners: the catalog of partner kinds, and the delivery side (sink adapters and runner)."""
