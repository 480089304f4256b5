#!/usr/bin/env bash
# What one offer round costs (SPEC §12.5) at 1,000, 10,000 and 100,000 online mitras with
# blast_max_recipients = 50 (the default): `bench-stores --mode offers` (see
# bins/bench-stores/src/offers.rs for the fleet's shape). Per size and round (a first one, and a
# second that excludes the first one's mitras): the wall time of `offer_candidates` through the
# mirror, the Valkey work per call from INFO commandstats (scripts = round trips, every command
# they ran, their server time), and the Postgres fallback statement's wall time, execution time
# and buffers per call from pg_stat_statements; then the largest size over the smallest. The
# machine is shared: the ratios say more than the absolute figures.
#
#   scripts/bench-offer.sh                          # 1k, 10k, 100k
#   OFFER_SIZES=1000,10000 OFFER_RUNS=20 scripts/bench-offer.sh
#
# Stores: databases on the Postgres of HALO_TEST_DATABASE_URL (else the test Postgres on
# 127.0.0.1:55433, started as scripts/test.sh does; it needs pg_stat_statements preloaded, as
# scripts/lib.sh configures it), dropped again; a throwaway valkey-server on a free port. A
# release build of bench-stores (or HALO_BIN_DIR). Results: .data/bench-offer/offers.{txt,json}.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
cd "$HALO_REPO_ROOT"

SIZES="${OFFER_SIZES:-1000,10000,100000}"
RUNS="${OFFER_RUNS:-200}"
DIR="$HALO_DATA_DIR/bench-offer"
mkdir -p "$DIR"

cleanup() {
    stop_valkey "$DIR/valkey" || true
    drop_scratch_database
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_tools
# Only for its admin URL (and the name): bench-stores makes <name>_offers_<size> beside it.
scratch_database halo_bench_offer
VALKEY_PORT="$(free_port)"
start_valkey "$DIR/valkey" "$VALKEY_PORT"

if [ -n "${HALO_BIN_DIR:-}" ]; then
    BIN="$HALO_BIN_DIR"
else
    log "cargo build --release (bench-stores)"
    cargo build --release --quiet -p bench-stores
    BIN="$(cargo_target_dir)/release"
fi

log "offer rounds at $SIZES online mitras, $RUNS timed rounds per store"
"$BIN/bench-stores" --mode offers --admin-url "$SCRATCH_ADMIN_URL" \
    --valkey-url "redis://127.0.0.1:$VALKEY_PORT/" --sizes "$SIZES" --offer-runs "$RUNS" \
    --db-prefix "$SCRATCH_DB" --json "$DIR/offers.json" | tee "$DIR/offers.txt"
