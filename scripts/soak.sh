#!/usr/bin/env bash
# Soak: bash scripts/soak.sh [--minutes N]   (default 30; not run by CI or `make test`)
#
# One preloaded cluster (2 pipeline workers), a loopback web site and a loopback OpenAI-compatible
# model server; for N minutes at once: cron jobs every 1-2 s writing a ledger, workflows over the
# site with 429/500 from the model server, bursts of queue traffic with producers and consumers,
# and bursts of net.http_get against a server answering 500, 429 and too slowly — while every
# minute or so (scaled down for short runs) a pipeline worker or the scheduler is killed with
# kill -9, and once (every 10 minutes in long runs) the whole cluster is stopped with
# `pg_ctl stop -m immediate` and started again. Then the load stops, the system gets up to two
# minutes to settle, and a table gives per kind of work how much was created, completed, lost,
# duplicated and stuck. Exits non-zero if anything was lost, duplicated or stuck (the cluster's
# directory under $WORK, with its server.log, is then kept and its path printed).
# Details: tests/src/bin/soak.rs.
#
# Uses the INSTALLED extension and does not install it: run `make install` (or `make test`, which
# installs it) first. Builds the soak binary in release mode (the integration-test crate).
set -euo pipefail
shopt -s inherit_errexit
source "$(dirname "$0")/common.sh"

minutes=30
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) minutes="${2:?--minutes needs a number}"; shift 2 ;;
        --minutes=*) minutes="${1#--minutes=}"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage: bash scripts/soak.sh [--minutes N]" >&2; exit 2 ;;
    esac
done
[[ "$minutes" =~ ^[0-9]+([.][0-9]+)?$ ]] && awk -v m="$minutes" 'BEGIN { exit !(m > 0) }' \
    || { echo "--minutes must be a positive number (got '$minutes')" >&2; exit 2; }

lib="$("$PG_CONFIG" --pkglibdir)/pageperfect.so"
[ -f "$lib" ] || { echo "pageperfect is not installed into $("$PG_CONFIG" --pkglibdir): run make install first" >&2; exit 1; }

export PG_CONFIG
export PAGEPERFECT_WORK="$WORK"
mkdir -p "$WORK"; [ "$(id -u)" = 0 ] && chown "$PG_USER" "$WORK"

step "building the soak binary (release)"
(cd "$REPO" && cargo build --release --quiet -p pageperfect-it --bin soak)

step "soak: $minutes minutes of load, then up to 2 minutes to settle (extension: $lib, $(date -r "$lib" '+%F %T'))"
"$REPO/target/release/soak" --minutes "$minutes"
