#!/usr/bin/env bash
# The event streams' figures (SPEC §12): N mitras each hold one stream, spread over two
# public-api instances (A and B); the blasts go to instance A only, so half the offers cross
# instances through the Valkey signal. One run reports:
#
#   1. the time from each blast's 201 to each recipient's `offer` (p50/p90/p99/max, per
#      instance too; `loadgen --sse-blasts`), with `blast_max_recipients` = SSE_RECIPIENTS
#      (default 50, the setting's default), then again on the same streams with
#      SSE_COMPARE_RECIPIENTS (default 10000: every stream gets every offer; empty: no second
#      phase); with the CPU time of each instance and of the generator per blast;
#   2. RSS of both instances after the logins (no stream), once every stream is open, after the
#      blasts, and after the streams closed; the CPU and Postgres statements a stream's opening
#      costs (what a reconnect costs); CPU of each instance over SSE_IDLE_SECONDS (30) with every stream open and
#      nothing happening but the pings, and over as long again once the streams closed;
#   3. the requests the fleet sent over that idle window (`halo_http_requests_total` of both
#      instances), against what polling `GET /api/mitra/chat/requests` every
#      SSE_POLL_SECONDS (2) would send.
#
#   scripts/bench-sse.sh                       # 10,000 streams, 20 blasts per phase
#   SSE_STREAMS=2000 SSE_BLASTS=5 SSE_IDLE_SECONDS=10 scripts/bench-sse.sh
#
# Stores: a fresh database on the Postgres of HALO_TEST_DATABASE_URL (else the test Postgres on
# 127.0.0.1:55433, started as scripts/test.sh does) and a throwaway valkey-server; release
# builds (or HALO_BIN_DIR). Everything on loopback; stops and drops what it started.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
cd "$HALO_REPO_ROOT"

STREAMS="${SSE_STREAMS:-10000}"
BLASTS="${SSE_BLASTS:-20}"
RECIPIENTS="${SSE_RECIPIENTS:-50}"
COMPARE="${SSE_COMPARE_RECIPIENTS-10000}"
IDLE="${SSE_IDLE_SECONDS:-30}"
POLL="${SSE_POLL_SECONDS:-2}"
DIR="$HALO_DATA_DIR/bench-sse"
OTP_CODE=000000
MITRA_PHONE_START=628300000000
CUSTOMER_PHONE_START=628400000000
mkdir -p "$DIR"
rm -f "$DIR"/phase-*.ready

