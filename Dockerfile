# The image docker-compose.yml builds: the forwarder with its RocksDB store support.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY partners partners
COPY core core
COPY streams streams
COPY sinks sinks
COPY control control
COPY forwarder forwarder
RUN pip install --no-cache-dir '.[rocksdb]' && mkdir -p /var/lib/forwarder && chown nobody /var/lib/forwarder
USER nobody
ENTRYPOINT []
CMD ["forwarder", "worker"]
