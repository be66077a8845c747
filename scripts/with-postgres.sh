#!/usr/bin/env bash
# Runs a command beside a throwaway PostgreSQL server:
#
#   scripts/with-postgres.sh CMD [ARGS…]
#
# The server comes from the machine's own PostgreSQL binaries (initdb, pg_ctl,
# postgres on the PATH, or /usr/lib/postgresql/*/bin), lives in a temp dir,
# listens on a free loopback port, and is stopped and deleted when CMD ends,
# whatever its outcome. Postgres refuses to run as root: as root the server
# runs as the unprivileged user `payhook-pg`, created here if missing.
#
# CMD sees:
#   PAYHOOK_TEST_POSTGRES   postgres://payhook@127.0.0.1:PORT/postgres
#   PAYHOOK_TEST_PG_STOP    a shell command that stops the server (fast)
#   PAYHOOK_TEST_PG_START   a shell command that starts it again
#   PAYHOOK_TEST_PG_DIR     the server's folder (server.log is there)
# With PAYHOOK_PG_DURABLE=1 the server keeps fsync on (benchmarks);
# otherwise fsync is off (tests: nothing here must survive a power cut).
set -euo pipefail

find_bin() {
    if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return; fi
    local b
    b=$(ls -d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -1)
    if [ -z "$b" ]; then echo "with-postgres: $1 not found (install the PostgreSQL server)" >&2; exit 1; fi
    echo "$b"
}
INITDB=$(find_bin initdb)
PG_CTL=$(find_bin pg_ctl)

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DIR=$(mktemp -d /tmp/payhook-pg.XXXXXX)
chmod 755 "$DIR"

RUN=()
if [ "$(id -u)" = 0 ]; then
    PGUSER_OS=payhook-pg
    if ! id -u "$PGUSER_OS" >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin "$PGUSER_OS"
    fi
    chown "$PGUSER_OS" "$DIR"
    RUN=(runuser -u "$PGUSER_OS" --)
fi

OPTS="-h 127.0.0.1 -p $PORT -k $DIR -c max_connections=500 -c shared_buffers=256MB"
# Extra server settings, e.g. PAYHOOK_PG_OPTS="-c log_min_duration_statement=50"
OPTS="$OPTS ${PAYHOOK_PG_OPTS:-}"
if [ "${PAYHOOK_PG_DURABLE:-0}" != 1 ]; then
    OPTS="$OPTS -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi

cleanup() {
    "${RUN[@]}" "$PG_CTL" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"${RUN[@]}" "$INITDB" -D "$DIR/data" -U payhook --auth=trust -E UTF8 --no-sync >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; exit 1; }
"${RUN[@]}" "$PG_CTL" -D "$DIR/data" -l "$DIR/server.log" -o "$OPTS" -w -t 60 start >/dev/null \
    || { cat "$DIR/server.log" >&2; exit 1; }

q() { printf '%q ' "$@"; }
export PAYHOOK_TEST_POSTGRES="postgres://payhook@127.0.0.1:$PORT/postgres"
export PAYHOOK_TEST_PG_DIR="$DIR"
export PAYHOOK_TEST_PG_STOP="$(q "${RUN[@]}" "$PG_CTL" -D "$DIR/data" -m fast -w stop) >/dev/null"
export PAYHOOK_TEST_PG_START="$(q "${RUN[@]}" "$PG_CTL" -D "$DIR/data" -l "$DIR/server.log" -o "$OPTS" -w -t 60 start) >/dev/null"
echo "with-postgres: PostgreSQL $("${RUN[@]}" "$PG_CTL" --version | awk '{print $3}') on 127.0.0.1:$PORT ($DIR)"

set +e
"$@"
status=$?
set -e
exit $status
