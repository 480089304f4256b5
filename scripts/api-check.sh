#!/usr/bin/env bash
# Checks both API documents against the running product: `GET /openapi.json` of public-api and
# internal-api must be valid OpenAPI (openapi-spec-validator), and schemathesis (every phase,
# positive and negative data, every check) must find no server error, no schema error and no
# answer that the document does not describe — with each role's token, and with the token of a
# wrong role, which must be refused with 401/403.
#
# Installs what it needs into a venv under .data/tools (Debian: python3-venv when missing),
# builds both services (debug, or takes them from HALO_BIN_DIR), and runs them against a fresh
# database on the Postgres named by HALO_TEST_DATABASE_URL (scripts/test.sh exports it; without
# it the test Postgres on 127.0.0.1:55433 is started as scripts/test.sh does, and stopped
# again) and a throwaway valkey-server on a free port. Stops and drops everything it started.
# API_CHECK_EXAMPLES (default 15) bounds the generated cases per operation and phase.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$HALO_REPO_ROOT"

CHECK_DIR="$HALO_DATA_DIR/api-check"
VENV="$HALO_DATA_DIR/tools/api-check-venv"
CONFIG_DIR="$HALO_REPO_ROOT/scripts/api-check"
# Pinned, so a new release cannot turn the check red on its own.
PY_PACKAGES=(schemathesis==4.32.5 openapi-spec-validator==0.9.0)
EXAMPLES="${API_CHECK_EXAMPLES:-15}"

SECRET="api-check-secret-api-check-secret-0001"
OPERATOR_EMAIL="ops@api-check.test"
OPERATOR_PASSWORD="api-check operator password"
MITRA_PHONE="+620000000901"
CUSTOMER_PHONE="+620000000902"
DEV_CODE="000000"

# ---- tools ---------------------------------------------------------------------------------

