#!/usr/bin/env bash
# What OpenTelemetry export costs: the heartbeat flood (bins/loadgen, as scripts/bench.sh runs
# it) against public-api with export off, then on (OTLP/HTTP to a loopback receiver that counts
# and discards), rounds interleaved (and their order alternated) so other work on the machine
# hits both alike. Prints per round the heartbeats/s and public-api's CPU time per request
# (user + system, all its threads, the batch exporter's included, over the measured window),
# then the medians of each mode and their ratios. On a shared machine the CPU per request is
# the steadier of the two.
#
#   scripts/bench-otlp.sh                                   # 3 rounds of 10 s per mode
#   OTLP_BENCH_SECONDS=5 OTLP_BENCH_ROUNDS=2 scripts/bench-otlp.sh
#   OTLP_BENCH_EXTRA_ENV="OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1" \
#       scripts/bench-otlp.sh                               # export on with a sampler
#
# Stores: its own Postgres (127.0.0.1:55435) and Valkey (127.0.0.1:56381) under
# .data/bench-otlp, stopped at the end; public-api on 127.0.0.1:3110 (metrics 3111), the receiver
# on 127.0.0.1:3112. Everything over loopback.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
cd "$HALO_REPO_ROOT"

DIR="$HALO_DATA_DIR/bench-otlp"
PG_PORT=55435
VALKEY_PORT=56381
PUBLIC_PORT=3110
METRICS_PORT=3111
RECEIVER_PORT=3112
SECONDS_PER_FLOOD="${OTLP_BENCH_SECONDS:-10}"
ROUNDS="${OTLP_BENCH_ROUNDS:-3}"
MITRAS=1000
CONCURRENCY=32
MITRA_PHONE_START=628100000000
OTP_CODE=000000

export DATABASE_URL="postgres://halo@127.0.0.1:$PG_PORT/halo_bench_otlp"
export VALKEY_URL="redis://127.0.0.1:$VALKEY_PORT/"
export PUBLIC_PORT METRICS_PORT
# As scripts/bench.sh (RUST_LOG=warn unless BENCH_RUST_LOG): the service's own work, not its
# per-request log lines. Export does not follow RUST_LOG: request spans are exported whatever
# it filters.
bench_service_env
unset OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_ENDPOINT

PUBLIC_PID=""
RECEIVER_PID=""
cleanup() {
    stop_pid public-api "$PUBLIC_PID"
    stop_pid receiver "$RECEIVER_PID"
    stop_valkey "$DIR/valkey"
    stop_postgres "$DIR/pg"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

ensure_tools
mkdir -p "$DIR/results"
log "cargo build --release (public-api, loadgen)"
cargo build --release -p public-api -p loadgen
BIN="$(cargo_target_dir)/release"

start_postgres "$DIR/pg" "$PG_PORT" --fast
start_valkey "$DIR/valkey" "$VALKEY_PORT"
"$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U halo -d postgres \
    -c 'DROP DATABASE IF EXISTS halo_bench_otlp WITH (FORCE)' -c 'CREATE DATABASE halo_bench_otlp'

# The receiver: answers every POST /v1/traces with 200, counts requests and bytes into a file.
python3 - "$RECEIVER_PORT" "$DIR/results/received" <<'PY' &
import http.server, sys
port, out = int(sys.argv[1]), sys.argv[2]
seen = {"requests": 0, "bytes": 0}
class Discard(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        seen["requests"] += 1
        seen["bytes"] += len(body)
        with open(out, "w") as f:
            f.write(f'{seen["requests"]} {seen["bytes"]}\n')
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Discard).serve_forever()
PY
RECEIVER_PID=$!

# cpu_ticks PID: user + system time of a process so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# round MODE N: public-api started with export MODE (off|on), one heartbeat flood, stopped.
round() {
    local mode="$1" n="$2" extra=()
    if [ "$mode" = on ]; then
        extra=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$RECEIVER_PORT")
        # shellcheck disable=SC2206
        extra+=(${OTLP_BENCH_EXTRA_ENV:-})
    fi
    env "${extra[@]}" "$BIN/public-api" >>"$DIR/public-api-$mode.log" 2>&1 </dev/null &
    PUBLIC_PID=$!
    wait_http "http://127.0.0.1:$PUBLIC_PORT/readyz" 60 "$PUBLIC_PID" || die "public-api not ready"
    if [ "$n" = 1 ] && [ "$mode" = off ]; then
        "$PSQL" -X -q -h 127.0.0.1 -p "$PG_PORT" -U halo -d halo_bench_otlp -c "
            INSERT INTO mitras (phone, display_name)
            SELECT '+' || ($MITRA_PHONE_START + g), 'bench mitra ' || g
            FROM generate_series(0, $MITRAS - 1) g ON CONFLICT DO NOTHING"
    fi
    "$BIN/loadgen" --base-url "http://127.0.0.1:$PUBLIC_PORT" \
        --metrics-url "http://127.0.0.1:$METRICS_PORT/metrics" --otp-code "$OTP_CODE" \
        --mitra-phone-start "$MITRA_PHONE_START" --flood heartbeat --mitras "$MITRAS" \
        --customers 0 --concurrency "$CONCURRENCY" --duration "$SECONDS_PER_FLOOD" --warmup 2 \
        --at-start "awk '{print \$14 + \$15}' /proc/$PUBLIC_PID/stat >$DIR/results/$mode-$n.cpu" \
        --json "$DIR/results/$mode-$n.json" >"$DIR/results/$mode-$n.txt"
    cpu_ticks "$PUBLIC_PID" >>"$DIR/results/$mode-$n.cpu"
    kill -TERM "$PUBLIC_PID"
    wait "$PUBLIC_PID" || true
    PUBLIC_PID=""
    python3 - "$DIR/results/$mode-$n" "$(getconf CLK_TCK)" <<'PY'
import json, sys
base, tck = sys.argv[1], int(sys.argv[2])
summary = json.load(open(base + ".json"))["summary"]
start, end = (int(line) for line in open(base + ".cpu"))
us = (end - start) / tck * 1e6 / summary["count"]
json.dump({"rps": summary["kinds"]["heartbeat"]["rps"], "cpu_us": us}, open(base + ".sum", "w"))
print(f"{base.rsplit('/', 1)[1]}: {summary['kinds']['heartbeat']['rps']:.0f} heartbeats/s, {us:.1f} µs CPU each")
PY
}

log "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores (shared machine)"
for n in $(seq 1 "$ROUNDS"); do
    if [ $((n % 2)) = 1 ]; then
        round off "$n"
        round on "$n"
    else
        round on "$n"
        round off "$n"
    fi
done
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$DIR/results" "$ROUNDS" <<'PY'
import json, statistics, sys
dir, rounds = sys.argv[1], int(sys.argv[2])
runs = {m: [json.load(open(f"{dir}/{m}-{n}.sum")) for n in range(1, rounds + 1)] for m in ("off", "on")}
for key, what in (("rps", "heartbeats/s"), ("cpu_us", "µs CPU per request")):
    off = statistics.median(r[key] for r in runs["off"])
    on = statistics.median(r[key] for r in runs["on"])
    within = [round(b[key] / a[key], 3) for a, b in zip(runs["off"], runs["on"])]
    print(f"{what}: off {off:.1f}, on {on:.1f}, on/off {on / off:.3f} (medians); rounds {within}")
PY
printf 'receiver: %s (requests, protobuf bytes)\n' "$(cat "$DIR/results/received" 2>/dev/null || echo '0 0')"
