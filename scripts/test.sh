#!/usr/bin/env bash
# Runs every check CI runs: rustfmt, clippy (warnings are errors) and the whole test suite,
# against a test Postgres on 127.0.0.1:55433 (.data/test/pg, fsync off). Tests start their own
# valkey-server processes (VALKEY_SERVER_BIN). Extra arguments go to `cargo test`.
#
# The test Postgres is reused when already running. At the end it is stopped if this run started
# it, and left alone if it was already up; KEEP_STORES=1 always leaves it running.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$HALO_REPO_ROOT"

TEST_PG_DIR="$HALO_DATA_DIR/test/pg"
TEST_PG_PORT=55433

ensure_tools

STARTED_PG=1
if [ -e "$TEST_PG_DIR" ] && _pg_running "$(readlink -f "$TEST_PG_DIR")"; then STARTED_PG=0; fi

finish() {
    local status=$?
    if [ "${KEEP_STORES:-0}" = "1" ]; then
        log "KEEP_STORES=1: the test postgres stays up on 127.0.0.1:$TEST_PG_PORT"
    elif [ "$STARTED_PG" -eq 1 ]; then
        stop_postgres "$TEST_PG_DIR" || true
    else
        log "the test postgres was already running before this run; leaving it up"
    fi
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_postgres "$TEST_PG_DIR" "$TEST_PG_PORT" --fast
export HALO_TEST_DATABASE_URL="${HALO_TEST_DATABASE_URL:-postgres://halo@127.0.0.1:$TEST_PG_PORT/postgres}"
export VALKEY_SERVER_BIN

SUMMARY=()
step() {
    local name="$1" start end
    shift
    log "$name: $*"
    start="$(date +%s)"
    if ! "$@"; then
        end="$(date +%s)"
        SUMMARY+=("$(printf '%-8s FAILED after %ss' "$name" "$((end - start))")")
        printf '%s\n' "${SUMMARY[@]}" >&2
        die "$name failed"
    fi
    end="$(date +%s)"
    SUMMARY+=("$(printf '%-8s ok in %ss' "$name" "$((end - start))")")
    log "$name: ok in $((end - start))s"
}

# The domain crate stays pure: no async runtime or store driver anywhere in its dependency tree.
domain_is_pure() {
    local impure
    impure="$(cargo tree -p halo-domain -e normal,build --prefix none | grep -E '^(tokio|redis|tokio-postgres|postgres|deadpool|actix)' || true)"
    if [ -n "$impure" ]; then
        printf 'halo-domain depends on:\n%s\n' "$impure" >&2
        return 1
    fi
}

# The repository stands on its own: rules are cited from docs/ (SPEC §n), never from the
# original contract or the seed documents outside it. The one allowed line is V1's opening
# comment (a migration's text is part of its checksum; docs/GLOSSARY.md says how to read it,
# and its line is allowed too).
cites_nothing_outside() {
    local found status=0
    found="$(git grep -n -I -E -e '\bCONTRACT\b' -e '[Cc]ontract( ?\.md)?[[:space:],]*§' \
        -e 'spec/seeds/' -e '000_[0-9a-f]{16}' -- ':!scripts/test.sh')" || status=$?
    if [ "$status" -gt 1 ]; then
        echo "git grep failed (status $status): not a git checkout?" >&2
        return 1
    fi
    # shellcheck disable=SC2016 # the backquotes are text to match
    found="$(grep -v -E '^(migrations/V1__availability_schema\.sql:1:|docs/GLOSSARY\.md:[0-9]+:`migrations/V1__availability_schema\.sql` opens with)' <<<"$found" || true)"
    if [ -n "$found" ]; then
        printf 'cites a document outside the repository (cite docs/SPEC.md instead):\n%s\n' "$found" >&2
        return 1
    fi
}

# Supply chain: crates with an open RustSec advisory stay out of the tree. The advisory
# database cannot be fetched from every machine: `cargo deny` runs where it is installed and
# can, and says so plainly where not; the known-bad crates are checked by name regardless.
known_bad_crates_absent() {
    local bad found=0
    # rsa: RUSTSEC-2023-0071 (Marvin timing attack); came with jsonwebtoken's rust_crypto.
    local known_bad=(rsa)
    for bad in "${known_bad[@]}"; do
        if cargo tree --workspace -e normal,build -i "$bad" >/dev/null 2>&1; then
            printf 'advisory crate in the tree: %s\n' "$bad" >&2
            found=1
        fi
    done
    if command -v cargo-deny >/dev/null 2>&1; then
        cargo deny check advisories || log "cargo deny could not check advisories here (offline advisory database?)"
    else
        log "cargo-deny is not installed: only the known-bad crates were checked"
    fi
    return "$found"
}

step fmt cargo fmt --all -- --check
step purity domain_is_pure
step selfref cites_nothing_outside
step supply known_bad_crates_absent
step hadolint scripts/hadolint.sh
step clippy cargo clippy --workspace --all-targets -- -D warnings
step test cargo test --workspace "$@"
# Both API documents valid, and schemathesis against both services (scripts/api-check.sh).
step api scripts/api-check.sh

printf '\n' >&2
printf '%s\n' "${SUMMARY[@]}" >&2
log "all checks passed"
