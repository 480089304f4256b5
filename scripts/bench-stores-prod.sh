#!/usr/bin/env bash
# The heartbeat and beacon floods on production-shaped stores, each as a ratio to the plain
# standalone server measured in the same run: a Valkey Cluster (3 primaries + 3 replicas) and
# TLS (stunnel in front of the standalone server, a private CA). The machine is shared, so only
# the ratios are comparable between runs.
#
#   scripts/bench-stores-prod.sh        # alone: builds, starts the bench stores (~5 minutes)
#   BENCH_PROD_SECONDS=3 BENCH_PROD_ROUNDS=1 scripts/bench-stores-prod.sh   # smoke (~1 minute)
#
# scripts/bench.sh runs it as its last phase (BENCH_PROD_STORES=0 skips it) and puts the figures
# in docs/PERFORMANCE.md; run alone, it prints them and leaves the report as it is.
#
# Each round runs the variants standalone, cluster, TLS (every second round in reverse order, so
# drift in the machine's load hits them alike). Every variant gets both services freshly started
# on an emptied mirror with that variant's VALKEY_* settings, both services' mirror trusted (else
# the script fails: a variant that fell back to Postgres must not pass as fast), then the same
# two floods as bench.sh's step 1 (same duration, workers and mitras), each checked afterwards to
# have gone through Valkey (no fallbacks, mirror still trusted).
#
# Stores: the bench's Postgres (127.0.0.1:55434, database halo_bench_prod) and standalone Valkey
# (127.0.0.1:56380) under .data/bench, reused when running (bench.sh's) and otherwise started and
# stopped here; the cluster on 127.0.0.1:26381-26386 (bus ports 27381-27386) and stunnel on
# 127.0.0.1:26390, started here. Every variant uses VALKEY_KEY_PREFIX={bench}: (the cluster needs
# the hash tag; the others get it too, so the keys are the same). Services on 127.0.0.1:3100/3101
# (public-api's /metrics on 3102).
# Results: .data/bench/results/prod_*.json; service logs: .data/bench/prod-<variant>.<service>.log.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
cd "$HALO_REPO_ROOT"
# Below the kernel's ephemeral range (32768-60999 here): a fixed port inside it can be held for a
# minute by some client's TIME_WAIT socket, and the server then cannot bind it.
CLUSTER_FIRST_PORT="${BENCH_CLUSTER_PORT:-26381}"
CLUSTER_FIRST_BUS_PORT="${BENCH_CLUSTER_BUS_PORT:-27381}"
TLS_PORT="${BENCH_TLS_PORT:-26390}"
PUBLIC_PORT=3100
INTERNAL_PORT=3101
SECONDS_PER_FLOOD="${BENCH_PROD_SECONDS:-${BENCH_SECONDS:-10}}"
ROUNDS="${BENCH_PROD_ROUNDS:-3}"
FLOOD_MITRAS="${BENCH_FLOOD_MITRAS:-1000}"
FLOOD_CONCURRENCY="${BENCH_CONCURRENCY:-32}"
# How long a freshly started variant may take until both services trust the mirror.
TRUST_SECONDS="${BENCH_PROD_TRUST_SECONDS:-30}"
# Fallbacks to Postgres tolerated in a flood window, as a share of its requests.
MAX_FALLBACK_SHARE=0.01
KEY_PREFIX='{bench}:'
MITRA_PHONE_START=628100000000
OTP_CODE=000000
VALKEY_DIR="$BENCH_DIR/valkey"
CLUSTER_DIR="$BENCH_DIR/cluster"
TLS_DIR="$BENCH_DIR/tls"
PUBLIC_BASE="http://127.0.0.1:$PUBLIC_PORT"
METRICS_PORT=3102 # public-api's admin listener for /metrics, as in bench.sh
PUBLIC_METRICS_BASE="http://127.0.0.1:$METRICS_PORT"
INTERNAL_BASE="http://127.0.0.1:$INTERNAL_PORT"

# The services' environment, as bench.sh sets it (see there for why), on a database of our own.
export DATABASE_URL="postgres://halo@127.0.0.1:$PG_PORT/halo_bench_prod"
export PUBLIC_PORT INTERNAL_PORT METRICS_PORT
bench_service_env
unset PORT VALKEY_URL VALKEY_CLUSTER VALKEY_CA_CERT VALKEY_KEY_PREFIX # PORT would override both ports

