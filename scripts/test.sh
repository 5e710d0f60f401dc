#!/usr/bin/env bash
# make test: every suite against real clusters, in order:
#   1. unit tests and #[pg_test]s (cargo pgrx test: a throw-away cluster with the extension preloaded),
#      then clippy (-D warnings) and the docs' links
#   2. install the extension into the Postgres of $PG_CONFIG
#   3. pg_regress files under pg_regress/ against a preloaded cluster (plpgsql_check among them)
#   4. integration tests (tests/): each starts its own clusters and loopback servers
#   5. pageperfect-web's tests (web/tests/): its API, /metrics under promtool, the dashboard in
#      headless Chromium, against real clusters
#   6. make demo as a newcomer runs it: its report, its dashboard and API answer; make demo-stop
set -uo pipefail
source "$(dirname "$0")/common.sh"
SETUP_TESTS=1 bash "$REPO/scripts/setup.sh" || exit 1
cd "$REPO"
mkdir -p "$WORK"
[ "$(id -u)" = 0 ] && chown "$PG_USER" "$WORK"

passed=0; failed=0; failures=()
# Free disk beside each step: a build that runs out of it fails in the linker with a bare
# "Bus error", and this line says why.
disk() { echo "disk free: $(df -h --output=avail "$REPO" | tail -1 | tr -d ' '), target: $(du -sh "$REPO/target" 2>/dev/null | cut -f1)"; }

suite() { # NAME COMMAND...
    local name="$1"; shift
    step "$name ($(disk))"
    if "$@"; then passed=$((passed + 1)); echo "ok   $name"
    else failed=$((failed + 1)); failures+=("$name"); echo "FAIL $name"; return 1; fi
}

pgrx_tests() {
    local pgdata="$WORK/pgrx-test"
    rm -rf "$pgdata"; mkdir -p "$pgdata"
    # cargo pgrx test installs its build by rewriting the library in place, which would crash a
    # server (of another checkout, say) that has the old one loaded. Build first, then give the
    # installed library a new inode (copy and rename): running servers keep the old one, and
    # the in-place write seconds later reaches only the copy.
    cargo pgrx package --test --debug --pg-config "$PG_CONFIG" --out-dir "$REPO/target/pgrx-test-build" >/dev/null
    detach_installed_library
    if [ "$(id -u)" = 0 ]; then
        chown "$PG_USER" "$pgdata"
        cargo pgrx test pg15 --runas "$PG_USER" --pgdata "$pgdata"
    else
        cargo pgrx test pg15 --pgdata "$pgdata"
    fi
}

install_extension() {
    # Our own clusters restart with the new library anyway; others keep the old one (install.sh
    # renames the new files into place).
    for dir in "$WORK"/*/; do cluster_stop "$dir"; done
    bash "$REPO/scripts/install.sh" --debug --features test_stages
}

regress() {
    local dir="$WORK/regress" port; port="$(free_port)"
    cluster_start "$dir" "$port" "shared_preload_libraries = 'pageperfect'" || return 1
    local pg_regress; pg_regress="$(dirname "$("$PG_CONFIG" --pgxs)")/../test/regress/pg_regress"
    local tests; tests="setup $(cd pg_regress/sql && ls *.sql | sed 's/\.sql$//' | grep -vx setup | sort | tr '\n' ' ')"
    rm -rf "$WORK/regress-out"; mkdir -p "$WORK/regress-out"
    local status=0
    "$pg_regress" --host=127.0.0.1 --port="$port" --user=postgres --dbname=pageperfect_regress \
        --bindir="$(bindir)" --inputdir=pg_regress --outputdir="$WORK/regress-out" $tests || status=$?
    [ $status = 0 ] || cat "$WORK/regress-out/regression.diffs" 2>/dev/null
    cluster_stop "$dir"
    return $status
}

integration() {
    PG_CONFIG="$PG_CONFIG" PAGEPERFECT_WORK="$WORK" PG_USER="$PG_USER" cargo test -p pageperfect-it
}

web() {
    PG_CONFIG="$PG_CONFIG" PAGEPERFECT_WORK="$WORK" PG_USER="$PG_USER" cargo test -p pageperfect-web
}

# What a newcomer runs first, from this checkout: make demo builds and starts the cluster, the
# sample site and the dashboard, and prints the report; the dashboard and its API answer with the
# token it printed; make demo-stop ends it all. Last: it installs the library without test_stages.
demo() {
    local log="$WORK/demo-check.log" status=0
    make -C "$REPO" demo >"$log" 2>&1 || status=$?
    if [ $status = 0 ]; then
        local url token
        url="$(sed -n 's|^The web dashboard: *\(http://[^ ]*/\) .*|\1|p' "$log")"
        token="$(sed -n 's|.*sign in with the token: \([0-9a-f]*\)).*|\1|p' "$log")"
        grep -q "=== .* report (demo/report.sql)" "$log" && [ -n "$url" ] && [ -n "$token" ] \
            && curl -fsS -o /dev/null "$url" \
            && curl -fsS -H "Authorization: Bearer $token" "${url}api/scheduler?action=status" | grep -q '"success":true' \
            || status=1
    fi
    [ $status = 0 ] || tail -40 "$log"
    make -C "$REPO" demo-stop >/dev/null 2>&1
    return $status
}

# Lints that CI enforces: clippy's default set as errors over every crate and target, and every
# Markdown link resolving inside the repository.
lint() {
    cargo clippy --workspace --all-targets --quiet -- -D warnings && python3 "$REPO/scripts/check_docs.py"
}

suite "unit and #[pg_test] (cargo pgrx test)" pgrx_tests
suite "clippy and docs links" lint
# The suites after install test the installed extension: without it they would test a stale one.
if suite "install into $("$PG_CONFIG" --pkglibdir)" install_extension; then
    suite "pg_regress" regress
    suite "integration (tests/)" integration
    suite "web (web/tests/)" web
fi
suite "make demo (its report, dashboard and API; make demo-stop)" demo
step "done in $((SECONDS - t0)) s ($(disk))"
[ ${#failures[@]} = 0 ] || echo "failed suites: ${failures[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" = 0 ]
