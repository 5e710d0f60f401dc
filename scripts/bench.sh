#!/usr/bin/env bash
# make bench: pageperfect beside what users would otherwise run, measured side by side in one run
# on this machine, printed as one table and drawn as a chart ($WORK/bench/bench.png):
#
#   queue      send + read + delete messages/s, batches of 1, 10 and 100, 1 and 4 clients, beside a
#              plain-SQL FOR UPDATE SKIP LOCKED queue and beside pgmq's own SQL (the release the
#              `pgmq` crate embeds, in a database of its own) in the same cluster (pgbench; bench/queue/)
#   scheduler  lag from due time to start for 1, 100 and 1,000 jobs due in the same minute (p50,
#              p99, max), beside pg_cron (Debian's postgresql-15-cron) in a second database of the
#              same cluster; both get the same cron.schedule() calls (bench/scheduler/)
#   ctr_fit    recalibrate_ctr() on 1 million Search Console rows, beside the same maximum-likelihood
#              fit in scipy (scipy.optimize.minimize on the binomial log-likelihood: the rows COPYed
#              out into numpy and fitted, and the fit alone; bench/python/ctr_scipy.py) and beside
#              the plain-SQL logit regression a user would write (bench/ctr/)
#   dbscan     2,000, 5,000 and 10,000 vectors of 384 dimensions, beside scikit-learn's
#              DBSCAN(metric="cosine", algorithm="brute") on one thread, same labels checked
#              (bench-dbscan, bench/python/dbscan_sklearn.py)
#   wakeup     ms from a send's commit to a waiting read_with_poll returning (p50, p99), beside
#              the same wait done as pgmq does it: read, sleep 100 ms, read again (bench-wakeup)
#   history    the scheduler's CPU per second with 100 one-second jobs and 3 million runs in
#              job_run_details, beside the same jobs with an empty history
#   crawl      seconds to crawl 900 pages of 9 hosts answering after 20 ms, beside 100 pages of a 10th
#              host answering after 500 ms, beside the same 900 alone and beside a first-come queue
#              with no per-host limit (bench-crawl)
#   pipeline   pages/minute end to end with the loopback site and model server answering after
#              20 ms, beside the same HTTP calls made one page at a time with no database, and the
#              time to the first completed page of the 1,000 queued, beside one page's share of
#              those calls; and the pipeline workers' resident memory over a long run (it must stay flat)
#
# The Python baselines (scikit-learn, scipy) run in a virtual environment made from PyPI with the
# pinned bench/python/requirements.txt in $WORK/bench-venv, kept for the next run while that file
# is unchanged.
#
# In the queue rows, msg/s = pgbench transactions/s x batch: one transaction sends a batch of B
# messages, reads B and deletes the B it read (three statements, each its own transaction).
# pageperfect goes through its API (B = 1: send, read(q, 30, 1), delete(q, id); else send_batch,
# read, delete(q, ids[])), the baseline through plain SQL; both with pgbench -M prepared. Each cell
# runs pageperfect, then the baseline, after a VACUUM and a CHECKPOINT, so that machine noise and
# checkpoints hit both sides alike.
#
#   BENCH_ONLY          the benchmarks to run (default: "queue scheduler ctr_fit dbscan wakeup history crawl pipeline")
#   BENCH_SECONDS       queue: seconds per side and cell (default 5)
#   BENCH_BACKLOG       queue: messages waiting in each queue throughout (default 10000)
#   BENCH_PAGES         pipeline: pages of the throughput run (default 1000)
#   BENCH_CRAWL_PAGES   crawl: pages over the ten hosts (default 1000)
#   BENCH_MEMORY_PAGES  pipeline: pages of the memory run (default 10000; 0 skips it)
#   BENCH_PORT          port of the cluster (default: a free one)
#
# The scheduler's rounds are due at the start of three consecutive minutes; the queue, CTR and
# DBSCAN benchmarks run in the seconds between them, never while a round is due or running.
#
# Uses the installed extension; `scripts/bench.sh --install` (what `make bench` runs) first builds
# and installs a release build, and builds the benchmark binaries beside it. Every figure lands in
# $WORK/bench/results.csv (benchmark,case,unit,better,pageperfect,baseline_name,baseline,ratio;
# ratio > 1 means pageperfect is ahead). The cluster is stopped and removed on exit.
set -euo pipefail
shopt -s inherit_errexit
source "$(dirname "$0")/common.sh"
cd "$REPO"
BENCH_ONLY="${BENCH_ONLY:-queue scheduler ctr_fit dbscan wakeup history crawl pipeline}"
BENCH_SECONDS="${BENCH_SECONDS:-5}"
BENCH_BACKLOG="${BENCH_BACKLOG:-10000}"
BENCH_PAGES="${BENCH_PAGES:-1000}"
BENCH_CRAWL_PAGES="${BENCH_CRAWL_PAGES:-1000}"
BENCH_MEMORY_PAGES="${BENCH_MEMORY_PAGES:-10000}"
BENCH_PORT="${BENCH_PORT:-$(free_port)}"
dir="$WORK/bench"
results="$dir/results.csv"
mkdir -p "$WORK"; [ "$(id -u)" = 0 ] && chown "$PG_USER" "$WORK"