OWN_PG=0
OWN_VALKEY=0
# cleanup: stops what this script started, and only that (bench.sh's stores stay up).
cleanup() {
    stop_services
    stop_stunnel "$TLS_DIR"
    stop_valkey_cluster "$CLUSTER_DIR"
    if [ "$OWN_VALKEY" = 1 ]; then stop_valkey "$VALKEY_DIR"; fi
    if [ "$OWN_PG" = 1 ]; then stop_postgres "$BENCH_DIR/pg"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

ensure_tools
ensure_stunnel
mkdir -p "$RESULTS"
rm -f "$RESULTS"/prod_* "$BENCH_DIR"/prod-*.log

if [ -n "${BENCH_BIN:-}" ]; then
    BIN="$BENCH_BIN" # bench.sh built them
else
    log "cargo build --release (public-api, internal-api, loadgen)"
    cargo build --release -p public-api -p internal-api -p loadgen
    BIN="$(cargo_target_dir)/release"
fi
PHASE_STARTED=$SECONDS # the phase's time, after the build
for name in public-api internal-api loadgen; do
    [ -x "$BIN/$name" ] || die "no $BIN/$name (build it with cargo build --release -p $name)"
done

for port in "$PUBLIC_PORT" "$INTERNAL_PORT" "$METRICS_PORT"; do
    _port_free "$port" || die "port $port is taken (a service still running?)"
done
if ! _pg_ready "$PG_PORT"; then OWN_PG=1; fi
start_postgres "$BENCH_DIR/pg" "$PG_PORT"
if ! _pid_alive "$(_pidfile_pid "$VALKEY_DIR/valkey.pid")"; then
    OWN_VALKEY=1
    rm -f "$VALKEY_DIR/dump.rdb"
fi
start_valkey "$VALKEY_DIR" "$VALKEY_PORT"
start_valkey_cluster "$CLUSTER_DIR" "$CLUSTER_FIRST_PORT" "$CLUSTER_FIRST_BUS_PORT"
CLUSTER_URLS="$VALKEY_CLUSTER_URLS"
CLUSTER_PRIMARIES=("$CLUSTER_FIRST_PORT" $((CLUSTER_FIRST_PORT + 1)) $((CLUSTER_FIRST_PORT + 2)))
start_stunnel "$TLS_DIR" "$TLS_PORT" "$VALKEY_PORT"

# The cluster primary that holds the hash tag's slot (every key of the mirror): loadgen reads its
# INFO commandstats, as it reads the standalone server's for the two other variants.
TAG_SLOT="$(valkey_call "$CLUSTER_FIRST_PORT" CLUSTER KEYSLOT "${KEY_PREFIX}x")"
if [ "$TAG_SLOT" -le 5460 ]; then TAG_PRIMARY="${CLUSTER_PRIMARIES[0]}"
elif [ "$TAG_SLOT" -le 10922 ]; then TAG_PRIMARY="${CLUSTER_PRIMARIES[1]}"
else TAG_PRIMARY="${CLUSTER_PRIMARIES[2]}"; fi

PSQL_ADMIN=("$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U halo)
log "fresh database halo_bench_prod with $FLOOD_MITRAS mitras"
"${PSQL_ADMIN[@]}" -d postgres -c 'DROP DATABASE IF EXISTS halo_bench_prod WITH (FORCE)' \
    -c 'CREATE DATABASE halo_bench_prod'
# The services apply the migrations when they start; the mitras go in after that (see below).
MITRAS_INSERTED=0

# variant_env VARIANT: the VALKEY_* settings of a variant into VARIANT_ENV (for env(1)).
variant_env() {
    case "$1" in
        standalone) VARIANT_ENV=(VALKEY_URL="redis://127.0.0.1:$VALKEY_PORT/" VALKEY_CLUSTER=false) ;;
        cluster) VARIANT_ENV=(VALKEY_URL="$CLUSTER_URLS" VALKEY_CLUSTER=true) ;;
        tls) VARIANT_ENV=(VALKEY_URL="rediss://127.0.0.1:$TLS_PORT/" VALKEY_CLUSTER=false
            VALKEY_CA_CERT="$TLS_DIR/ca.pem") ;;
        *) die "unknown variant $1" ;;
    esac
    VARIANT_ENV+=(VALKEY_KEY_PREFIX="$KEY_PREFIX")
}
# stats_url VARIANT: the plain URL of the server that holds the variant's keys (INFO commandstats).
stats_url() {
    case "$1" in
        cluster) echo "redis://127.0.0.1:$TAG_PRIMARY/" ;;
        *) echo "redis://127.0.0.1:$VALKEY_PORT/" ;; # TLS: the server behind stunnel
    esac
}
# empty_mirror VARIANT: FLUSHALL on the variant's server(s), so every variant starts by seeding.
empty_mirror() {
    local port ports=("$VALKEY_PORT")
    if [ "$1" = cluster ]; then ports=("${CLUSTER_PRIMARIES[@]}"); fi
    for port in "${ports[@]}"; do
        [ "$(valkey_call "$port" FLUSHALL)" = OK ] || die "FLUSHALL on 127.0.0.1:$port failed"
    done
}

