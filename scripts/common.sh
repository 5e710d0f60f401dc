# Shared by the scripts: paths, the OS user that runs clusters, and cluster helpers.
# Postgres refuses to run as root, so as root every cluster runs as $PG_USER (created if missing).

PG_CONFIG="${PG_CONFIG:-$(command -v pg_config || echo /usr/lib/postgresql/15/bin/pg_config)}"
PGRX_VERSION=0.18.1
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Must be traversable by the cluster user, so not under /root.
WORK="${PAGEPERFECT_WORK:-/tmp/pageperfect-$(id -un)}"
PG_USER="${PG_USER:-postgres}"

t0=$SECONDS
step() { echo "=== [$((SECONDS - t0))s] $*"; }

bindir() { "$PG_CONFIG" --bindir; }

# Runs a command as the cluster user (root: $PG_USER; anyone else: themselves).
as_pg_user() {
    if [ "$(id -u)" = 0 ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# cluster_start DIR PORT [postgresql.conf lines...]: a fresh cluster in DIR listening on 127.0.0.1:PORT.
cluster_start() {
    local dir="$1" port="$2"; shift 2
    rm -rf "$dir"
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown "$PG_USER" "$dir"
    as_pg_user "$(bindir)/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log"; return 1; }
    {
        echo "port = $port"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$dir'"
        echo "max_worker_processes = 64"
        printf '%s\n' "$@"
    } >>"$dir/data/postgresql.conf"
    # Without RUST_BACKTRACE: pgrx would append a backtrace to every error's DETAIL.
    as_pg_user env -u RUST_BACKTRACE "$(bindir)/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null \
        || { cat "$dir/server.log"; return 1; }
}

cluster_stop() { # DIR
    [ -d "$1/data" ] && as_pg_user "$(bindir)/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null 2>&1 || true
}

demo_stop() { # DIR: the demo's web server, cluster and sample site
    [ -f "$1/web.pid" ] && kill "$(cat "$1/web.pid")" 2>/dev/null || true
    cluster_stop "$1"
    [ -f "$1/site.pid" ] && kill "$(cat "$1/site.pid")" 2>/dev/null || true
    rm -f "$1/site.pid" "$1/web.pid"
}

# Gives the installed library a new inode with the same content (copy, then rename over it):
# servers that have it loaded keep the old inode, so a later in-place write cannot crash them.
detach_installed_library() {
    local lib; lib="$("$PG_CONFIG" --pkglibdir)/pageperfect.so"
    [ -f "$lib" ] || return 0
    local run=(); [ "$(id -u)" = 0 ] || run=(sudo)
    "${run[@]}" cp -p "$lib" "$lib.pageperfect-new" && "${run[@]}" mv -f "$lib.pageperfect-new" "$lib"
}
