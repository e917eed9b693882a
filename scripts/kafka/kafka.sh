#!/usr/bin/env bash
# Local single-node Apache Kafka broker (KRaft, no ZooKeeper, no Docker) for
# development and tests. Needs Java 17+ and Maven (Maven Central) on first run.
#
#   bash scripts/kafka/kafka.sh up            start (or confirm) the broker; returns once it answers metadata
#   bash scripts/kafka/kafka.sh down [--wipe] stop it; --wipe (or FORWARDER_KAFKA_WIPE=1) also deletes its data
#   bash scripts/kafka/kafka.sh status        exit 0 when it is running and answering
#   bash scripts/kafka/kafka.sh logs [-f] [N] last N (100) lines of the broker log, -f to follow
#
# Environment:
#   FORWARDER_KAFKA_PORT             client port on 127.0.0.1 (default 9092)
#   FORWARDER_KAFKA_CONTROLLER_PORT  KRaft controller port (default client port + 1)
#   FORWARDER_KAFKA_BOOTSTRAP        when it names anything but 127.0.0.1:PORT / localhost:PORT, an
#                                    external cluster is used: up/down start and stop nothing. When it
#                                    is 127.0.0.1:N / localhost:N and FORWARDER_KAFKA_PORT is unset,
#                                    N is the port.
#   FORWARDER_KAFKA_WIPE=1           `down` also deletes the data dir
#   FORWARDER_KAFKA_UP_TIMEOUT       seconds `up` waits for the broker (default 90)
#   FORWARDER_KAFKA_HEAP             JVM heap flags (default "-Xms256m -Xmx1g")
#   FORWARDER_KAFKA_PYTHON           python with aiokafka for the readiness probe (else .venv/bin/python,
#                                    python, python3; else a small Java probe, KafkaReady.java)
#
# Everything lives in .cache/kafka/ (git-ignored): libs/ (jars, resolved once, stamped with the
# version), cluster-id, and per port: server-PORT.properties, log4j2-PORT.properties, data-PORT/,
# broker-PORT.pid, broker-PORT.log (log4j2), broker-PORT.out (JVM stdout/stderr).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
POM="$HERE/pom.xml"
CACHE="$REPO/.cache/kafka"
LIBS="$CACHE/libs"

say() { echo "kafka: $*"; }
err() { echo "kafka: $*" >&2; }
die() { err "$@"; exit 1; }

# ---------------------------------------------------------------- settings
BOOTSTRAP_ENV=${FORWARDER_KAFKA_BOOTSTRAP:-}
PORT=${FORWARDER_KAFKA_PORT:-}
if [[ -z $PORT && $BOOTSTRAP_ENV =~ ^(127\.0\.0\.1|localhost):([0-9]+)$ ]]; then
    PORT=${BASH_REMATCH[2]}
