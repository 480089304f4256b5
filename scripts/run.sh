#!/usr/bin/env bash
# Runs the product locally: Postgres and Valkey under .data/dev, both services built with cargo
# (debug; PROFILE=release for an optimized build), the demo data, and a demo operator.
# Ctrl-C (or SIGTERM) stops the services, then the stores. Every service variable below can be
# overridden from the environment.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$HALO_REPO_ROOT"

DEV_DIR="$HALO_DATA_DIR/dev"
PG_PORT=55432
VALKEY_PORT=56379
PROFILE="${PROFILE:-debug}"

export DATABASE_URL="${DATABASE_URL:-postgres://halo@127.0.0.1:$PG_PORT/halo}"
export VALKEY_URL="${VALKEY_URL:-redis://127.0.0.1:$VALKEY_PORT/}"
# A development-only secret (48 characters); never use it anywhere else.
export AUTH_JWT_SECRET="${AUTH_JWT_SECRET:-halo-dev-only-jwt-secret-do-not-use-in-prod-0001}"
export PUBLIC_PORT="${PUBLIC_PORT:-3000}"
export INTERNAL_PORT="${INTERNAL_PORT:-3001}"
# public-api's /metrics listener (the public port does not serve them).
export METRICS_PORT="${METRICS_PORT:-9464}"
# PORT (set by platforms such as Cloud Run) overrides both ports: not with two services here.
unset PORT
export BIND_ADDR="${BIND_ADDR:-127.0.0.1}"
export APP_ENV="${APP_ENV:-development}"
export OTP_DEV_CODE="${OTP_DEV_CODE:-000000}"
export CC_ORIGIN="${CC_ORIGIN:-http://localhost:5173}"

OPERATOR_EMAIL="operator@halo.local"
OPERATOR_PASSWORD="halo-demo-operator"

PIDS=()
NAMES=()

# Stops one service (SIGKILL after 15 s).
stop_service() {
    local name="$1" pid="$2"
    stop_pid "$name" "$pid" 150
    wait "$pid" 2>/dev/null || true
    rm -f "$DEV_DIR/$name.pid"
}

CLEANED_UP=0
cleanup() {
    [ "$CLEANED_UP" -eq 0 ] || return 0
    CLEANED_UP=1
    local i
    for i in "${!PIDS[@]}"; do
        stop_service "${NAMES[$i]}" "${PIDS[$i]}"
    done
    stop_valkey "$DEV_DIR/valkey"
    stop_postgres "$DEV_DIR/pg"
}
on_signal() {
    echo >&2
    log "stopping"
    cleanup
    exit 0
}
trap cleanup EXIT
trap on_signal INT TERM HUP

# A previous run killed without its cleanup may have left a service behind, holding the port.
stop_stale_service() {
    local name="$1" pid
    pid="$(_pidfile_pid "$DEV_DIR/$name.pid")"
    if _pid_alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
        stop_service "$name" "$pid"
    fi
    rm -f "$DEV_DIR/$name.pid"
}

ensure_tools
mkdir -p "$DEV_DIR"
start_postgres "$DEV_DIR/pg" "$PG_PORT"
start_valkey "$DEV_DIR/valkey" "$VALKEY_PORT"

PSQL_ADMIN=("$PSQL" -X -q -h 127.0.0.1 -p "$PG_PORT" -U halo)
if [ "$("${PSQL_ADMIN[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'halo'")" != "1" ]; then
    log "creating database halo"
    "${PSQL_ADMIN[@]}" -d postgres -c 'CREATE DATABASE halo'
fi

CARGO_ARGS=(build -p public-api -p internal-api)
if [ "$PROFILE" = "release" ]; then CARGO_ARGS+=(--release); fi
log "cargo ${CARGO_ARGS[*]}"
cargo "${CARGO_ARGS[@]}"

BIN_DIR="$(cargo_target_dir)/$PROFILE"

start_service() {
    local name="$1" pid
    stop_stale_service "$name"
    # A session of its own, so a Ctrl-C in the terminal reaches only this script, which then
    # stops the services in order (SIGTERM) instead of racing them.
    if command -v setsid >/dev/null 2>&1; then
        setsid "$BIN_DIR/$name" >>"$DEV_DIR/$name.log" 2>&1 </dev/null &
    else
        "$BIN_DIR/$name" >>"$DEV_DIR/$name.log" 2>&1 </dev/null &
    fi
    pid=$!
    PIDS+=("$pid")
    NAMES+=("$name")
    echo "$pid" >"$DEV_DIR/$name.pid"
    log "started $name (pid $pid, log: $DEV_DIR/$name.log)"
}

start_service public-api
start_service internal-api
PUBLIC_PID="${PIDS[0]}"
INTERNAL_PID="${PIDS[1]}"

PUBLIC_BASE="http://127.0.0.1:$PUBLIC_PORT"
INTERNAL_BASE="http://127.0.0.1:$INTERNAL_PORT"
wait_http "$PUBLIC_BASE/readyz" 60 "$PUBLIC_PID" || {
    tail -n 30 "$DEV_DIR/public-api.log" >&2 || true
    die "public-api is not ready"
}
wait_http "$INTERNAL_BASE/readyz" 60 "$INTERNAL_PID" || {
    tail -n 30 "$DEV_DIR/internal-api.log" >&2 || true
    die "internal-api is not ready"
}

log "loading demo data"
"${PSQL_ADMIN[@]}" -d halo -v ON_ERROR_STOP=1 -f "$HALO_REPO_ROOT/deploy/demo-data.sql"
log "creating the demo operator"
"$BIN_DIR/internal-api" create-operator --email "$OPERATOR_EMAIL" --password "$OPERATOR_PASSWORD"

cat <<EOF

Halo is running.

  public-api    $PUBLIC_BASE
  internal-api  $INTERNAL_BASE
    health      $PUBLIC_BASE/healthz   $INTERNAL_BASE/healthz
    readiness   $PUBLIC_BASE/readyz    $INTERNAL_BASE/readyz
    metrics     http://127.0.0.1:$METRICS_PORT/metrics   $INTERNAL_BASE/metrics

Demo logins
  mitras        +620000000001, +620000000002, +620000000003  (OTP code $OTP_DEV_CODE)
  customer      +620000000100                                (OTP code $OTP_DEV_CODE)
  operator      $OPERATOR_EMAIL / $OPERATOR_PASSWORD

Stores
  postgres      $DATABASE_URL   (log: $DEV_DIR/pg/postgres.log)
  valkey        $VALKEY_URL   (log: $DEV_DIR/valkey/valkey.log)
Logs
  $DEV_DIR/public-api.log
  $DEV_DIR/internal-api.log

Press Ctrl-C to stop everything.
EOF

# Returns when a service exits on its own (a crash), or when a signal runs on_signal.
status=0
wait -n "$PUBLIC_PID" "$INTERNAL_PID" || status=$?
warn "a service exited on its own (status $status); see the logs above"
cleanup
exit 1
