#!/usr/bin/env bash
# `make run` / `make stop`: the local broker, one worker, the API and a jsonl sink, in the
# background, for a newcomer to try. Default settings throughout (ports 6066, 6067, 6068;
# Kafka on FORWARDER_KAFKA_BOOTSTRAP, else 127.0.0.1:9092).
#
#   bash scripts/run.sh up     start them; pids in var/run/pids, logs in var/run/logs/
#   bash scripts/run.sh down   stop them by those pids (the broker stays up: make kafka-down)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
RUN=var/run
PIDS=$RUN/pids
LOGS=$RUN/logs
JSONL=$RUN/jsonl
OUTPUT=local-files
PY=.venv/bin/python
FORWARDER=.venv/bin/forwarder

# Answers 200 within the timeout, else says which process to look at.
wait_for() {
    local name=$1 url=$2 pid=$3
    for _ in $(seq 1 360); do
        kill -0 "$pid" 2>/dev/null || {
            echo "run: the $name stopped; the end of $LOGS/$name.log:" >&2
            tail -n 5 "$LOGS/$name.log" >&2
            echo "run: make stop stops the others" >&2
            exit 1
        }
        "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
            "$url" 2>/dev/null && return 0
        sleep 0.5
    done
    echo "run: the $name did not answer $url in 3 minutes; see $LOGS/$name.log" >&2
    exit 1
}

start() {
    local name=$1
    shift
    nohup "$FORWARDER" "$@" >"$LOGS/$name.log" 2>&1 &
    echo "$name $!" >>"$PIDS"
    STARTED=$!
}

up() {
    if [[ -s $PIDS ]]; then
        echo "run: already running (pids in $PIDS); make stop first" >&2
        exit 1
    fi
    mkdir -p "$LOGS" "$JSONL"
    if [[ ! -s $RUN/api-token ]]; then
        (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$RUN/api-token")
    fi
    FORWARDER_API_TOKEN=$(cat "$RUN/api-token")
    export FORWARDER_API_TOKEN

    start worker worker
    wait_for worker http://127.0.0.1:6066/healthz "$STARTED"
    # The API sums the worker's counters for the stats (and the console's Stats page).
    export FORWARDER_WORKER_METRICS_URLS='["http://127.0.0.1:6066/metrics"]'
    start api api
    wait_for api http://127.0.0.1:6068/readyz "$STARTED"
    # A sink delivers an output that exists: create it through the API, as a user would.
    if ! "$FORWARDER" outputs get "$OUTPUT" >/dev/null 2>&1; then
        echo "+ forwarder outputs create --id $OUTPUT --partner jsonl --identity email" \
            "--setting directory=$REPO/$JSONL"
        "$FORWARDER" outputs create --id "$OUTPUT" --partner jsonl --identity email \
            --setting "directory=$REPO/$JSONL" >/dev/null
    fi
    start sink sink --output "$OUTPUT"
    wait_for sink http://127.0.0.1:6067/healthz "$STARTED"

    cat <<INFO
running (pids in $PIDS, logs in $LOGS/):
  worker  http://127.0.0.1:6066/healthz, /metrics
  console http://127.0.0.1:6068/ (the API's token, for writes: cat $RUN/api-token)
  API     http://127.0.0.1:6068 (token in $RUN/api-token)
  sink    of output $OUTPUT into $JSONL/, http://127.0.0.1:6067/healthz
next: source .venv/bin/activate; export FORWARDER_API_TOKEN=\$(cat $RUN/api-token)
      then the README's "Try it" commands; make stop stops them
INFO
}

down() {
    if [[ ! -s $PIDS ]]; then
        echo "run: nothing to stop ($PIDS is empty)"
        return 0
    fi
    local name pid
    # Last started first: the sink, the API, then the worker.
    tac "$PIDS" | while read -r name pid; do
        # Only a forwarder process: a pid left from an earlier boot may be another's now.
        if ps -p "$pid" -o command= | grep -q forwarder && kill -TERM "$pid" 2>/dev/null; then
            for _ in $(seq 1 60); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.5
            done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
            echo "run: stopped the $name ($pid)"
        fi
    done
    rm -f "$PIDS"
}

case ${1:-} in
up) up ;;
down) down ;;
*)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