# Psql and pgbench run as the caller and connect over TCP as postgres (cluster_start trusts it).
psql_in() { "$(bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -d "$@"; }
PGBENCH=("$(bindir)/pgbench" -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -n -M prepared)
wants() { [[ " $BENCH_ONLY " == *" $1 "* ]]; }

# bench-pipeline and bench-crawl start their clusters under $WORK too; one it could not stop (it was killed) would
# go on taking a core from whatever runs next.
export PAGEPERFECT_WORK="$WORK"
finish() {
    cluster_stop "$dir"
    rm -rf "$dir/data"
    for left in "$WORK"/it-bench-pipeline-*/ "$WORK"/it-bench-crawl-*/; do
        if [ -d "$left" ]; then cluster_stop "$left"; fi
    done
}
trap finish EXIT
trap 'exit 130' INT TERM

# record BENCHMARK CASE UNIT BETTER PAGEPERFECT BASELINE_NAME BASELINE: one row of results.csv
# (no field may hold a comma).
record() {
    if [[ "$*" == *,* ]]; then echo "record: a field holds a comma: $*" >&2; return 1; fi
    awk -v OFS=, -v b="$1" -v c="$2" -v u="$3" -v better="$4" -v p="$5" -v bn="$6" -v base="$7" 'BEGIN {
        ratio = (better == "higher") ? (base > 0 ? p / base : 0) : (p > 0 ? base / p : 0)
        print b, c, u, better, p, bn, base, sprintf("%.2f", ratio) }' >>"$results"
}

cluster_stop "$dir" # one left running by an earlier run that was killed
# The binaries: the pipeline's driver and loopback servers, the DBSCAN kernels, the chart. Their
# own target directory, so that they build beside scripts/install.sh (which holds target/).
export CARGO_TARGET_DIR="$REPO/target/bench"
build_binaries() { cargo build --profile bench-bins --quiet -p pageperfect-it --bin bench-pipeline --bin bench-crawl --bin bench-pgmq-install --bin bench-dbscan --bin bench-wakeup --bin bench-chart; }
if [ "${1:-}" = --install ]; then
    step "building and installing pageperfect (release), and the benchmark binaries beside it"
    build_binaries & binaries=$!
    CARGO_TARGET_DIR="$REPO/target" bash "$REPO/scripts/install.sh"
    wait "$binaries"
else
    step "building the benchmark binaries"
    build_binaries
fi
bin="$CARGO_TARGET_DIR/bench-bins"

