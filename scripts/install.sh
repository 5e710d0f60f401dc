#!/usr/bin/env bash
# Builds pageperfect and installs it into the Postgres of $PG_CONFIG without disturbing a server
# that has the old library loaded: each file is written beside its destination and renamed over
# it, so running processes keep the old file (its inode) until they restart. (`cargo pgrx
# install` rewrites the library in place, and a server that has it mapped then crashes.)
#
#   scripts/install.sh [--debug] [--features "test_stages"]
#
# A running server goes on with the old code until it restarts; see README, "Upgrading".
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO"

package_args=(--pg-config "$PG_CONFIG")
while [ $# -gt 0 ]; do
    case "$1" in
        --debug) package_args+=(--debug); shift ;;
        --features) package_args+=(--features "$2"); shift 2 ;;
        *) echo "usage: $0 [--debug] [--features LIST]" >&2; exit 2 ;;
    esac
done

stage="$REPO/target/pageperfect-install"
rm -rf "$stage"
step "cargo pgrx package ${package_args[*]}"
cargo pgrx package "${package_args[@]}" --out-dir "$stage" >/dev/null
# pgrx writes the current version's install script and copies the upgrade scripts
# (sql/pageperfect--A--B.sql); every released version's own install script stays installable
# too, so that CREATE EXTENSION pageperfect VERSION '<old>' works (the upgrade tests use it).
cp sql/releases/pageperfect--*.sql "$stage$("$PG_CONFIG" --sharedir)/extension/"

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Files under $stage sit at their absolute install paths.
(cd "$stage" && find . -type f) | sed 's|^\.||' | sort | while read -r path; do
    mode=644; [[ "$path" == *.so ]] && mode=755
    sudo_if_needed install -D -m "$mode" "$stage$path" "$path.pageperfect-new"
    sudo_if_needed mv -f "$path.pageperfect-new" "$path"
    echo "installed $path"
done