fi
PORT=${PORT:-9092}
[[ $PORT =~ ^[0-9]+$ ]] || die "FORWARDER_KAFKA_PORT must be a port number, got '$PORT'"
CPORT=${FORWARDER_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
[[ $CPORT =~ ^[0-9]+$ ]] || die "FORWARDER_KAFKA_CONTROLLER_PORT must be a port number, got '$CPORT'"
[[ $CPORT != "$PORT" ]] || die "the controller port must differ from the client port ($PORT)"
LOCAL="127.0.0.1:$PORT"
EXTERNAL=0
if [[ -n $BOOTSTRAP_ENV && $BOOTSTRAP_ENV != "127.0.0.1:$PORT" && $BOOTSTRAP_ENV != "localhost:$PORT" ]]; then
    EXTERNAL=1
fi
UP_TIMEOUT=${FORWARDER_KAFKA_UP_TIMEOUT:-90}
HEAP=${FORWARDER_KAFKA_HEAP:--Xms256m -Xmx1g}

DATA="$CACHE/data-$PORT"
PIDF="$CACHE/broker-$PORT.pid"
LOGF="$CACHE/broker-$PORT.log"
OUTF="$CACHE/broker-$PORT.out"
PROPS="$CACHE/server-$PORT.properties"
L4J="$CACHE/log4j2-$PORT.properties"
CLUSTER_ID_FILE="$CACHE/cluster-id"
PROBE_ERR="$CACHE/probe-$PORT.err"

kafka_version() { sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1; }

# ---------------------------------------------------------------- jars
libs_stamp() { echo "kafka_2.13 $(kafka_version) pom-sha256 $(sha256sum "$POM" | cut -c1-16)"; }

libs_ok() { [[ -f $LIBS/.stamp && "$(cat "$LIBS/.stamp")" == "$(libs_stamp)" ]]; }

ensure_libs() {
    libs_ok && return 0
    mkdir -p "$CACHE"
    exec 8>"$CACHE/libs.lock"
    flock -w 600 8 || die "timed out waiting for another run resolving the jars (.cache/kafka/libs.lock)"
    if ! libs_ok; then
        command -v mvn >/dev/null || die "mvn (Maven) is needed once to fetch the Kafka jars"
        local ver t0=$SECONDS
        ver=$(kafka_version)
        say "resolving Kafka $ver jars with Maven into .cache/kafka/libs (only when missing or outdated) ..."
        rm -rf "$LIBS"
        # outputDirectory must be absolute: Maven resolves a relative one against the pom's folder.
        if ! (cd "$REPO" && mvn -B -q -f scripts/kafka/pom.xml dependency:copy-dependencies \
            -DoutputDirectory="$LIBS") >"$CACHE/mvn.log" 2>&1; then
            sed 's/\x1b\[[0-9;]*m//g' "$CACHE/mvn.log" | tail -n 40 >&2
            die "Maven could not resolve the Kafka jars (output above, full log .cache/kafka/mvn.log)"
        fi
        [[ -f $LIBS/kafka_2.13-$ver.jar ]] || die "Maven ran but $LIBS/kafka_2.13-$ver.jar is missing"
        libs_stamp >"$LIBS/.stamp"
        say "jars ready ($(ls "$LIBS" | wc -l) files, $((SECONDS - t0)) s)"
    fi
    flock -u 8
    exec 8>&-
}

# ---------------------------------------------------------------- readiness probe
# A metadata request through a real client (a TCP connect is not enough).
PY_PROBE='
import asyncio, sys
from aiokafka.admin import AIOKafkaAdminClient
async def main():
    admin = AIOKafkaAdminClient(bootstrap_servers=sys.argv[1], request_timeout_ms=4000)
    await admin.start()
    try:
        await admin.list_topics()
    finally:
        await admin.close()
asyncio.run(main())
'
PROBE=""
PROBE_PY=""
PROBE_CLASSES="$CACHE/probe-classes"

pick_probe() {
    [[ -n $PROBE ]] && return 0
    local py
    for py in ${FORWARDER_KAFKA_PYTHON:-} "$REPO/.venv/bin/python" python python3; do
        command -v "$py" >/dev/null 2>&1 || continue
        if "$py" -c 'import aiokafka.admin' >/dev/null 2>&1; then
            PROBE=python PROBE_PY=$py
            return 0
        fi
    done
    libs_ok || return 1
    if [[ ! -f $PROBE_CLASSES/KafkaReady.class || $HERE/KafkaReady.java -nt $PROBE_CLASSES/KafkaReady.class
        || $LIBS/.stamp -nt $PROBE_CLASSES/KafkaReady.class ]]; then
        command -v javac >/dev/null || die "no python with aiokafka and no javac to build the Java readiness probe"
        rm -rf "$PROBE_CLASSES" && mkdir -p "$PROBE_CLASSES"
        javac -nowarn -cp "$LIBS/*" -d "$PROBE_CLASSES" "$HERE/KafkaReady.java" \
            || die "could not compile scripts/kafka/KafkaReady.java"
    fi
    PROBE=java
}

# metadata_ok BOOTSTRAP -> 0 when a metadata request succeeds
metadata_ok() {
    pick_probe || return 1
    mkdir -p "$CACHE"
    if [[ $PROBE == python ]]; then
        timeout 20 "$PROBE_PY" -c "$PY_PROBE" "$1" >/dev/null 2>"$PROBE_ERR"
    else
        timeout 20 java -Xmx128m -XX:TieredStopAtLevel=1 -Dlog4j2.level=off \
            -cp "$LIBS/*:$PROBE_CLASSES" KafkaReady "$1" >/dev/null 2>"$PROBE_ERR"
    fi
}

# ---------------------------------------------------------------- processes
is_alive() {   # running and not a zombie
    kill -0 "$1" 2>/dev/null || return 1
    local state
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)
    [[ $state != Z ]]
}