# The Python baselines' virtual environment (outside $dir, which cluster_start empties).
if wants dbscan || wants ctr_fit; then
    venv="$WORK/bench-venv"
    if ! cmp -s "$REPO/bench/python/requirements.txt" "$venv/requirements.txt"; then
        step "python baselines: a virtual environment in $venv (bench/python/requirements.txt, from PyPI)"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check --only-binary :all: -r "$REPO/bench/python/requirements.txt"
        cp "$REPO/bench/python/requirements.txt" "$venv/requirements.txt" # marks it complete
    fi
    export BENCH_PYTHON="$venv/bin/python"
fi

step "starting a cluster with pageperfect and pg_cron preloaded in $dir (port $BENCH_PORT)"
# Durability as in production (fsync on, full_page_writes on), except synchronous_commit = off:
# each pgbench transaction commits three times, and with synchronous commit the queue numbers
# would mostly measure this machine's WAL flush latency. WAL and checkpoint settings keep
# checkpoints out of the runs (the script checkpoints between them). pg_cron runs with its
# defaults (a libpq connection per run, at most 32 at once), pageperfect likewise (32).
cluster_start "$dir" "$BENCH_PORT" \
    "shared_preload_libraries = 'pageperfect,pg_cron'" \
    "pageperfect.database_name = 'postgres'" \
    "cron.database_name = 'pgcron'" \
    "cron.host = '127.0.0.1'" \
    "shared_buffers = 256MB" \
    "synchronous_commit = off" \
    "max_wal_size = 4GB" \
    "checkpoint_timeout = 30min"
psql_in postgres -c "CREATE EXTENSION pageperfect" -c "CREATE DATABASE pgcron"
psql_in pgcron -c "CREATE EXTENSION pg_cron"

cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
cat <<EOM

machine:   $(nproc) CPUs, ${cpu:-unknown CPU}, $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) RAM
postgres:  $(psql_in postgres -Atc "SELECT version()")
extension: pageperfect $(psql_in postgres -Atc "SELECT extversion FROM pg_extension WHERE extname = 'pageperfect'"), \
pg_cron $(psql_in pgcron -Atc "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'")
settings:  fsync on, synchronous_commit off, shared_buffers 256MB

EOM
echo "benchmark,case,unit,better,pageperfect,baseline_name,baseline,ratio" >"$results"

# --- scheduler -------------------------------------------------------------------------------

