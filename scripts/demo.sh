#!/usr/bin/env bash
# make demo: a throw-away cluster with pageperfect preloaded, in $WORK/demo on port $DEMO_PORT,
# the bundled sample site (demo/site) served on loopback port $DEMO_SITE_PORT, the bundled
# Search Console sample (demo/search_console.csv) loaded, the PagePerfect workflow run on every
# page with the local providers while its progress is shown, the report (demo/report.sql: the
# pipeline's results, content decay, cannibalization, link suggestions, content scores), two
# cron jobs, and the web dashboard (pageperfect-web) on loopback port $DEMO_WEB_PORT. The
# workflows, jobs and queue belong to role pageperfect_demo (a pageperfect_user), as which the
# dashboard connects. Everything keeps running until `make demo-stop`.
set -euo pipefail
source "$(dirname "$0")/common.sh"
DEMO_PORT="${DEMO_PORT:-28816}"
DEMO_SITE_PORT="${DEMO_SITE_PORT:-28817}"
DEMO_WEB_PORT="${DEMO_WEB_PORT:-28818}"
dir="$WORK/demo"
mkdir -p "$WORK"; [ "$(id -u)" = 0 ] && chown "$PG_USER" "$WORK"

demo_stop "$dir"
step "starting a cluster with pageperfect preloaded in $dir (port $DEMO_PORT)"
# The sample site is on loopback, which the crawler refuses unless crawl_allow_private is on.
cluster_start "$dir" "$DEMO_PORT" "shared_preload_libraries = 'pageperfect'" "pageperfect.database_name = 'postgres'" \
    "pageperfect.crawl_allow_private = on"
PSQL=("$(bindir)/psql" -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$DEMO_PORT" -U postgres -d postgres)
"${PSQL[@]}" -qc "CREATE EXTENSION pageperfect"
# The demo's work belongs to an ordinary role, which the dashboard connects as: it may verify
# cron secrets (the dashboard's tokens) and use the sample's Search Console property.
"${PSQL[@]}" -q <<'SQL'
CREATE ROLE pageperfect_demo LOGIN IN ROLE pageperfect_user;
GRANT EXECUTE ON FUNCTION pageperfect.verify_cron_secret(text, text) TO pageperfect_demo;
INSERT INTO pageperfect.gsc_site_owners (site, owner) VALUES ('sc-domain:brewbetter.example', 'pageperfect_demo');
SQL
for _ in $(seq 50); do
    [ "$("${PSQL[@]}" -qAtc "SELECT count(*) FROM pageperfect.worker_health() WHERE status = 'healthy'")" = 3 ] && break
    sleep 0.2
done
step "workers"
"${PSQL[@]}" -c "SELECT component, status, last_run AS last_heartbeat FROM pageperfect.get_scheduler_health()"

step "serving the sample site (demo/site) on http://127.0.0.1:$DEMO_SITE_PORT"
nohup "$REPO/target/debug/serve-dir" "$REPO/demo/site" "$DEMO_SITE_PORT" >"$dir/site.log" 2>&1 &
echo $! >"$dir/site.pid"
for _ in $(seq 50); do grep -q serving "$dir/site.log" && break; sleep 0.1; done

site="http://127.0.0.1:$DEMO_SITE_PORT"
step "loading $(($(wc -l <"$REPO/demo/search_console.csv") - 1)) Search Console rows (demo/search_console.csv, moved to end yesterday) and a year of history"
"${PSQL[@]}" -q <<SQL
CREATE TEMP TABLE sample (date date, page text, query text, clicks int, impressions int, ctr text, position float8);
\copy sample FROM '$REPO/demo/search_console.csv' WITH (FORMAT csv, HEADER true)
INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, ctr, position)
SELECT date + (current_date - 1 - max(date) OVER ()), 'sc-domain:brewbetter.example',
       replace(page, 'https://brewbetter.example', '$site'), query, clicks, impressions,
       clicks::float8 / nullif(impressions, 0), position
  FROM sample;
-- Eleven more 28-day windows of history, made from the sample: the French press guide had more
-- searches and ranked higher a year ago and has been sliding since; the iced coffee guide is
-- new; the other guides held steady.
INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, ctr, position)
SELECT d.date - 28 * k, d.site, d.page, d.query, past.clicks, past.impressions, past.clicks::float8 / nullif(past.impressions, 0), past.position
  FROM pageperfect.gsc_page_query_daily d, generate_series(1, 11) AS k,
       LATERAL (SELECT CASE WHEN d.page LIKE '%/french-press.html' THEN 1 + 0.05 * k ELSE 1 END AS demand,
                       CASE WHEN d.page LIKE '%/french-press.html' THEN greatest(1, d.position - 0.3 * k) ELSE d.position END AS position) AS trend,
       LATERAL (SELECT round(d.impressions * trend.demand)::int AS impressions, trend.position,
                       least(round(d.impressions * trend.demand)::int,
                             round(d.clicks * trend.demand * pageperfect.expected_ctr(trend.position) / pageperfect.expected_ctr(d.position))::int) AS clicks) AS past
 WHERE d.site = 'sc-domain:brewbetter.example' AND d.page NOT LIKE '%/iced-coffee.html';
SQL

step "running the workflow on every page (local embedder and drafter)"
"${PSQL[@]}" -qAt -c "SET ROLE pageperfect_demo" \
    -c "SELECT pageperfect.run_workflow(page) FROM (SELECT DISTINCT page FROM pageperfect.gsc_page_query_daily ORDER BY 1) p" >/dev/null