# service_logs VARIANT: the tail of both services' logs, for a failure message.
service_logs() {
    local name
    for name in public-api internal-api; do
        printf '\n--- %s (%s), last lines:\n' "$name" "$BENCH_DIR/prod-$1.$name.log" >&2
        tail -n 15 "$BENCH_DIR/prod-$1.$name.log" >&2 || true
    done
}

# metrics BASE: a service's /metrics text (loopback, no proxy).
metrics() {
    python3 -c '
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
sys.stdout.write(opener.open(sys.argv[1] + "/metrics", timeout=5).read().decode())' "$1"
}
# mirror_state BASE: the state halo_mirror_state has at 1 (unseeded, trusted, behind, down), or
# "none" when the gauge is missing or /metrics does not answer.
mirror_state() {
    local text state
    text="$(metrics "$1" 2>/dev/null)" || { echo none; return; }
    state="$(sed -n 's/^halo_mirror_state{state="\([a-z]*\)"} 1$/\1/p' <<<"$text" | head -n 1)"
    echo "${state:-none}"
}
# require_trusted VARIANT WHEN: waits (≤ TRUST_SECONDS) until both services trust the mirror;
# fails the bench, with the services' logs, when they do not.
require_trusted() {
    local deadline=$((SECONDS + TRUST_SECONDS)) public internal
    while :; do
        public="$(mirror_state "$PUBLIC_METRICS_BASE")" internal="$(mirror_state "$INTERNAL_BASE")"
        if [ "$public" = trusted ] && [ "$internal" = trusted ]; then return 0; fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            service_logs "$1"
            die "$1 $2: the mirror is not trusted after ${TRUST_SECONDS}s (public-api: $public, internal-api: $internal); no figures for a variant that may run on the Postgres fallback"
        fi
        sleep 0.2
    done
}

# start_variant VARIANT: both services on the variant's Valkey, ready, the mirror trusted.
start_variant() {
    local variant="$1" name i
    variant_env "$variant"
    empty_mirror "$variant"
    log "variant $variant: starting the services with ${VARIANT_ENV[*]}"
    SERVICE_PIDS=()
    for name in public-api internal-api; do
        env -u VALKEY_CA_CERT "${VARIANT_ENV[@]}" "$BIN/$name" >>"$BENCH_DIR/prod-$variant.$name.log" 2>&1 </dev/null &
        SERVICE_PIDS+=("$!")
    done
    local bases=("$PUBLIC_BASE" "$INTERNAL_BASE") names=(public-api internal-api)
    for i in 0 1; do
        wait_http "${bases[$i]}/readyz" 60 "${SERVICE_PIDS[$i]}" || {
            service_logs "$variant"
            die "variant $variant: ${names[$i]} not ready"
        }
    done
    if [ "$MITRAS_INSERTED" = 0 ]; then
        "${PSQL_ADMIN[@]}" -d halo_bench_prod -c "
            INSERT INTO mitras (phone, display_name)
            SELECT '+' || ($MITRA_PHONE_START + g), 'bench mitra ' || g FROM generate_series(0, $FLOOD_MITRAS - 1) g
            ON CONFLICT DO NOTHING" -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements'
        MITRAS_INSERTED=1
    fi
    require_trusted "$variant" "after the start"
}

# cpu_pids VARIANT: "label pid" lines of the processes whose CPU a flood is charged with:
# public-api and what carries the variant's Valkey traffic (every cluster node; stunnel too).
cpu_pids() {
    local lines=("public-api ${SERVICE_PIDS[0]}") node line
    case "$1" in
        cluster) for node in "$CLUSTER_DIR"/node-*; do lines+=("valkey $(_pidfile_pid "$node/valkey.pid")"); done ;;
        *) lines+=("valkey $(_pidfile_pid "$VALKEY_DIR/valkey.pid")") ;;
    esac
    if [ "$1" = tls ]; then lines+=("stunnel $(_pidfile_pid "$TLS_DIR/stunnel.pid")"); fi
    for line in "${lines[@]}"; do
        _pid_alive "${line#* }" || die "variant $1: no live process for '$line'"
        printf '%s\n' "$line"
    done
}