ensure_python_tools() {
    local stamp="$VENV/.halo-packages"
    if [ -x "$VENV/bin/schemathesis" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${PY_PACKAGES[*]}" ]; then
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || _apt_install python3 python3-venv python3-pip
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        _apt_install python3-venv
    fi
    log "installing ${PY_PACKAGES[*]} into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
    printf '%s' "${PY_PACKAGES[*]}" >"$stamp"
}

# ---- what this run started, stopped in reverse on exit ---------------------------------------

SERVICE_PIDS=()

cleanup() {
    local status=$? pid
    for pid in "${SERVICE_PIDS[@]}"; do
        if _pid_alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    stop_valkey "$CHECK_DIR/valkey" || true
    drop_scratch_database
    if [ "$status" -ne 0 ]; then warn "api check failed; service logs in $CHECK_DIR"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_tools
ensure_python_tools
mkdir -p "$CHECK_DIR"
rm -f "$CHECK_DIR"/*.log

# ---- stores --------------------------------------------------------------------------------

scratch_database halo_api_check

VALKEY_PORT="$(free_port)"
start_valkey "$CHECK_DIR/valkey" "$VALKEY_PORT"

# ---- services ------------------------------------------------------------------------------

if [ -n "${HALO_BIN_DIR:-}" ]; then
    BIN_DIR="$HALO_BIN_DIR"
else
    log "cargo build -p public-api -p internal-api"
    cargo build --quiet -p public-api -p internal-api
    BIN_DIR="$(cargo_target_dir)/debug"
fi

PUBLIC_PORT="$(free_port)"
INTERNAL_PORT="$(free_port)"
METRICS_PORT="$(free_port)"
SERVICE_ENV=(
    DATABASE_URL="$DATABASE_URL"
    VALKEY_URL="redis://127.0.0.1:$VALKEY_PORT/"
    AUTH_JWT_SECRET="$SECRET"
    APP_ENV=test
    OTP_DEV_CODE="$DEV_CODE"
    BIND_ADDR=127.0.0.1
    PUBLIC_PORT="$PUBLIC_PORT"
    INTERNAL_PORT="$INTERNAL_PORT"
    METRICS_PORT="$METRICS_PORT"
    LOG_FORMAT=json
    RUST_LOG=info
    # Thousands of generated calls from one address and one account: no limit may answer
    # first (429 is documented, and its own tests prove it).
    RATE_LIMIT_OTP_REQUEST_PER_PHONE=1000000/1
    RATE_LIMIT_OTP_REQUEST_PER_ADDRESS=1000000/1
    RATE_LIMIT_OTP_VERIFY_PER_PHONE=1000000/1
    RATE_LIMIT_OTP_VERIFY_PER_ADDRESS=1000000/1
    RATE_LIMIT_OPERATOR_LOGIN_PER_EMAIL=1000000/1
    RATE_LIMIT_OPERATOR_LOGIN_PER_ADDRESS=1000000/1
    RATE_LIMIT_CHAT_REQUEST_PER_CUSTOMER=1000000/1
)

start_service() {
    local name="$1"
    env -i PATH="$PATH" "${SERVICE_ENV[@]}" "$BIN_DIR/$name" >"$CHECK_DIR/$name.log" 2>&1 </dev/null &
    SERVICE_PIDS+=("$!")
}
start_service public-api
start_service internal-api
PUB="http://127.0.0.1:$PUBLIC_PORT"
INT="http://127.0.0.1:$INTERNAL_PORT"
wait_http "$PUB/readyz" 60 "${SERVICE_PIDS[0]}" || die "public-api is not ready (log: $CHECK_DIR/public-api.log)"
wait_http "$INT/readyz" 60 "${SERVICE_PIDS[1]}" || die "internal-api is not ready (log: $CHECK_DIR/internal-api.log)"

# ---- accounts and tokens (README's curl walk-through) --------------------------------------

env -i PATH="$PATH" "${SERVICE_ENV[@]}" "$BIN_DIR/internal-api" create-operator \
    --email "$OPERATOR_EMAIL" --password "$OPERATOR_PASSWORD" >/dev/null
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
post() { curl -sSf -X POST "$1" -H 'Content-Type: application/json' "${@:2}"; }

OPERATOR_TOKEN="$(post "$INT/internal/auth/login" \
    -d "{\"email\":\"$OPERATOR_EMAIL\",\"password\":\"$OPERATOR_PASSWORD\"}" | field '["access_token"]')"
post "$INT/internal/mitras" -H "Authorization: Bearer $OPERATOR_TOKEN" \
    -d "{\"phone\":\"$MITRA_PHONE\",\"display_name\":\"API Check Mitra\"}" >/dev/null
otp_login() {
    post "$PUB/api/$1/auth/otp/request" -d "{\"phone\":\"$2\"}" >/dev/null
    post "$PUB/api/$1/auth/otp/verify" -d "{\"phone\":\"$2\",\"code\":\"$DEV_CODE\"}" | field '["access_token"]'
}
MITRA_TOKEN="$(otp_login mitra "$MITRA_PHONE")"
CUSTOMER_TOKEN="$(otp_login client "$CUSTOMER_PHONE")"
# An online mitra, so chat requests reach someone.
post "$PUB/api/mitra/status/online" -H "Authorization: Bearer $MITRA_TOKEN" >/dev/null

# ---- the documents -------------------------------------------------------------------------

for service in public internal; do
    base="$PUB"
    if [ "$service" = internal ]; then base="$INT"; fi
    curl -sSf "$base/openapi.json" -o "$CHECK_DIR/$service-openapi.json"
    log "openapi-spec-validator: $service-api"
    "$VENV/bin/openapi-spec-validator" "$CHECK_DIR/$service-openapi.json"
done

# ---- schemathesis --------------------------------------------------------------------------

export HALO_CUSTOMER_TOKEN="$CUSTOMER_TOKEN" HALO_MITRA_TOKEN="$MITRA_TOKEN" HALO_OPERATOR_TOKEN="$OPERATOR_TOKEN"
# The wrong-role runs load the hook that checks every secured operation refused the token.
export PYTHONPATH="$CONFIG_DIR${PYTHONPATH:+:$PYTHONPATH}"

# schemathesis_run <name> <config> <base-url> [extra args]: one run over a whole document.
schemathesis_run() {
    local name="$1" config="$2" base="$3"
    shift 3
    log "schemathesis: $name ($base/openapi.json, $config)"
    # From the check's directory: whatever the tools leave behind stays under .data.
    (cd "$CHECK_DIR" && "$VENV/bin/schemathesis" --no-color --config-file "$CONFIG_DIR/$config" \
        run "$base/openapi.json" --max-examples "$EXAMPLES" --seed 1 \
        --report junit --report-dir "$CHECK_DIR/reports/$name" "$@")
}

# The event streams (`/api/{mitra,client}/events`) answer a body that never ends by design, and
# schemathesis reads a whole body: the runs where a stream would open leave them out (their
# refusals are checked by the public-as-operator run below, and by the acceptance suite, which
# also reads the streams: tests/acceptance/tests/checklist/s_streams.rs).
STREAMS=(--exclude-path-regex '/events$')
# Each role on its own routes: all phases, all checks.
schemathesis_run public public.toml "$PUB" "${STREAMS[@]}"
schemathesis_run internal internal.toml "$INT"
# Wrong roles: every role-bound operation must refuse the token (hook `wrong_role_refused`).
wrong_role() {
    SCHEMATHESIS_HOOKS=wrong_role HALO_WRONG_TOKEN="$2" schemathesis_run "$1" wrong-role.toml "${@:3}"
}
wrong_role public-as-operator "$OPERATOR_TOKEN" "$PUB"
wrong_role public-as-mitra "$MITRA_TOKEN" "$PUB" "${STREAMS[@]}"
wrong_role internal-as-customer "$CUSTOMER_TOKEN" "$INT"
wrong_role internal-as-mitra "$MITRA_TOKEN" "$INT"
# The hook must be able to fail: an operator's token claimed to be a customer's is not refused
# on the operator's routes.
if HALO_CLAIMED_ROLE=customer wrong_role control "$OPERATOR_TOKEN" "$INT" >"$CHECK_DIR/control.log" 2>&1; then
    die "control run passed: the wrong_role_refused hook is not in effect"
fi
grep -q "expected 401 or 403" "$CHECK_DIR/control.log" ||
    die "control run failed for another reason than the hook (see $CHECK_DIR/control.log)"
log "control run: the wrong_role_refused hook fails when a token is not refused"

# Whatever the runs did, the services must still be up: a crash is a failure too.
for pid in "${SERVICE_PIDS[@]}"; do
    _pid_alive "$pid" || die "a service exited during the check (logs in $CHECK_DIR)"
done
log "api check passed"
