#!/usr/bin/env bash
# Make sure the services the integration tests talk to are answering on loopback:
#   PostgreSQL on 127.0.0.1:5432 (the local cluster, trust auth) and Redis on 127.0.0.1:6379.
# Idempotent and quiet: starts only what is not answering, prints one line, exits 0 when both answer.
# Exits non-zero with a message naming the service when one cannot be started.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
WAIT_SECONDS=${ENSURE_SERVICES_WAIT:-30}

postgres_up() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1; }
redis_up() { [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }

# Poll a check function until it succeeds or WAIT_SECONDS pass.
wait_for() {
    local check=$1 deadline=$((SECONDS + WAIT_SECONDS))
    until "$check"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        return 1
    fi
}

started=()
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

for tool in pg_isready redis-cli; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "ensure-services: '$tool' is not installed (need the postgresql and redis-server packages)" >&2
        exit 1
    fi
done

if ! postgres_up; then
    version="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)"
    if [ -z "$version" ] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
        echo "ensure-services: PostgreSQL is not answering on $PG_HOST:$PG_PORT and no local cluster" \
            "is installed (/etc/postgresql is empty)" >&2
        exit 1
    fi
    if ! as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >"$log" 2>&1 \
        && ! postgres_up; then
        cat "$log" >&2
        echo "ensure-services: PostgreSQL $version/main does not answer on $PG_HOST:$PG_PORT and could not be started (see above; starting it needs root or passwordless sudo)" >&2
        exit 1
    fi
    if ! wait_for postgres_up; then
        cat "$log" >&2
        echo "ensure-services: PostgreSQL $version/main started but does not answer on" \
            "$PG_HOST:$PG_PORT after ${WAIT_SECONDS}s" >&2
        exit 1
    fi
    started+=("postgresql")
fi

if ! redis_up; then
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "ensure-services: Redis is not answering on $REDIS_HOST:$REDIS_PORT and redis-server" \
            "is not installed" >&2
        exit 1
    fi
    if ! redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" --save "" --appendonly no \
        >"$log" 2>&1; then
        cat "$log" >&2
        echo "ensure-services: could not start redis-server on $REDIS_HOST:$REDIS_PORT" >&2
        exit 1
    fi
    if ! wait_for redis_up; then
        echo "ensure-services: redis-server started but does not answer on" \
            "$REDIS_HOST:$REDIS_PORT after ${WAIT_SECONDS}s" >&2
        exit 1
    fi
    started+=("redis")
fi

if [ "${#started[@]}" -eq 0 ]; then
    echo "ensure-services: PostgreSQL and Redis already answering"
else
    echo "ensure-services: started ${started[*]}; PostgreSQL and Redis answering"
fi
