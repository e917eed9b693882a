"""The shared core of the three processes: settings, errors, Kafka admin look-ups, the routing
snapshot and the config view that fills it, dead letters and the metrics endpoint."""
