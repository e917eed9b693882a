"""The worker's fault suite: real broker, 2-4 real worker processes, 8 partitions, fixed seeds.

Each scenario (SIGKILL and restart, join and leave with SIGTERM, a broker outage, oversized and
hostile records) ends in the one checker of ledger.py and prints one summary line:
`faults <scenario>: records=… faults=… rounds=… losses=… duplicates=…`.
Run: `FORWARDER_KAFKA_PORT=… .venv/bin/python -m pytest tests/faults`.
"""