# broker_pid -> prints the pid from the pid file when that process is our broker
broker_pid() {
    [[ -f $PIDF ]] || return 1
    local pid
    pid=$(tr -dc '0-9' <"$PIDF")
    [[ -n $pid ]] && is_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $PROPS" || return 1
    echo "$pid"
}

stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 300; i++)); do
        is_alive "$pid" || return 0
        sleep 0.1
    done
    err "pid $pid still running 30 s after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        is_alive "$pid" || return 0
        sleep 0.1
    done
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

lock_port() {
    mkdir -p "$CACHE"
    exec 9>"$CACHE/broker-$PORT.lock"
    flock -w 180 9 || die "timed out waiting for another kafka.sh on port $PORT (.cache/kafka/broker-$PORT.lock)"
}

# ---------------------------------------------------------------- config
write_config() {
    mkdir -p "$CACHE"
    cat >"$PROPS" <<EOF
# Written by scripts/kafka/kafka.sh on every \`up\`; edit the script, not this file.
# Single-node KRaft: this process is both broker and (sole) controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA

# Topics are created explicitly, never by a produce/fetch to an unknown name.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1

# One broker: internal topics with one replica; few partitions so the first
# consumer group / transaction does not wait for 50 partitions to be created.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
    cat >"$L4J" <<EOF
# Written by scripts/kafka/kafka.sh: broker logs go to a file, not stdout.
status = warn
name = kafka-$PORT
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $LOGF
appender.file.filePattern = $LOGF.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = INFO
EOF
}

java_tool() {   # run a Kafka class with its logs going to the broker log
    java -Xmx256m -Dlog4j2.configurationFile="$L4J" -cp "$LIBS/*" "$@"
}

ensure_formatted() {
    if [[ ! -s $CLUSTER_ID_FILE ]]; then
        java_tool kafka.tools.StorageTool random-uuid >"$CLUSTER_ID_FILE.tmp"
        mv "$CLUSTER_ID_FILE.tmp" "$CLUSTER_ID_FILE"
    fi
    [[ -f $DATA/meta.properties ]] && return 0
    local cid
    cid=$(tr -d '[:space:]' <"$CLUSTER_ID_FILE")
    say "formatting $DATA (KRaft, cluster id $cid)"
    rm -rf "$DATA"
    # Static quorum (controller.quorum.voters) so no --standalone/--initial-controllers is needed.
    java_tool kafka.tools.StorageTool format --cluster-id "$cid" --config "$PROPS" \
        >"$CACHE/format-$PORT.out" 2>&1 || {
        cat "$CACHE/format-$PORT.out" >&2
        die "formatting the storage failed"
    }
}

show_failure() {
    err "---- last 60 lines of $LOGF ----"
    tail -n 60 "$LOGF" >&2 2>/dev/null || true
    if [[ -s $OUTF ]]; then
        err "---- last 20 lines of $OUTF (JVM stdout/stderr) ----"
        tail -n 20 "$OUTF" >&2 || true
    fi
    if [[ -s $PROBE_ERR ]]; then
        err "---- last readiness probe error ----"
        tail -n 5 "$PROBE_ERR" >&2 || true
    fi
}

# wait_ready PID T0 -> returns once metadata works; kills PID and exits non-zero otherwise
wait_ready() {
    local pid=$1 t0=$2
    while :; do
        if ! is_alive "$pid"; then
            err "broker (pid $pid) exited during startup"
            show_failure
            rm -f "$PIDF"
            exit 1
        fi
        if metadata_ok "$LOCAL"; then
            return 0
        fi
        if ((SECONDS - t0 >= UP_TIMEOUT)); then
            err "broker (pid $pid) did not answer a metadata request on $LOCAL within $UP_TIMEOUT s"
            show_failure
            err "stopping pid $pid"
            stop_pid "$pid"
            rm -f "$PIDF"
            exit 1
        fi
        sleep 0.5
    done
}

