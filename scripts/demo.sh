#!/usr/bin/env bash
# make demo: a throw-away cluster with pageperfect preloaded, in $WORK/demo on port $DEMO_PORT,
# the extension created in database "postgres", its workers shown running, and two cron jobs.
set -euo pipefail
source "$(dirname "$0")/common.sh"
DEMO_PORT="${DEMO_PORT:-28816}"
dir="$WORK/demo"
mkdir -p "$WORK"; [ "$(id -u)" = 0 ] && chown "$PG_USER" "$WORK"

cluster_stop "$dir"
step "starting a cluster with pageperfect preloaded in $dir (port $DEMO_PORT)"
cluster_start "$dir" "$DEMO_PORT" "shared_preload_libraries = 'pageperfect'" "pageperfect.database_name = 'postgres'"
PSQL=("$(bindir)/psql" -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$DEMO_PORT" -U postgres -d postgres)
"${PSQL[@]}" -qc "CREATE EXTENSION pageperfect"
for _ in $(seq 50); do
    [ "$("${PSQL[@]}" -qAtc "SELECT count(*) FROM pageperfect.worker_health() WHERE status = 'healthy'")" = 3 ] && break
    sleep 0.2
done
step "workers"
"${PSQL[@]}" -c "SELECT component, status, last_run AS last_heartbeat FROM pageperfect.get_scheduler_health()"
"${PSQL[@]}" -c "SELECT pid, backend_type, wait_event FROM pg_stat_activity WHERE backend_type LIKE 'pageperfect%' ORDER BY backend_type"
step "cron jobs, scheduled as a pg_cron migration would (they keep running; see cron.job_run_details)"
"${PSQL[@]}" -q <<'SQL'
CREATE TABLE demo_ticks (at timestamptz DEFAULT clock_timestamp(), who text DEFAULT current_user);
SELECT cron.schedule('demo-tick', '2 seconds', 'INSERT INTO demo_ticks DEFAULT VALUES');
SELECT cron.schedule('demo-broken', '5 seconds', 'SELECT 1/0');
SQL
sleep 5.5
"${PSQL[@]}" -c "SELECT jobid, runid, status, return_message, start_time - due_time AS lag FROM pageperfect.job_run_details ORDER BY runid DESC LIMIT 6"
"${PSQL[@]}" -c "SELECT job_name, schedule, last_status, next_run FROM pageperfect.manage_cron_jobs()"
cat <<EOM

The demo cluster is running. Connect with:

    psql -h 127.0.0.1 -p $DEMO_PORT -U postgres postgres

Server log: $dir/server.log
Stop it with:  make demo-stop
EOM