# flood VARIANT ROUTE ROUND: bench.sh's flood of ROUTE, on the running variant, checked before
# (mirror trusted) and after (trusted still, no more than MAX_FALLBACK_SHARE fallbacks).
flood() {
    local variant="$1" route="$2" round="$3" name stat_files=()
    name="prod_${variant}_${route}_r$round"
    require_trusted "$variant" "before the $route flood"
    # CPU counters when the window opens (loadgen's --at-start) and when loadgen is done.
    cpu_pids "$variant" >"$RESULTS/$name.cpu"
    read -r -a stat_files <<<"$(awk '{printf "/proc/%s/stat ", $2}' "$RESULTS/$name.cpu")"
    log "loadgen $name"
    if ! "$BIN/loadgen" --base-url "$PUBLIC_BASE" --metrics-url "$PUBLIC_METRICS_BASE/metrics" --otp-code "$OTP_CODE" --mitra-phone-start "$MITRA_PHONE_START" \
        --pg-url "$DATABASE_URL" --valkey-url "$(stats_url "$variant")" --json "$RESULTS/$name.json" \
        --flood "$route" --mitras "$FLOOD_MITRAS" --customers 0 --concurrency "$FLOOD_CONCURRENCY" \
        --duration "$SECONDS_PER_FLOOD" --warmup 2 --at-start "cat ${stat_files[*]} >'$RESULTS/$name.stat0'" \
        >"$RESULTS/$name.txt"; then
        cat "$RESULTS/$name.txt" >&2
        service_logs "$variant"
        die "loadgen $name failed"
    fi
    cat "${stat_files[@]}" >"$RESULTS/$name.stat1"
    grep -E "^(heartbeat|beacon) " "$RESULTS/$name.txt" >&2 || true
    local verdict
    verdict="$(python3 - "$RESULTS/$name.json" "$route" "$MAX_FALLBACK_SHARE" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
route, limit = sys.argv[2], float(sys.argv[3])
count = run["summary"]["kinds"].get(route, {}).get("count", 0)
service = run["stores"]["service"]
fallbacks = sum(v for k, v in service.items() if k.startswith("halo_valkey_fallbacks_total"))
if count == 0:
    print(f"no {route} completed")
elif fallbacks > limit * count:
    print(f"{int(fallbacks)} fallbacks to Postgres in {count} requests")
PY
)"
    if [ -n "$verdict" ]; then
        service_logs "$variant"
        die "$name: $verdict; the figures would not be the variant's"
    fi
    require_trusted "$variant" "after the $route flood"
}

VARIANTS=(standalone cluster tls)
for round in $(seq 1 "$ROUNDS"); do
    order=("${VARIANTS[@]}")
    if [ $((round % 2)) = 0 ]; then order=(tls cluster standalone); fi
    for variant in "${order[@]}"; do
        start_variant "$variant"
        flood "$variant" heartbeat "$round"
        flood "$variant" beacon "$round"
        stop_services
    done
done

printf '{"seconds": %s, "rounds": %s, "mitras": %s, "concurrency": %s, "key_prefix": "%s", "cluster_ports": "%s-%s", "tag_slot": %s, "tag_primary": %s, "tls_port": %s, "stunnel": "%s", "phase_seconds": %s}\n' \
    "$SECONDS_PER_FLOOD" "$ROUNDS" "$FLOOD_MITRAS" "$FLOOD_CONCURRENCY" "$KEY_PREFIX" \
    "$CLUSTER_FIRST_PORT" $((CLUSTER_FIRST_PORT + 5)) "$TAG_SLOT" "$TAG_PRIMARY" "$TLS_PORT" \
    "$("$STUNNEL_BIN" -version 2>&1 | grep -o 'stunnel [0-9.]*' | head -n 1)" \
    $((SECONDS - PHASE_STARTED)) >"$RESULTS/prod_facts.json"

# The figures: per variant and route, the median over the rounds of each round's ratio to that
# round's standalone run (ratios are taken within a round, never across rounds).
python3 - "$RESULTS" "$(getconf CLK_TCK)" <<'PY'
import json, os, statistics, sys