# ---------------------------------------------------------------- commands
cmd_up() {
    if ((EXTERNAL)); then
        say "FORWARDER_KAFKA_BOOTSTRAP=$BOOTSTRAP_ENV is an external cluster; not starting a local broker"
        return 0
    fi
    local t0=$SECONDS pid
    lock_port
    if pid=$(broker_pid); then
        if metadata_ok "$LOCAL"; then
            say "already up on $LOCAL (pid $pid)"
            return 0
        fi
        say "broker pid $pid is running but not answering yet; waiting up to $UP_TIMEOUT s"
        wait_ready "$pid" "$t0"
        say "up on $LOCAL (pid $pid, $((SECONDS - t0)) s)"
        return 0
    fi
    rm -f "$PIDF"
    local p
    for p in "$PORT" "$CPORT"; do
        if port_in_use "$p"; then
            die "port $p on 127.0.0.1 is already taken by a process this script did not start" \
                "(another broker? set FORWARDER_KAFKA_PORT / FORWARDER_KAFKA_CONTROLLER_PORT, or FORWARDER_KAFKA_BOOTSTRAP to use it)"
        fi
    done
    command -v java >/dev/null || die "java (17+) is needed"
    ensure_libs
    pick_probe || die "no readiness probe available"
    write_config
    ensure_formatted
    say "starting Kafka $(kafka_version) on $LOCAL (controller 127.0.0.1:$CPORT, data .cache/kafka/data-$PORT)"
    echo "==== kafka.sh up $(date -u +%FT%TZ) ====" >>"$LOGF"
    # The broker must not inherit the lock fds (8, 9), or it would hold the lock for its lifetime.
    # shellcheck disable=SC2086 # HEAP is a list of flags
    (
        cd "$CACHE"
        nohup java $HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
            -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
            -Dkafka.logs.dir="$CACHE" -Dlog4j2.configurationFile="$L4J" \
            -cp "$LIBS/*" kafka.Kafka "$PROPS" >"$OUTF" 2>&1 </dev/null 8>&- 9>&- &
        echo $! >"$PIDF"
    )
    pid=$(cat "$PIDF")
    wait_ready "$pid" "$t0"
    say "up on $LOCAL (pid $pid, $((SECONDS - t0)) s); logs: .cache/kafka/broker-$PORT.log"
}

cmd_down() {
    local wipe=${FORWARDER_KAFKA_WIPE:-0} a
    for a in "$@"; do
        case $a in
        --wipe) wipe=1 ;;
        *) die "unknown option for down: $a (only --wipe)" ;;
        esac
    done
    if ((EXTERNAL)); then
        say "FORWARDER_KAFKA_BOOTSTRAP=$BOOTSTRAP_ENV is an external cluster; nothing to stop"
        return 0
    fi
    lock_port
    local pid
    if pid=$(broker_pid); then
        say "stopping broker on $LOCAL (pid $pid)"
        stop_pid "$pid"
        if is_alive "$pid"; then
            die "pid $pid would not stop"
        fi
        say "stopped"
    else
        say "no broker of this script running on $LOCAL"
    fi
    rm -f "$PIDF"
    if [[ $wipe == 1 ]]; then
        rm -rf "$DATA"
        say "wiped .cache/kafka/data-$PORT"
    fi
}

cmd_status() {
    if ((EXTERNAL)); then
        if metadata_ok "$BOOTSTRAP_ENV"; then
            say "external cluster $BOOTSTRAP_ENV answers"
            return 0
        fi
        say "external cluster $BOOTSTRAP_ENV does not answer (or no probe available)"
        return 1
    fi
    local pid
    if ! pid=$(broker_pid); then
        say "down: no broker of this script running on $LOCAL"
        return 1
    fi
    if metadata_ok "$LOCAL"; then
        say "up on $LOCAL (pid $pid)"
        return 0
    fi
    say "pid $pid is running but $LOCAL does not answer metadata requests"
    return 1
}

cmd_logs() {
    local follow=0 n=100 a
    for a in "$@"; do
        case $a in
        -f | --follow) follow=1 ;;
        [0-9]*) n=$a ;;
        *) die "usage: kafka.sh logs [-f] [LINES]" ;;
        esac
    done
    [[ -f $LOGF ]] || die "no log yet: $LOGF"
    if ((follow)); then
        exec tail -n "$n" -F "$LOGF"
    fi
    tail -n "$n" "$LOGF"
}

usage() {
    sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    logs) cmd_logs "$@" ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"
