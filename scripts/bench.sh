#!/usr/bin/env bash
# make bench: queue throughput of pageperfect's pgmq-shaped queue against a plain-SQL
# FOR UPDATE SKIP LOCKED queue, side by side in one throw-away cluster (in $WORK/bench).
#
# One pgbench transaction sends a batch of B messages, reads B and deletes the B it read (three
# statements, each its own transaction: bench/queue/*.sql); messages/second = transactions/s x B.
# pageperfect goes through its API (B = 1: send, read(q, 30, 1), delete(q, id); else send_batch,
# read, delete(q, ids[])), the baseline through plain SQL; both with pgbench -M prepared. The
# baseline's B = 1 read has LIMIT 1 written in, as hand-written SQL would; for B > 1 both sides
# get B as a parameter (which makes Postgres plan the read anew on every call, on both sides).
# Every cell (batch size x clients) runs pageperfect, then the baseline, BENCH_SECONDS each, after
# a VACUUM and a CHECKPOINT, so that machine noise and checkpoints hit both sides alike. The table
# is printed and written to $WORK/bench/queue.csv; the cluster is stopped and removed on exit.
#
#   BENCH_SECONDS  seconds per side and cell (default 10: about 2.5 minutes in all)
#   BENCH_BACKLOG  messages waiting in each queue throughout (default 10000)
#   BENCH_PORT     port of the cluster (default: a free one)
#
# Uses the installed extension: `make bench` installs a release build first.
set -euo pipefail
shopt -s inherit_errexit
source "$(dirname "$0")/common.sh"
BENCH_SECONDS="${BENCH_SECONDS:-10}"
BENCH_BACKLOG="${BENCH_BACKLOG:-10000}"
BENCH_PORT="${BENCH_PORT:-$(free_port)}"
BATCHES=(1 10 100)
CLIENTS=(1 4)
dir="$WORK/bench"
sql="$REPO/bench/queue"
csv="$dir/queue.csv"
mkdir -p "$WORK"; [ "$(id -u)" = 0 ] && chown "$PG_USER" "$WORK"

# Psql and pgbench run as the caller and connect over TCP as postgres (cluster_start trusts it).
PSQL=("$(bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -d postgres)
PGBENCH=("$(bindir)/pgbench" -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -n -M prepared)

finish() {
    cluster_stop "$dir"
    rm -rf "$dir/data"
}
trap finish EXIT
trap 'exit 130' INT TERM

cluster_stop "$dir" # one left running by an earlier run that was killed
step "starting a cluster with pageperfect preloaded in $dir (port $BENCH_PORT)"
# Durability as in production (fsync on, full_page_writes on), except synchronous_commit = off on
# both sides: each pgbench transaction commits three times, and with synchronous commit the
# numbers would mostly measure this machine's WAL flush latency, not the queues. WAL and
# checkpoint settings keep checkpoints out of the runs (the script checkpoints between them).
cluster_start "$dir" "$BENCH_PORT" \
    "shared_preload_libraries = 'pageperfect'" \
    "pageperfect.database_name = 'postgres'" \
    "shared_buffers = 256MB" \
    "synchronous_commit = off" \
    "max_wal_size = 4GB" \
    "checkpoint_timeout = 30min"
"${PSQL[@]}" -c "CREATE EXTENSION pageperfect"
"${PSQL[@]}" -v backlog="$BENCH_BACKLOG" -f "$sql/setup.sql" >/dev/null

cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
pg_version="$("${PSQL[@]}" -Atc "SELECT version()")"
ext_version="$("${PSQL[@]}" -Atc "SELECT extversion FROM pg_extension WHERE extname = 'pageperfect'")"
cat <<EOM

machine:   $(nproc) CPUs, ${cpu:-unknown CPU}
postgres:  $pg_version
extension: pageperfect $ext_version ($("$PG_CONFIG" --pkglibdir)/pageperfect.so)
settings:  fsync on, synchronous_commit off, shared_buffers 256MB; pgbench -M prepared
run:       ${BENCH_SECONDS}s per side and cell, backlog $BENCH_BACKLOG messages per queue

EOM

queue_length() { # SIDE
    case "$1" in
        pageperfect) "${PSQL[@]}" -Atc "SELECT count(*) FROM pageperfect.queue_messages WHERE queue_name = 'bench'" ;;
        skiplocked) "${PSQL[@]}" -Atc "SELECT count(*) FROM bench_queue" ;;
    esac
}

# run SIDE BATCH CLIENTS: one pgbench run; prints its transactions per second.
run() {
    local side="$1" batch="$2" clients="$3" script log tps before after
    if [ "$batch" = 1 ]; then script="$sql/${side}_1.sql"; else script="$sql/${side}_batch.sql"; fi
    log="$dir/pgbench-$side-b$batch-c$clients.log"
    "${PSQL[@]}" -c "VACUUM (ANALYZE) pageperfect.queue_messages, pageperfect.queue_sent_counts, bench_queue" -c "CHECKPOINT" >/dev/null
    before="$(queue_length "$side")"
    if ! "${PGBENCH[@]}" -f "$script" -D batch="$batch" -c "$clients" -j "$(( clients < 2 ? clients : 2 ))" \
        -T "$BENCH_SECONDS" postgres >"$log" 2>&1; then
        echo "pgbench failed ($side, batch $batch, $clients clients):" >&2
        cat "$log" >&2
        return 1
    fi
    tps="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$log")"
    [ -n "$tps" ] || { echo "no tps in $log:" >&2; cat "$log" >&2; return 1; }
    # Every transaction deletes what it read: the queue keeps its length, up to the messages of
    # transactions cut short at the end. If it grew, reads came back short and msg/s is too high.
    after="$(queue_length "$side")"
    if [ "$after" -gt "$((before + batch * clients))" ]; then
        echo "warning: $side queue grew from $before to $after messages (batch $batch, $clients clients): reads came back short" >&2
    fi
    echo "$tps"
}

step "running: batch sizes ${BATCHES[*]} x clients ${CLIENTS[*]}, pageperfect then baseline per cell"
echo "batch,clients,pageperfect_msg_per_s,skip_locked_msg_per_s,ratio" >"$csv"
for batch in "${BATCHES[@]}"; do
    for clients in "${CLIENTS[@]}"; do
        pp_tps="$(run pageperfect "$batch" "$clients")"
        sl_tps="$(run skiplocked "$batch" "$clients")"
        awk -v b="$batch" -v c="$clients" -v p="$pp_tps" -v s="$sl_tps" \
            'BEGIN { printf "%d,%d,%.0f,%.0f,%.2f\n", b, c, p * b, s * b, (s > 0 ? p / s : 0) }' >>"$csv"
        echo "    batch $batch, $clients client(s): done" >&2
    done
done

step "results (msg/s = pgbench transactions/s x batch; ratio = pageperfect / SKIP LOCKED)"
awk -F, 'NR == 1 { printf "%5s | %7s | %17s | %17s | %5s\n", "batch", "clients", "pageperfect msg/s", "SKIP LOCKED msg/s", "ratio"
                   printf "%s\n", "------+---------+-------------------+-------------------+------"; next }
         { printf "%5s | %7s | %17s | %17s | %5s\n", $1, $2, $3, $4, $5 }' "$csv"
echo
echo "CSV: $csv   pgbench logs: $dir/pgbench-*.log"