LOADGEN=""
cleanup() {
    if _pid_alive "$LOADGEN"; then kill -TERM "$LOADGEN" 2>/dev/null || true; fi
    stop_services
    stop_valkey "$DIR/valkey" || true
    drop_scratch_database
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# cpu_ms <pid>: user + system CPU time of the process so far, in milliseconds.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$1/stat"; }
# requests <metrics port>: the requests the instance has answered (every route and status but
# the bench's own reads of /metrics).
requests() {
    curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" |
        awk '/^halo_http_requests_total\{/ && !/route="\/metrics"/ {n += $NF} END {printf "%d\n", n}'
}
# pg_queries <metrics port>: the Postgres statements the instance has run (every named query).
pg_queries() {
    curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" |
        awk '/^halo_pg_queries_total\{/ {n += $NF} END {printf "%d\n", n}'
}
# gauge <metrics port> <name>: one unlabelled series of the instance's metrics.
gauge() {
    curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" | awk -v name="$2" '$1 == name {printf "%d\n", $2}'
}
# set_setting <key> <value>: an operator setting, as PATCH /internal/config leaves it (the row,
# then config:invalidate, which every instance answers with a reload).
set_setting() {
    "$PSQL" -X -q -d "$DATABASE_URL" -c "INSERT INTO app_config (key, value) VALUES ('$1', '$2')
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()" >/dev/null
    valkey_call "$VALKEY_PORT" PUBLISH config:invalidate bench >/dev/null
}
# div <a> <b> [<decimals>]: a / b (0 when b is 0).
div() { awk -v a="$1" -v b="$2" -v d="${3:-0}" 'BEGIN {printf "%.*f\n", d, (b ? a / b : 0)}'; }
# sample <array name>: the CPU time of both instances and of the generator, in that order.
sample() {
    local -n into="$1"
    # shellcheck disable=SC2034 # a nameref: the caller's array
    into=("$(cpu_ms "${PIDS[0]}")" "$(cpu_ms "${PIDS[1]}")" "$(cpu_ms "$LOADGEN")")
}

ensure_tools
scratch_database halo_bench_sse
VALKEY_PORT="$(free_port)"
start_valkey "$DIR/valkey" "$VALKEY_PORT"

if [ -n "${HALO_BIN_DIR:-}" ]; then
    BIN="$HALO_BIN_DIR"
else
    log "cargo build --release (public-api, loadgen)"
    cargo build --release --quiet -p public-api -p loadgen
    BIN="$(cargo_target_dir)/release"
fi

bench_service_env
export DATABASE_URL VALKEY_URL="redis://127.0.0.1:$VALKEY_PORT/"
BASES=()
METRICS=()
for name in a b; do
    port="$(free_port)"
    metrics="$(free_port)"
    PUBLIC_PORT="$port" METRICS_PORT="$metrics" \
        "$BIN/public-api" >"$DIR/public-api-$name.log" 2>&1 </dev/null &
    SERVICE_PIDS+=("$!")
    BASES+=("http://127.0.0.1:$port")
    METRICS+=("$metrics")
    wait_http "http://127.0.0.1:$port/readyz" 60 "$!" || die "public-api $name not ready (see $DIR/public-api-$name.log)"
done
PIDS=("${SERVICE_PIDS[@]}")
"$PSQL" -X -q -d "$DATABASE_URL" -c "INSERT INTO mitras (phone, display_name)
    SELECT '+' || ($MITRA_PHONE_START + i), 'bench mitra ' || i FROM generate_series(0, $STREAMS - 1) AS i" >/dev/null
# Nobody heartbeats in this bench: keep every mitra fresh for its whole length.
set_setting stale_after_seconds 3600
set_setting blast_max_recipients "$RECIPIENTS"
sleep 1

PHASES=()
if [ -n "$COMPARE" ]; then
    # The generator waits for the file; the script changes the setting, then writes it.
    PHASES+=(--sse-phase "while [ ! -e '$DIR/phase-2.ready' ]; do sleep 0.1; done")
fi
HOLD=$((IDLE + 8))
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
log "loadgen: $STREAMS streams over A and B, $BLASTS blasts on A per phase (blast_max_recipients $RECIPIENTS${COMPARE:+, then $COMPARE})"
"$BIN/loadgen" --base-url "${BASES[0]}" --sse-base-urls "${BASES[0]},${BASES[1]}" \
    --mitras "$STREAMS" --mitra-phone-start "$MITRA_PHONE_START" \
    --customers "$BLASTS" --customer-phone-start "$CUSTOMER_PHONE_START" \
    --login-concurrency 32 --threads "${SSE_LOADGEN_THREADS:-1}" --sse-blasts "$BLASTS" \
    "${PHASES[@]}" --sse-hold "$HOLD" >"$DIR/result.txt" 2>&1 &
LOADGEN=$!
# wait_for <text>: until loadgen has printed it.
wait_for() {
    until grep -q "$1" "$DIR/result.txt" 2>/dev/null; do
        _pid_alive "$LOADGEN" || { cat "$DIR/result.txt" >&2; die "loadgen exited early"; }
        sleep 0.05
    done
}
wait_for "logged in"
RSS_BEFORE=("$(rss_kib "${PIDS[0]}")" "$(rss_kib "${PIDS[1]}")")
sample CPU_OPEN
PG_OPEN=$(($(pg_queries "${METRICS[0]}") + $(pg_queries "${METRICS[1]}")))
wait_for "streams open over"
sample CPU_P1
PG_OPEN_END=$(($(pg_queries "${METRICS[0]}") + $(pg_queries "${METRICS[1]}")))
RSS_STREAMS=("$(rss_kib "${PIDS[0]}")" "$(rss_kib "${PIDS[1]}")")
wait_for "^sse phase 1:"
sample CPU_P1_END
if [ -n "$COMPARE" ]; then
    wait_for "^phase 2:"
    set_setting blast_max_recipients "$COMPARE"
    sleep 1
    sample CPU_P2
    touch "$DIR/phase-2.ready"
    wait_for "^sse phase 2:"
    sample CPU_P2_END
fi
# Idle: every stream open, nothing sent but the pings (SSE_PING_INTERVAL_MS, 15 s).
wait_for "holding the streams"
sleep 2
sample IDLE_START
REQ_START=("$(requests "${METRICS[0]}")" "$(requests "${METRICS[1]}")")
sleep "$IDLE"
sample IDLE_END
REQ_END=("$(requests "${METRICS[0]}")" "$(requests "${METRICS[1]}")")
OPEN=("$(gauge "${METRICS[0]}" halo_sse_streams_open)" "$(gauge "${METRICS[1]}" halo_sse_streams_open)")
RSS_OPEN=("$(rss_kib "${PIDS[0]}")" "$(rss_kib "${PIDS[1]}")")
wait "$LOADGEN"
# The same services and mitras, the streams closed: what the background loops cost alone.
sleep 2
CLOSED_START=("$(cpu_ms "${PIDS[0]}")" "$(cpu_ms "${PIDS[1]}")")
sleep "$IDLE"
CLOSED_END=("$(cpu_ms "${PIDS[0]}")" "$(cpu_ms "${PIDS[1]}")")
RSS_CLOSED=("$(rss_kib "${PIDS[0]}")" "$(rss_kib "${PIDS[1]}")")

cat "$DIR/result.txt"
{
    echo
    echo "load average at the start: $LOAD_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
    per_blast() { # <start array> <end array> <index>
        local -n from="$1" to="$2"
        echo $(((to[$3] - from[$3]) / BLASTS))
    }
    echo "CPU per blast, phase 1 (blast_max_recipients $RECIPIENTS): A $(per_blast CPU_P1 CPU_P1_END 0) ms, B $(per_blast CPU_P1 CPU_P1_END 1) ms, loadgen $(per_blast CPU_P1 CPU_P1_END 2) ms (cancel and withdrawals included)"
    if [ -n "$COMPARE" ]; then
        echo "CPU per blast, phase 2 (blast_max_recipients $COMPARE): A $(per_blast CPU_P2 CPU_P2_END 0) ms, B $(per_blast CPU_P2 CPU_P2_END 1) ms, loadgen $(per_blast CPU_P2 CPU_P2_END 2) ms (cancel and withdrawals included)"
    fi
    total_open=$((OPEN[0] + OPEN[1]))
    open_cpu=$((CPU_P1[0] - CPU_OPEN[0] + CPU_P1[1] - CPU_OPEN[1]))
    echo "opening $STREAMS streams: $(div $((open_cpu * 1000)) "$STREAMS") µs of service CPU and $(div $((PG_OPEN_END - PG_OPEN)) "$STREAMS" 1) named Postgres statements per stream (loadgen $(div $(((CPU_P1[2] - CPU_OPEN[2]) * 1000)) "$STREAMS") µs)"
    total_req=$((REQ_END[0] - REQ_START[0] + REQ_END[1] - REQ_START[1]))
    for i in 0 1; do
        name=$([ "$i" -eq 0 ] && echo A || echo B)
        per=$(((RSS_OPEN[i] - RSS_BEFORE[i]) * 1024 / (OPEN[i] > 0 ? OPEN[i] : 1)))
        fresh=$(((RSS_STREAMS[i] - RSS_BEFORE[i]) * 1024 / (OPEN[i] > 0 ? OPEN[i] : 1)))
        echo "public-api $name: RSS ${RSS_BEFORE[i]} KiB after the logins, ${RSS_STREAMS[i]} KiB once ${OPEN[i]} streams were open (~$fresh bytes per stream), ${RSS_OPEN[i]} KiB after the blasts (~$per bytes per stream), ${RSS_CLOSED[i]} KiB after they closed"
        echo "public-api $name: CPU over ${IDLE}s idle: $((IDLE_END[i] - IDLE_START[i])) ms with ${OPEN[i]} streams open, $((CLOSED_END[i] - CLOSED_START[i])) ms with none"
    done
    echo "loadgen: CPU over the ${IDLE}s idle window: $((IDLE_END[2] - IDLE_START[2])) ms"
    echo "requests over the ${IDLE}s idle window with $total_open streams open: $total_req (both instances, every route but /metrics) = $(div "$total_req" "$IDLE" 2)/s; pings are not requests ($(div "$total_open" 15)/s at 15 s)"
    echo "polling GET /api/mitra/chat/requests every ${POLL}s instead: $STREAMS mitras / ${POLL}s = $(div "$STREAMS" "$POLL") requests/s"
} | tee -a "$DIR/result.txt"
echo "(figures in $DIR/result.txt)"