results, clk_tck = sys.argv[1], int(sys.argv[2])


def cpu_us(name):
    """CPU µs (user + system) each process group spent between the two snapshots of a flood."""
    with open(os.path.join(results, name + ".cpu")) as f:
        labels = [line.split()[0] for line in f if line.strip()]
    ticks = []
    for which in ("stat0", "stat1"):
        with open(os.path.join(results, f"{name}.{which}")) as f:
            # Fields after the command name (which ends with the last ')'): utime, stime are 14, 15.
            ticks.append([int(l.rsplit(")", 1)[1].split()[11]) + int(l.rsplit(")", 1)[1].split()[12])
                          for l in f if l.strip()])
    out = {}
    for label, a, z in zip(labels, *ticks):
        out[label] = out.get(label, 0) + (z - a) * 1e6 / clk_tck
    return out

facts = json.load(open(os.path.join(results, "prod_facts.json")))
summary = {"facts": facts, "variants": {}}
for variant in ("standalone", "cluster", "tls"):
    for route in ("heartbeat", "beacon"):
        runs = []
        for r in range(1, facts["rounds"] + 1):
            run = json.load(open(os.path.join(results, f"prod_{variant}_{route}_r{r}.json")))
            base = json.load(open(os.path.join(results, f"prod_standalone_{route}_r{r}.json")))
            k, b = run["summary"]["kinds"][route], base["summary"]["kinds"][route]
            service = run["stores"]["service"]
            cpu, cpu_base = cpu_us(f"prod_{variant}_{route}_r{r}"), cpu_us(f"prod_standalone_{route}_r{r}")
            per_request = sum(cpu.values()) / max(k["count"], 1)
            per_request_base = sum(cpu_base.values()) / max(b["count"], 1)
            runs.append({
                "cpu_us_per_request": {label: us / max(k["count"], 1) for label, us in cpu.items()},
                "cpu_us_per_request_total": per_request,
                "cpu_ratio": per_request / per_request_base if per_request_base else 0,
                "rps": k["rps"], "p50_us": k["p50_us"], "p99_us": k["p99_us"], "count": k["count"],
                "errors": k["errors"],
                "rps_ratio": k["rps"] / b["rps"] if b["rps"] else 0,
                "p50_ratio": k["p50_us"] / b["p50_us"] if b["p50_us"] else 0,
                "p99_ratio": k["p99_us"] / b["p99_us"] if b["p99_us"] else 0,
                "fallbacks": sum(v for s, v in service.items() if s.startswith("halo_valkey_fallbacks_total")),
                "valkey_round_trips": sum(v for s, v in service.items() if s.startswith("halo_valkey_round_trips_total")),
                "valkey_commands": run["stores"]["valkey_total_calls"],
            })
        summary["variants"].setdefault(variant, {})[route] = {
            "rounds": runs, **{f"median_{key}": statistics.median(x[key] for x in runs) for key in
                               ("rps", "p50_us", "p99_us", "rps_ratio", "p50_ratio", "p99_ratio",
                                "cpu_us_per_request_total", "cpu_ratio")},
            "median_cpu_us_per_request": {label: statistics.median(x["cpu_us_per_request"][label] for x in runs)
                                          for label in runs[0]["cpu_us_per_request"]}}
with open(os.path.join(results, "prod_summary.json"), "w") as f:
    json.dump(summary, f, indent=1)

print(f"\n== production-shaped stores ({facts['rounds']} round(s) of {facts['seconds']} s floods, "
      f"{facts['phase_seconds']} s in all) ==")
print(f"{'variant':<11} {'route':<10} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}   vs standalone (per round)")
for variant, routes in summary["variants"].items():
    for route, s in routes.items():
        per_round = ", ".join(f"×{x['rps_ratio']:.2f}" for x in s["rounds"])
        print(f"{variant:<11} {route:<10} {s['median_rps']:>8.0f} {s['median_p50_us'] / 1000:>7.2f} "
              f"{s['median_p99_us'] / 1000:>7.2f}   req/s ×{s['median_rps_ratio']:.2f} ({per_round}), "
              f"p50 ×{s['median_p50_ratio']:.2f}, p99 ×{s['median_p99_ratio']:.2f}; CPU/request "
              f"{s['median_cpu_us_per_request_total']:.1f} µs ×{s['median_cpu_ratio']:.2f} ("
              + ", ".join(f"{k} {v:.1f}" for k, v in s["median_cpu_us_per_request"].items()) + ")")
PY