# Rounds of 100, 1,000 and 1 jobs, the first at least 20 s away: pageperfect's jobs due at the
# start of a minute, pg_cron's at the start of the next, so that neither side's burst of runs
# slows the other's (pg_cron's 1,000 connections keep both cores busy for seconds; sharing a
# minute, they more than doubled pageperfect's lag). The single job comes last, so that it meets
# pageperfect's runners connected, as in steady state (each pg_cron run opens a new connection
# whatever the order). The other benchmarks run between the rounds.
round_jobs=(); round_due=(); round_done=()
if wants scheduler; then
    first_due="$(psql_in postgres -Atc "SELECT extract(epoch FROM date_trunc('minute', now() + interval '80 seconds'))::bigint")"
    step "scheduler: 100, 1,000 and 1 jobs due at once, pageperfect and pg_cron a minute apart, from $(date -u -d "@$first_due" +%H:%M) UTC"
    for jobs in 100 1000 1; do
        due=$((first_due + 120 * ${#round_jobs[@]}))
        round_jobs+=("$jobs"); round_due+=("$due"); round_done+=(0)
        for side in pageperfect:postgres:0 pg_cron:pgcron:60; do
            IFS=: read -r name database offset <<<"$side"
            psql_in "$database" -v jobs="$jobs" -v side="$name" -v minute="$(date -u -d "@$((due + offset))" +%-M)" \
                -v hour="$(date -u -d "@$((due + offset))" +%-H)" -f "$REPO/bench/scheduler/schedule.sql" >/dev/null
        done
    done
fi

# collect_round I: waits until both sides ran all jobs of round I (or 55 s after pg_cron's due
# time) and records their lags.
collect_round() {
    local i="$1" jobs="${round_jobs[$1]}" due="${round_due[$1]}" due_text pc_due_text pp pc label
    local pp_runs pp_p50 pp_p99 pp_max pc_runs pc_p50 pc_p99 pc_max
    due_text="$(date -u -d "@$due" '+%Y-%m-%d %H:%M:%S+00')"
    pc_due_text="$(date -u -d "@$((due + 60))" '+%Y-%m-%d %H:%M:%S+00')"
    while :; do
        if [ "$(date +%s)" -ge "$due" ]; then
            pp="$(psql_in postgres -Atc "SELECT count(*) FROM bench_lag WHERE jobs = $jobs")"
            pc="$(psql_in pgcron -Atc "SELECT count(*) FROM bench_lag WHERE jobs = $jobs")"
            { [ "$pp" = "$jobs" ] && [ "$pc" = "$jobs" ]; } || [ "$(date +%s)" -ge $((due + 60 + 55)) ] && break
        fi
        sleep 1
    done
    IFS=, read -r pp_runs pp_p50 pp_p99 pp_max < <(psql_in postgres -At -v jobs="$jobs" -v due="$due_text" -f "$REPO/bench/scheduler/lag.sql")
    IFS=, read -r pc_runs pc_p50 pc_p99 pc_max < <(psql_in pgcron -At -v jobs="$jobs" -v due="$pc_due_text" -f "$REPO/bench/scheduler/lag.sql")
    [ "$pp_runs" = "$jobs" ] || echo "warning: pageperfect ran $pp_runs of $jobs jobs within 55 s" >&2
    [ "$pc_runs" = "$jobs" ] || echo "warning: pg_cron ran $pc_runs of $jobs jobs within 55 s" >&2
    label="$jobs job$([ "$jobs" = 1 ] || echo s)"
    record scheduler "$label p50" "ms lag" lower "$pp_p50" pg_cron "$pc_p50"
    record scheduler "$label p99" "ms lag" lower "$pp_p99" pg_cron "$pc_p99"
    record scheduler "$label max" "ms lag" lower "$pp_max" pg_cron "$pc_max"
    step "scheduler: $label due at $(date -u -d "@$due" +%H:%M): pageperfect ran $pp_runs, pg_cron ran $pc_runs"
    round_done[i]=1
}

# between_rounds SECONDS CMD...: runs CMD, which takes up to about SECONDS, once no round is due
# before it would end (waiting out the rounds in the way), and says so if a round fell due anyway.
between_rounds() {
    local seconds="$1" i; shift
    for i in "${!round_jobs[@]}"; do
        [ "${round_done[$i]}" = 0 ] && [ $((round_due[i] - $(date +%s))) -lt $((seconds + 3)) ] && collect_round "$i"
    done
    "$@"
    for i in "${!round_jobs[@]}"; do
        if [ "${round_done[$i]}" = 0 ] && [ "$(date +%s)" -ge "${round_due[$i]}" ]; then
            echo "warning: '$*' took longer than $seconds s and ran into the scheduler round due at" \
                 "$(date -u -d "@${round_due[$i]}" +%H:%M): that round's lag is not comparable" >&2
        fi
    done
}

# --- DBSCAN ----------------------------------------------------------------------------------

if wants dbscan; then
    step "dbscan: n = 2,000, 5,000, 10,000 x 384 dimensions, pageperfect and scikit-learn (1 thread)"
    # Seconds each size takes here (both sides, scikit-learn's start, the naive check at 2,000), with some room.
    for size_seconds in 2000:10 5000:15 10000:25; do
        between_rounds "${size_seconds#*:}" env BENCH_CSV="$results" "$bin/bench-dbscan" "${size_seconds%:*}"
    done
fi

# --- wake-ups --------------------------------------------------------------------------------

if wants wakeup; then
    step "wakeup: send to a waiting read_with_poll, beside pgmq-style polling every 100 ms"
    between_rounds 40 env BENCH_CSV="$results" "$bin/bench-wakeup" "$BENCH_PORT"
fi

# --- CTR fit ---------------------------------------------------------------------------------

# best_ms DATABASE FILE: the fastest of three runs of FILE, in milliseconds.
best_ms() {
    for _ in 1 2 3; do
        psql_in "$1" -c '\timing on' -f "$2" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1
    done | sort -g | head -1
}

ctr_fit_rows() {
    local pp ours answer version total fit grouped alpha beta iterations
    pp="$(best_ms postgres "$REPO/bench/ctr/pageperfect.sql")"
    # scipy's fit of the same model must find pageperfect's alpha and beta: ctr_scipy.py exits
    # non-zero otherwise.
    ours="$(psql_in postgres -At -F ' ' -c "SELECT alpha, beta FROM pageperfect.recalibrate_ctr(90)")"
    # shellcheck disable=SC2086 # $ours: two numbers
    answer="$(env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 "$BENCH_PYTHON" "$REPO/bench/python/ctr_scipy.py" \
        "host=127.0.0.1 port=$BENCH_PORT user=postgres dbname=postgres" 90 $ours)"
    read -r version total fit grouped alpha beta iterations < <("$BENCH_PYTHON" -c '
import json, sys
a = json.loads(sys.argv[1])
print(a["scipy"], "%.1f %.1f %.1f %.6f %.6f" % (a["best_total_ms"], a["best_fit_ms"], a["best_grouped_total_ms"], a["alpha"], a["beta"]), a["iterations"])' "$answer")
    step "ctr_fit: pageperfect $pp ms, alpha/beta $ours; scipy $version: $total ms (COPY into numpy + fit), $fit ms" \
         "(fit alone), alpha $alpha, beta $beta after $iterations BFGS iterations; scipy on sums per position: $grouped ms (no row)"
    record ctr_fit "1M rows: COPY + fit" ms lower "$pp" "scipy $version MLE" "$total"
    record ctr_fit "1M rows: fit alone" ms lower "$pp" "scipy $version MLE (rows in memory)" "$fit"
    record ctr_fit "1M rows" ms lower "$pp" "SQL least squares" "$(best_ms postgres "$REPO/bench/ctr/baseline.sql")"
}

if wants ctr_fit; then
    step "ctr_fit: 1,000,000 Search Console rows, recalibrate_ctr(), scipy's fit of the same model and a plain-SQL logit regression"
    between_rounds 20 psql_in postgres -v rows=1000000 -f "$REPO/bench/ctr/setup.sql" -o /dev/null
    between_rounds 45 ctr_fit_rows
    psql_in postgres -c "TRUNCATE pageperfect.gsc_page_query_daily" >/dev/null
fi

# --- queue -----------------------------------------------------------------------------------

queue_length() { # SIDE
    case "$1" in
        pageperfect) psql_in postgres -Atc "SELECT count(*) FROM pageperfect.queue_messages WHERE queue_name = 'bench'" ;;
        skiplocked) psql_in postgres -Atc "SELECT count(*) FROM bench_queue" ;;
        pgmq) psql_in pgmqbench -Atc "SELECT count(*) FROM pgmq.q_bench" ;;
    esac
}
# The database each side's queue lives in.
queue_database() { if [ "$1" = pgmq ]; then echo pgmqbench; else echo postgres; fi; }

# queue_run SIDE BATCH CLIENTS: one pgbench run; prints its transactions per second.
queue_run() {
    local side="$1" batch="$2" clients="$3" script log tps before after
    if [ "$batch" = 1 ]; then script="$REPO/bench/queue/${side}_1.sql"; else script="$REPO/bench/queue/${side}_batch.sql"; fi
    log="$dir/pgbench-$side-b$batch-c$clients.log"
    psql_in postgres -c "VACUUM (ANALYZE) pageperfect.queue_messages, pageperfect.queue_sent_counts, bench_queue" -c "CHECKPOINT" >/dev/null
    [ "$side" != pgmq ] || psql_in pgmqbench -c "VACUUM (ANALYZE) pgmq.q_bench, pgmq.a_bench" >/dev/null
    before="$(queue_length "$side")"
    if ! "${PGBENCH[@]}" -f "$script" -D batch="$batch" -c "$clients" -j "$(( clients < 2 ? clients : 2 ))" \
        -T "$BENCH_SECONDS" "$(queue_database "$side")" >"$log" 2>&1; then
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

# queue_cell BATCH CLIENTS: pageperfect, then the baselines: a row beside each.
queue_cell() {
    local batch="$1" clients="$2" pp_tps sl_tps pgmq_tps case
    pp_tps="$(queue_run pageperfect "$batch" "$clients")"
    sl_tps="$(queue_run skiplocked "$batch" "$clients")"
    pgmq_tps="$(queue_run pgmq "$batch" "$clients")"
    case="batch $batch / $clients client$([ "$clients" = 1 ] || echo s)"
    msgs() { awk -v t="$1" -v b="$batch" 'BEGIN { printf "%.0f", t * b }'; }
    record queue "$case" msg/s higher "$(msgs "$pp_tps")" "SKIP LOCKED" "$(msgs "$sl_tps")"
    record queue_pgmq "$case" msg/s higher "$(msgs "$pp_tps")" "pgmq $PGMQ_VERSION" "$(msgs "$pgmq_tps")"
}

if wants queue; then
    step "queue: batches 1, 10, 100 x clients 1, 4; pageperfect, SKIP LOCKED, then pgmq, ${BENCH_SECONDS}s each"
    between_rounds 5 psql_in postgres -v backlog="$BENCH_BACKLOG" -f "$REPO/bench/queue/setup.sql" -o /dev/null
    # pgmq's own SQL in a database of its own (its schema is pgmq, as pageperfect's would be).
    psql_in postgres -c "DROP DATABASE IF EXISTS pgmqbench" -c "CREATE DATABASE pgmqbench" >/dev/null
    PGMQ_VERSION="$("$bin/bench-pgmq-install" "postgres://postgres:bench@127.0.0.1:$BENCH_PORT/pgmqbench")"
    psql_in pgmqbench -v backlog="$BENCH_BACKLOG" -f "$REPO/bench/queue/pgmq_setup.sql" -o /dev/null
    for batch in 1 10 100; do
        for clients in 1 4; do
            between_rounds $((3 * BENCH_SECONDS + 12)) queue_cell "$batch" "$clients"
        done
    done
fi

if wants scheduler; then
    for i in "${!round_jobs[@]}"; do
        [ "${round_done[$i]}" = 1 ] || collect_round "$i"
    done
    psql_in postgres -c "SELECT count(cron.unschedule(jobid)) FROM cron.job WHERE jobname LIKE 'bench-%'" >/dev/null
    psql_in pgcron -c "SELECT count(cron.unschedule(jobid)) FROM cron.job WHERE jobname LIKE 'bench-%'" >/dev/null
fi

# --- history ---------------------------------------------------------------------------------

# The scheduler's CPU per second with 100 one-second jobs, first with their own short history,
# then with 3 million finished runs of theirs in job_run_details: a tick must not cost more with
# a longer history (the issue's target: within 10%).
scheduler_cpu_ms_per_s() { # SECONDS
    local pid t0 t1
    pid="$(psql_in postgres -Atc "SELECT pid FROM pageperfect.workers WHERE worker_name = 'scheduler'")"
    t0="$(awk '{ print $14 + $15 }' "/proc/$pid/stat")"
    sleep "$1"
    t1="$(awk '{ print $14 + $15 }' "/proc/$pid/stat")"
    awk -v d="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v s="$1" 'BEGIN { printf "%.1f", 1000 * d / hz / s }'
}
if wants history; then
    step "history: scheduler CPU with 100 one-second jobs, with an empty history and with 3 million runs"
    psql_in postgres -c "UPDATE pageperfect.parameters SET value = '100000000' WHERE name = 'run_details_per_job';
                         SELECT count(cron.schedule('hist-' || n, '1 seconds', 'SELECT 1')) FROM generate_series(1, 100) n" >/dev/null
    sleep 5
    # Empty, long, empty again: the baseline is the mean of the two empty runs, so that a drift
    # of the machine over the minutes hits both sides alike.
    empty_before="$(scheduler_cpu_ms_per_s 30)"
    psql_in postgres -c "INSERT INTO pageperfect.job_run_details (jobid, status, start_time, end_time, due_time, command)
                         SELECT j.jobid, 'succeeded', t, t, t, j.command
                           FROM cron.job j, generate_series(now() - interval '1 day', now() - interval '1 minute', interval '2.9 seconds') t
                          WHERE j.jobname LIKE 'hist-%'" >/dev/null
    psql_in postgres -c "VACUUM ANALYZE pageperfect.job_run_details" >/dev/null
    runs="$(psql_in postgres -Atc "SELECT round(count(*) / 1e6, 1) FROM pageperfect.job_run_details")"
    long_cpu="$(scheduler_cpu_ms_per_s 30)"
    psql_in postgres -c "TRUNCATE pageperfect.job_run_details" >/dev/null
    sleep 5
    empty_after="$(scheduler_cpu_ms_per_s 30)"
    empty_cpu="$(awk -v a="$empty_before" -v b="$empty_after" 'BEGIN { printf "%.1f", (a + b) / 2 }')"
    step "history: $empty_before and $empty_after ms CPU/s with an empty history, $long_cpu with ${runs}M runs"
    record history "tick CPU with ${runs}M runs" "ms CPU/s" lower "$long_cpu" "empty history" "$empty_cpu"
    psql_in postgres -c "SELECT count(cron.unschedule(jobid)) FROM cron.job WHERE jobname LIKE 'hist-%';
                         UPDATE pageperfect.parameters SET value = '10000' WHERE name = 'run_details_per_job'" >/dev/null
fi

# --- crawl -----------------------------------------------------------------------------------

if wants crawl; then
    # bench-crawl starts its own preloaded cluster.
    cluster_stop "$dir"
    step "crawl: $BENCH_CRAWL_PAGES pages over 10 hosts, one answering after 500 ms"
    BENCH_CSV="$results" "$bin/bench-crawl" "$BENCH_CRAWL_PAGES" 500
fi

# --- pipeline --------------------------------------------------------------------------------

if wants pipeline; then
    # bench-pipeline starts its own preloaded cluster; this one would only take memory and CPU.
    cluster_stop "$dir"
    step "pipeline: $BENCH_PAGES pages, site and model server answering after 20 ms"
    BENCH_CSV="$results" "$bin/bench-pipeline" throughput "$BENCH_PAGES" 20
    if [ "$BENCH_MEMORY_PAGES" -gt 0 ]; then
        step "pipeline: the workers' memory over $BENCH_MEMORY_PAGES pages"
        BENCH_CSV="$results" "$bin/bench-pipeline" memory "$BENCH_MEMORY_PAGES" 0
    fi
fi

# --- results ---------------------------------------------------------------------------------

step "results (ratio > 1: pageperfect ahead of the baseline by that factor)"
awk -F, 'NR == 1 { printf "%-10s %-22s %-8s %14s %14s  %-20s %7s\n", "benchmark", "case", "unit", "pageperfect", "baseline", "(baseline)", "ratio"; next }
         { printf "%-10s %-22s %-8s %14s %14s  %-20s %7s\n", $1, $2, $3, $5, $7, $6, $8 }' "$results"
"$bin/bench-chart" "$results" "$dir/bench.png"
echo
echo "CSV: $results   chart: $dir/bench.png   pgbench logs: $dir/pgbench-*.log"
