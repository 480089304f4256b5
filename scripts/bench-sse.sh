#!/usr/bin/env bash
# The event streams' figures (SPEC §12): N mitras each hold one stream, spread over two
# public-api instances (A and B); the blasts go to instance A only, so half the offers cross
# instances through the Valkey signal. Reports the time from each blast's 201 to each
# recipient's `offer` (p50/p90/p99/max, `loadgen --sse-blasts`) and the RSS of both instances
# with no stream and with every stream open (per stream = growth / streams on that instance).
#
#   scripts/bench-sse.sh                       # 10,000 streams, 10 blasts
#   SSE_STREAMS=2000 SSE_BLASTS=5 scripts/bench-sse.sh
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
BLASTS="${SSE_BLASTS:-10}"
DIR="$HALO_DATA_DIR/bench-sse"
OTP_CODE=000000
MITRA_PHONE_START=628300000000
CUSTOMER_PHONE_START=628400000000
mkdir -p "$DIR"

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
for name in a b; do
    port="$(free_port)"
    PUBLIC_PORT="$port" METRICS_PORT="$(free_port)" \
        "$BIN/public-api" >"$DIR/public-api-$name.log" 2>&1 </dev/null &
    SERVICE_PIDS+=("$!")
    BASES+=("http://127.0.0.1:$port")
    wait_http "http://127.0.0.1:$port/readyz" 60 "$!" || die "public-api $name not ready (see $DIR/public-api-$name.log)"
done
PIDS=("${SERVICE_PIDS[@]}")
"$PSQL" -X -q -d "$DATABASE_URL" -c "INSERT INTO mitras (phone, display_name)
    SELECT '+' || ($MITRA_PHONE_START + i), 'bench mitra ' || i FROM generate_series(0, $STREAMS - 1) AS i" >/dev/null

log "loadgen: $STREAMS streams over A and B, $BLASTS blasts on A"
"$BIN/loadgen" --base-url "${BASES[0]}" --sse-base-urls "${BASES[0]},${BASES[1]}" \
    --mitras "$STREAMS" --mitra-phone-start "$MITRA_PHONE_START" \
    --customers "$BLASTS" --customer-phone-start "$CUSTOMER_PHONE_START" \
    --login-concurrency 32 --threads "${SSE_LOADGEN_THREADS:-1}" --sse-blasts "$BLASTS" --sse-hold 8 >"$DIR/result.txt" 2>&1 &
LOADGEN=$!
# wait_for <text>: until loadgen has printed it.
wait_for() {
    until grep -q "$1" "$DIR/result.txt" 2>/dev/null; do
        _pid_alive "$LOADGEN" || { cat "$DIR/result.txt" >&2; die "loadgen exited early"; }
        sleep 0.2
    done
}
# RSS after the logins (no stream yet), and while every stream is open (during the hold).
wait_for "logged in"
RSS_BEFORE=("$(rss_kib "${PIDS[0]}")" "$(rss_kib "${PIDS[1]}")")
wait_for "streams open over"
CPU_BEFORE=("$(cpu_ms "${PIDS[0]}")" "$(cpu_ms "${PIDS[1]}")")
wait_for "offer latency from send"
CPU_AFTER=("$(cpu_ms "${PIDS[0]}")" "$(cpu_ms "${PIDS[1]}")")
sleep 3
RSS_OPEN=("$(rss_kib "${PIDS[0]}")" "$(rss_kib "${PIDS[1]}")")
wait "$LOADGEN"
cat "$DIR/result.txt"
for i in 0 1; do
    per=$(((RSS_OPEN[i] - RSS_BEFORE[i]) * 1024 / (STREAMS / 2)))
    cpu=$(((CPU_AFTER[i] - CPU_BEFORE[i]) / BLASTS))
    echo "public-api ${BASES[i]}: RSS ${RSS_BEFORE[i]} KiB idle, ${RSS_OPEN[i]} KiB with $((STREAMS / 2)) streams: ~$per bytes per stream; CPU ~$cpu ms per blast (its cancel and withdrawal included)" |
        tee -a "$DIR/result.txt"
done
echo "(figures in $DIR/result.txt)"
