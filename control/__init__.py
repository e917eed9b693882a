"""The control plane process: the HTTP API over the config topics, its OpenAPI document and the
CLI commands that call it."""
