#!/usr/bin/env bash
# Mutation testing: cargo-mutants breaks the code one small change at a time (a `<` made `<=`,
# a body replaced by a default) and checks that some unit test fails. Fails when a mutant is
# missed, i.e. no test noticed it.
#
#   scripts/mutants.sh                      # halo-domain
#   scripts/mutants.sh halo-domain halo-core   # halo-core: see files_of below
#   MUTANTS_JOBS=1 scripts/mutants.sh       # parallel copies (default 2)
#
# Settings and exclusions: .cargo/mutants.toml (tests are `cargo test --lib`, so no store is
# needed). Results: .data/mutants/mutants.out/ (missed.txt, caught.txt, timeout.txt, log/).
# Not part of scripts/test.sh: halo-domain (174 mutants) takes about 8 minutes here with 2 jobs
# (7 to 8.5 measured on the 2 shared cores), 1.5 to 2 of them the first build of each copy;
# installing cargo-mutants once takes about 5 minutes more.
#
# A mutant that hangs the tests (TIMEOUT) changed behaviour they observe: it counts as caught
# and is listed, not failed. The verdict reads missed.txt, since cargo-mutants' exit code 3
# (timeouts) hides its exit code 2 (missed).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$HALO_REPO_ROOT"

CARGO_MUTANTS_VERSION="27.1.0"
MUTANTS_OUT="$HALO_DATA_DIR/mutants"

# Uses the cargo-mutants on PATH, else installs the pinned version from crates.io.
ensure_cargo_mutants() {
    if cargo mutants --version >/dev/null 2>&1; then
        return
    fi
    log "installing cargo-mutants $CARGO_MUTANTS_VERSION (cargo install, a few minutes)"
    env -u CARGO_TARGET_DIR cargo install --locked --version "$CARGO_MUTANTS_VERSION" cargo-mutants
    cargo mutants --version >/dev/null 2>&1 || die "cargo-mutants installed, but 'cargo mutants' does not run"
}

ensure_cargo_mutants
log "$(cargo mutants --version)"

# The files each crate's unit tests are judged on. halo-core: the availability use cases and the
# mirror health, which its fake-backed unit tests (availability/decisions_tests.rs) exercise;
# the chat, limits, admin and background code is proven by the store-backed tests in
# crates/halo-core/tests, which need Postgres and Valkey and are not run per mutant.
files_of() {
    case "$1" in
        halo-core) printf '%s\n' --file 'crates/halo-core/src/availability/*.rs' \
            --file crates/halo-core/src/mirror_health.rs \
            --exclude crates/halo-core/src/availability/decisions_tests.rs ;;
        *) printf '%s\n' --file "crates/$1/src/**/*.rs" --file "crates/$1/src/*.rs" ;;
    esac
}

packages=()
for crate in "${@:-halo-domain}"; do
    packages+=(--package "$crate")
    mapfile -t -O "${#packages[@]}" packages < <(files_of "$crate")
done

mkdir -p "$MUTANTS_OUT"
status=0
# Every copy must build into its own target/: with CARGO_TARGET_DIR set, the parallel copies
# share one, and a mutant is tested with the other copy's binary (false misses, seen here).
env -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET_DIR \
    cargo mutants "${packages[@]}" --jobs "${MUTANTS_JOBS:-2}" --output "$MUTANTS_OUT" --colors never ||
    status=$?

results="$MUTANTS_OUT/mutants.out"
case "$status" in
    0 | 2 | 3) ;;
    4) die "the unit tests fail without any mutation (log: $results/log/baseline.log)" ;;
    *) die "cargo-mutants failed (exit $status)" ;;
esac
if [ -s "$results/timeout.txt" ]; then
    warn "mutants that hung the tests (counted as caught):"
    sed 's/^/    /' "$results/timeout.txt" >&2
fi
if [ -s "$results/missed.txt" ]; then
    printf 'error: %s mutants no test caught (diffs and logs: %s):\n' \
        "$(wc -l <"$results/missed.txt")" "$results" >&2
    sed 's/^/    /' "$results/missed.txt" >&2
    exit 2
fi
log "no missed mutant in ${*:-halo-domain}"