started=$SECONDS
while :; do
    line="$("${PSQL[@]}" -qAt -F ' ' -c "
        SELECT count(*) FILTER (WHERE status IN ('completed', 'dead')), count(*),
               coalesce(string_agg(DISTINCT stage, ', ') FILTER (WHERE status NOT IN ('completed', 'dead')), '')
          FROM pageperfect.v_job_status")"
    read -r done total stages <<<"$line"
    printf '  [%2ss] %s of %s pages done%s\n' "$((SECONDS - started))" "$done" "$total" "${stages:+ · working on: $stages}"
    [ "$done" = "$total" ] && break
    [ $((SECONDS - started)) -gt 120 ] && { echo "the workflow did not finish in 2 minutes; see $dir/server.log"; exit 1; }
    sleep 0.5
done
"${PSQL[@]}" -c "SELECT regexp_replace(url, '^https?://[^/]+', '') AS page, status, attempt_count, last_error FROM pageperfect.v_job_status ORDER BY url"

step "report (demo/report.sql)"
"${PSQL[@]}" -f "$REPO/demo/report.sql"

step "cron jobs, scheduled as a pg_cron migration would (they keep running; see cron.job_run_details)"
"${PSQL[@]}" -q <<'SQL'
CREATE TABLE demo_ticks (at timestamptz DEFAULT clock_timestamp(), who text DEFAULT current_user);
GRANT INSERT ON demo_ticks TO pageperfect_demo;
SET ROLE pageperfect_demo;
SELECT cron.schedule('demo-tick', '2 seconds', 'INSERT INTO demo_ticks DEFAULT VALUES') \gset
SELECT cron.schedule('demo-broken', '5 seconds', 'SELECT 1/0') \gset
SQL
sleep 5.5
"${PSQL[@]}" -c "SELECT jobid, runid, status, return_message, start_time - due_time AS lag FROM pageperfect.job_run_details ORDER BY runid DESC LIMIT 6"

step "the web dashboard (pageperfect-web) on http://127.0.0.1:$DEMO_WEB_PORT, as role pageperfect_demo"
# Queue traffic with backlog samples (the default metrics job takes one every 30 minutes), and a
# page the site does not have: its crawl fails for good and leaves a dead letter.
"${PSQL[@]}" -q >/dev/null <<SQL
SET ROLE pageperfect_demo;
SELECT pageperfect.create_queue('demo-emails');
SELECT pageperfect.send_batch('demo-emails', array_fill('{"to": "reader@example.com"}'::jsonb, ARRAY[4]));
RESET ROLE;
SELECT pageperfect.trigger_metrics_collection();
SET ROLE pageperfect_demo;
SELECT pageperfect.send_batch('demo-emails', array_fill('{"to": "reader@example.com"}'::jsonb, ARRAY[9]));
RESET ROLE;
SELECT pageperfect.trigger_metrics_collection();
SET ROLE pageperfect_demo;
SELECT pageperfect.pop('demo-emails', 7);
SELECT pageperfect.run_workflow('$site/guides/missing.html');
RESET ROLE;
SELECT pageperfect.trigger_metrics_collection();
SQL
token="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"${PSQL[@]}" -qAt -c "SELECT pageperfect.set_cron_secret('pageperfect-web', '$token')" >/dev/null
nohup "$REPO/target/debug/pageperfect-web" --database-url "postgres://pageperfect_demo@127.0.0.1:$DEMO_PORT/postgres" \
    --listen "127.0.0.1:$DEMO_WEB_PORT" >"$dir/web.log" 2>&1 &
echo $! >"$dir/web.pid"
for _ in $(seq 50); do grep -q listening "$dir/web.log" && break; sleep 0.1; done
grep -q listening "$dir/web.log" || { cat "$dir/web.log"; exit 1; }

cat <<EOM

The web dashboard:           http://127.0.0.1:$DEMO_WEB_PORT/   (sign in with the token: $token)
SEO insights:                http://127.0.0.1:$DEMO_WEB_PORT/insights
The guides' scheduler API:   curl -H 'Authorization: Bearer $token' 'http://127.0.0.1:$DEMO_WEB_PORT/api/scheduler?action=status'
Prometheus metrics:          curl -H 'Authorization: Bearer $token' http://127.0.0.1:$DEMO_WEB_PORT/metrics

The demo cluster and the sample site are running. Connect with:

    psql -h 127.0.0.1 -p $DEMO_PORT -U postgres postgres

See the report again:        psql -h 127.0.0.1 -p $DEMO_PORT -U postgres postgres -f demo/report.sql
Run a page again, forced:    SELECT pageperfect.run_workflow('$site/guides/espresso.html', force_update := true);
Follow a job:                SELECT * FROM pageperfect.v_job_status;  SELECT * FROM pageperfect.job_events ORDER BY id DESC;

To draft with an OpenAI-compatible server (OpenAI, vLLM, Ollama) instead of the local providers:

    ALTER SYSTEM SET pageperfect.llm_provider = 'openai';
    ALTER SYSTEM SET pageperfect.llm_url = 'https://api.openai.com/v1/chat/completions';
    ALTER SYSTEM SET pageperfect.llm_model = 'gpt-4o-mini';
    ALTER SYSTEM SET pageperfect.embedding_provider = 'openai';   -- and embedding_url, embedding_model
    ALTER SYSTEM SET pageperfect.api_key = 'sk-...';
    SELECT pg_reload_conf();

Server log: $dir/server.log; the dashboard's: $dir/web.log
Stop it all: make demo-stop
EOM
