# The image docker-compose.yml builds: the forwarder with its RocksDB store support and its hot
# path compiled with mypyc (core/native.py; gcc and mypy are needed to build it, not to run it).
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
# Installed in place (editable): the compiled modules sit beside their sources.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir -e '.[rocksdb]' 'mypy>=1.11' 'setuptools>=77' \
    && python -m core.native build \
    && pip uninstall -y mypy \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/* build \
    && mkdir -p /var/lib/forwarder && chown nobody /var/lib/forwarder
USER nobody
ENTRYPOINT []
CMD ["forwarder", "worker"]
