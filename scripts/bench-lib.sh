#!/usr/bin/env bash
# What the bench scripts (bench.sh, bench-stores-prod.sh, bench-otlp.sh, bench-sse.sh) share:
# the bench's stores and the services' common environment and stop. Sourced after scripts/lib.sh,
# which has what the other scripts need too (stores, a scratch database, free ports, the cargo
# target directory).

# shellcheck disable=SC2034 # used by the scripts that source this file
BENCH_DIR="$HALO_DATA_DIR/bench"
# shellcheck disable=SC2034
RESULTS="$BENCH_DIR/results"
# shellcheck disable=SC2034
PG_PORT=55434
# shellcheck disable=SC2034
VALKEY_PORT=56380

# bench_service_env: the environment both services run with in a bench (the caller sets the
# database, Valkey and ports). The load generator logs thousands of mitras in from one address,
# the same ones in every flood: the abuse limits would refuse it, and measured here is the
# service, not the limits. Per-request info logs would be measured too: warn unless told.
bench_service_env() {
    local limit
    export AUTH_JWT_SECRET="halo-bench-only-jwt-secret-do-not-use-in-prod-01"
    export BIND_ADDR=127.0.0.1
    export APP_ENV=development
    export OTP_DEV_CODE="$OTP_CODE"
    export LOG_FORMAT=json
    for limit in OTP_REQUEST_PER_PHONE OTP_REQUEST_PER_ADDRESS OTP_VERIFY_PER_PHONE \
        OTP_VERIFY_PER_ADDRESS OPERATOR_LOGIN_PER_EMAIL OPERATOR_LOGIN_PER_ADDRESS \
        CHAT_REQUEST_PER_CUSTOMER; do
        export "RATE_LIMIT_$limit=1000000/1"
    done
    export RUST_LOG="${BENCH_RUST_LOG:-warn}"
    unset PORT # it would override both ports (see halo-config)
}

SERVICE_PIDS=()
# stop_services: SIGTERM the services in SERVICE_PIDS and wait for them to exit.
stop_services() {
    local pid
    for pid in "${SERVICE_PIDS[@]}"; do
        if _pid_alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for pid in "${SERVICE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    SERVICE_PIDS=()
}
