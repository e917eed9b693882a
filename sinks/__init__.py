"""The sink runner process: consumes forward-<output> topics and delivers them through the
partner adapters (partners/adapters), committing only what the partner accepted."""
