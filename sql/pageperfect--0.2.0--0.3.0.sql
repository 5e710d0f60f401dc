-- pageperfect 0.2.0 -> 0.3.0, run by ALTER EXTENSION pageperfect UPDATE.
--   * The run store owns every write of run rows: the sweeper's failing of runs whose process
--     is gone is pageperfect.fail_runs_of_vanished_processes() (src/scheduler/run_store.rs),
--     which trigger_sweeper() calls.
--   * pageperfect-web reads only through functions: search_console_sites() and
--     latest_content_scores() (as their caller, so row-level security applies).
--   * plpgsql_check is clean: trigger_monitoring, trigger_health_checks, trigger_cleanup,
--     replace_seeded_row and pgmq's two stubs changed (no behaviour change).
--   * Every public function says what it does (COMMENT ON FUNCTION, shown by \df+); every other
--     function of schema pageperfect is marked internal.
-- Written by hand; tests/tests/upgrade.rs proves that every released version updated to 0.3.0
-- has a fresh install's schema and keeps every row.
\echo Use "ALTER EXTENSION pageperfect UPDATE TO '0.3.0'" to load this file. \quit

-- src/scheduler/run_store.rs, with finalize.sql's pinned search_path; superusers only.
CREATE FUNCTION pageperfect."fail_runs_of_vanished_processes"() RETURNS bigint
STRICT VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', 'fail_runs_of_vanished_processes_wrapper';
ALTER FUNCTION pageperfect.fail_runs_of_vanished_processes() SET search_path = pg_catalog, pg_temp;
REVOKE EXECUTE ON FUNCTION pageperfect.fail_runs_of_vanished_processes() FROM PUBLIC;

-- sql/monitor_api.sql
CREATE OR REPLACE FUNCTION pageperfect.trigger_sweeper()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    swept jsonb := pageperfect.sweep_stages(NULL);
    runs_failed int := pageperfect.fail_runs_of_vanished_processes()::int;
    summary jsonb;
BEGIN
    summary := swept || pg_catalog.jsonb_build_object('runs_failed', runs_failed);
    INSERT INTO pageperfect.sweeper_logs (stages_requeued, stages_failed, runs_failed, details)
    VALUES ((swept ->> 'requeued_orphans')::int, (swept ->> 'failed_overdue')::int, runs_failed, summary);
    RETURN summary;
END
$$;
-- CREATE OR REPLACE drops the settings finalize.sql gave the function: pin them again.
ALTER FUNCTION pageperfect.trigger_sweeper() SET search_path = pg_catalog, pg_temp;

-- sql/gsc_api.sql and sql/pipeline_api.sql, granted as finalize.sql grants them.
CREATE FUNCTION pageperfect.search_console_sites()
RETURNS TABLE (site text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT DISTINCT o.site FROM pageperfect.gsc_site_owners o ORDER BY 1
$$;
CREATE FUNCTION pageperfect.latest_content_scores(max_rows int DEFAULT 50)
RETURNS TABLE (url text, score int, coverage float8, opportunity float8, ctr float8, freshness float8,
               created_at timestamptz, score_before int, score_after int)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM (SELECT DISTINCT ON (s.page_id) coalesce(p.final_url, p.url) AS url, s.score, s.coverage, s.opportunity,
                          s.ctr, s.freshness, s.created_at, d.score_before, d.score_after
                     FROM pageperfect.content_scores s JOIN pageperfect.pages p ON p.id = s.page_id
                     LEFT JOIN LATERAL (SELECT d.score_before, d.score_after FROM pageperfect.rewrite_drafts d
                                         WHERE d.page_id = s.page_id ORDER BY d.id DESC LIMIT 1) d ON true
                    ORDER BY s.page_id, s.id DESC) latest
     ORDER BY latest.score, latest.url
     LIMIT max_rows
$$;
REVOKE EXECUTE ON FUNCTION pageperfect.search_console_sites(), pageperfect.latest_content_scores(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pageperfect.search_console_sites(), pageperfect.latest_content_scores(int) TO pageperfect_user;


-- plpgsql_check finds no error and no warning (make test checks it): explicit casts of the
-- defaults, an unused variable gone, and warnings that do not apply suppressed with the reason.
CREATE OR REPLACE FUNCTION pageperfect.trigger_monitoring()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    webhook text := nullif(current_setting('pageperfect.alert_webhook_url', true), '');
    -- Every condition that holds now: each is inserted or refreshed below.
    holding text[] := '{}'::text[];
    opened text[] := '{}'::text[];
    resolved text[];
    notified int := 0;
    alert record;
BEGIN
    FOR alert IN
        INSERT INTO pageperfect.monitoring_alerts AS m (alert_key, alert_type, severity, message, data)
        SELECT c.alert_key, c.alert_type, c.severity, c.message, c.data FROM pageperfect.current_alert_conditions() c
        ON CONFLICT (alert_key) WHERE status = 'open'
        DO UPDATE SET severity = excluded.severity, message = excluded.message, data = excluded.data,
                      updated_at = pg_catalog.now()
        RETURNING m.id, m.alert_key, (m.xmax = 0) AS is_new
    LOOP
        holding := holding || alert.alert_key;
        CONTINUE WHEN NOT alert.is_new;
        opened := opened || alert.alert_key;
        CONTINUE WHEN webhook IS NULL;
        BEGIN
            PERFORM pageperfect.create_job(CURRENT_USER, webhook, ARRAY['notify_alert'],
                                           pg_catalog.jsonb_build_object('alert_id', alert.id), 0, '{}', false);
            notified := notified + 1;
        EXCEPTION WHEN invalid_parameter_value THEN
            UPDATE pageperfect.monitoring_alerts SET notify_error = SQLERRM WHERE id = alert.id;
        END;
    END LOOP;
    WITH cleared AS (
        UPDATE pageperfect.monitoring_alerts m
           SET status = 'resolved', resolved_at = pg_catalog.now(), updated_at = pg_catalog.now()
         WHERE m.status = 'open' AND m.alert_key <> ALL (holding)
        RETURNING m.alert_key
    )
    SELECT coalesce(pg_catalog.array_agg(cleared.alert_key ORDER BY cleared.alert_key), '{}') INTO resolved FROM cleared;
    RETURN pg_catalog.jsonb_build_object(
        'opened', pg_catalog.to_jsonb(opened), 'resolved', pg_catalog.to_jsonb(resolved),
        'open', (SELECT count(*) FROM pageperfect.monitoring_alerts m WHERE m.status = 'open'),
        'notifications_queued', notified);
END
$$;
ALTER FUNCTION pageperfect.trigger_monitoring() SET search_path = pg_catalog, pg_temp;
CREATE OR REPLACE FUNCTION pageperfect.trigger_health_checks()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    started timestamptz;
    outcome record;
BEGIN
    started := pg_catalog.clock_timestamp();
    SELECT CASE WHEN used > 0.9 * max_conn THEN 'degraded' ELSE 'healthy' END AS status,
           pg_catalog.jsonb_build_object('connections', used, 'max_connections', max_conn,
                                         'size_bytes', pg_catalog.pg_database_size(pg_catalog.current_database())) AS details
      INTO outcome
      FROM (SELECT (SELECT count(*) FROM pg_catalog.pg_stat_activity) AS used,
                   pg_catalog.current_setting('max_connections')::int AS max_conn) c;
    PERFORM pageperfect.record_health('database', outcome.status, started, outcome.details);

    started := pg_catalog.clock_timestamp();
    SELECT CASE WHEN coalesce(max(q.oldest_msg_age_sec) FILTER (WHERE q.queue_visible_length > 0), 0) > 3600
                THEN 'degraded' ELSE 'healthy' END AS status,
           pg_catalog.jsonb_build_object('messages', coalesce(sum(q.queue_length), 0),
                                         'oldest_visible_age_seconds', max(q.oldest_msg_age_sec) FILTER (WHERE q.queue_visible_length > 0)) AS details
      INTO outcome FROM pageperfect.metrics_all() q;
    PERFORM pageperfect.record_health('queue', outcome.status, started, outcome.details);

    started := pg_catalog.clock_timestamp();
    SELECT CASE WHEN i.attempts >= 5 AND i.success_rate < 0.5 THEN 'degraded' ELSE 'healthy' END AS status,
           pg_catalog.jsonb_build_object('attempts_last_hour', coalesce(i.attempts, 0), 'success_rate', i.success_rate,
                                         'dead_letters_last_hour', (SELECT count(*) FROM pageperfect.dead_letters d
                                                                     WHERE d.routed_at > pg_catalog.now() - interval '1 hour')) AS details
      INTO outcome
      FROM (SELECT) one LEFT JOIN pageperfect.execution_insights(pg_catalog.now() - interval '1 hour', pg_catalog.now()) i ON i.stage = '*';
    PERFORM pageperfect.record_health('job_engine', outcome.status, started, outcome.details);

    started := pg_catalog.clock_timestamp();
    SELECT CASE WHEN s.failed_jobs > 0 THEN 'degraded' ELSE 'healthy' END AS status,
           pg_catalog.jsonb_build_object('jobs', s.total_jobs, 'active', s.active_jobs, 'last_run_failed', s.failed_jobs) AS details
      INTO outcome FROM pageperfect.get_cron_job_status() s;
    PERFORM pageperfect.record_health('cron_jobs', outcome.status, started, outcome.details);

    FOR outcome IN SELECT * FROM pageperfect.worker_health() LOOP
        started := pg_catalog.clock_timestamp();
        PERFORM pageperfect.record_health(outcome.component,
            CASE outcome.status WHEN 'healthy' THEN 'healthy' WHEN 'stalled' THEN 'degraded' ELSE 'down' END,
            started,
            pg_catalog.jsonb_build_object('pid', outcome.pid, 'last_heartbeat', outcome.last_heartbeat,
                'heartbeat_age_ms', round(extract(epoch FROM pg_catalog.clock_timestamp() - outcome.last_heartbeat) * 1000)));
    END LOOP;

    RETURN (SELECT pg_catalog.jsonb_build_object(
                'components', count(*),
                'healthy', count(*) FILTER (WHERE h.status = 'healthy'),
                'degraded', pg_catalog.to_jsonb(coalesce(pg_catalog.array_agg(h.component) FILTER (WHERE h.status = 'degraded'), '{}')),
                'down', pg_catalog.to_jsonb(coalesce(pg_catalog.array_agg(h.component) FILTER (WHERE h.status = 'down'), '{}')))
              FROM pageperfect.health_checks h
             WHERE h.checked_at = pg_catalog.now());
END
$$;
ALTER FUNCTION pageperfect.trigger_health_checks() SET search_path = pg_catalog, pg_temp;
CREATE OR REPLACE FUNCTION pageperfect.trigger_cleanup(max_rows_per_table int DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
-- The dynamic DELETE's extra condition (%3$s) is one of the constants of the VALUES list below,
-- never input: @plpgsql_check_options: security_warnings = off
DECLARE
    target record;
    deleted bigint;
    beyond_count bigint;
    summary jsonb := '{}'::jsonb;
    keep_per_job int := coalesce((SELECT (p.value #>> '{}')::int FROM pageperfect.parameters p
                                   WHERE p.name = 'run_details_per_job'), 10000);
BEGIN
    IF max_rows_per_table < 1 THEN
        RAISE EXCEPTION 'max_rows_per_table must be at least 1 (got %)', max_rows_per_table
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR target IN
        SELECT t.table_name, t.time_column, t.extra_condition,
               CASE WHEN t.parameter = 'pg_net.ttl'
                    THEN coalesce(nullif(pg_catalog.current_setting('pg_net.ttl', true), ''), '6 hours')::interval
                    WHEN t.parameter LIKE '%seconds' THEN pg_catalog.make_interval(secs => p.value::float8)
                    ELSE pg_catalog.make_interval(days => (p.value #>> '{}')::int) END AS retention
          FROM (VALUES ('job_run_details',   'end_time',    'status IN (''succeeded'', ''failed'', ''skipped'')', 'run_details_retention_days'),
                       -- Finished workflows, with their stages, payloads, events and dead letters.
                       ('jobs',              'updated_at',  'status IN (''completed'', ''failed'', ''dead'', ''cancelled'')', 'jobs_retention_days'),
                       ('job_events',        'created_at',  'true',                 'events_retention_days'),
                       ('dead_letters',      'routed_at',   'true',                 'dead_letters_retention_days'),
                       ('queue_archive',     'archived_at', 'true',                 'archive_retention_days'),
                       ('embedding_cache',   'created_at',  'true',                 'embedding_cache_retention_days'),
                       -- A page's latest draft stays, however old.
                       ('rewrite_drafts',    'created_at',  'id <> (SELECT max(l.id) FROM pageperfect.rewrite_drafts l WHERE l.page_id = t.page_id)',
                                                                                    'drafts_retention_days'),
                       -- A page's latest content score stays too; a year of them shows its trend.
                       ('content_scores',    'created_at',  'id <> (SELECT max(l.id) FROM pageperfect.content_scores l WHERE l.page_id = t.page_id)',
                                                                                    'scores_retention_days'),
                       ('sweeper_logs',      'ran_at',      'true',                 'logs_retention_days'),
                       ('cleanup_logs',      'ran_at',      'true',                 'logs_retention_days'),
                       ('health_checks',     'checked_at',  'true',                 'logs_retention_days'),
                       ('gsc_ingestions',    'finished_at', 'true',                 'logs_retention_days'),
                       -- Days older than a backfill reaches are never fetched again.
                       ('gsc_days',          'date',        'true',                 'gsc_backfill_days'),
                       ('monitoring_alerts', 'resolved_at', 'status = ''resolved''', 'logs_retention_days'),
                       ('metrics_data',      'collected_at', 'true',                'metrics_retention_days'),
                       -- Hosts not crawled since: a crawl learns their Crawl-delay again.
                       ('host_politeness',   'next_start_at', 'true',               'logs_retention_days'),
                       -- pg_net's setting, as with pg_net.
                       ('http_responses',    'created',     'true',                 'pg_net.ttl'),
                       -- The fetched HTML of pages not crawled since (their fragments stay).
                       ('pages',             'fetched_at',  'html IS NOT NULL',     'page_html_retention_days'))
               AS t (table_name, time_column, extra_condition, parameter)
          LEFT JOIN pageperfect.parameters p ON p.name = t.parameter
         WHERE p.name IS NOT NULL OR t.parameter = 'pg_net.ttl'
    LOOP
        IF target.table_name = 'http_responses' THEN
            -- The request goes with its response (ON DELETE CASCADE), as pg_net forgets both.
            DELETE FROM pageperfect.http_requests r
             WHERE r.id = ANY (ARRAY(SELECT s.id FROM pageperfect.http_responses s
                                      WHERE s.created < pg_catalog.now() - target.retention LIMIT max_rows_per_table));
        ELSIF target.table_name = 'pages' THEN
            UPDATE pageperfect.pages p SET html = NULL
             WHERE p.id = ANY (ARRAY(SELECT t.id FROM pageperfect.pages t
                                      WHERE t.html IS NOT NULL AND t.fetched_at < pg_catalog.now() - target.retention
                                      LIMIT max_rows_per_table));
        ELSE
            EXECUTE pg_catalog.format(
                'DELETE FROM pageperfect.%1$I WHERE ctid = ANY (ARRAY(SELECT t.ctid FROM pageperfect.%1$I t WHERE t.%2$I < $1 AND %3$s LIMIT $2))',
                target.table_name, target.time_column, target.extra_condition)
              USING pg_catalog.now() - target.retention, max_rows_per_table;
        END IF;
        GET DIAGNOSTICS deleted = ROW_COUNT;
        IF target.table_name = 'job_run_details' THEN
            -- And the finished runs of each job beyond its newest run_details_per_job runs.
            DELETE FROM pageperfect.job_run_details d
             WHERE d.runid = ANY (ARRAY(
                   SELECT o.runid
                     FROM pageperfect.job j
                    CROSS JOIN LATERAL (SELECT c.runid FROM pageperfect.job_run_details c WHERE c.jobid = j.jobid
                                         ORDER BY c.runid DESC OFFSET keep_per_job LIMIT 1) cutoff
                    CROSS JOIN LATERAL (SELECT o.runid FROM pageperfect.job_run_details o
                                         WHERE o.jobid = j.jobid AND o.runid <= cutoff.runid
                                           AND o.status IN ('succeeded', 'failed', 'skipped')
                                         LIMIT max_rows_per_table) o
                    LIMIT max_rows_per_table));
            GET DIAGNOSTICS beyond_count = ROW_COUNT;
            deleted := deleted + beyond_count;
        END IF;
        IF deleted > 0 OR max_rows_per_table IS NULL THEN
            INSERT INTO pageperfect.cleanup_logs (table_name, deleted_count, retention)
            VALUES (target.table_name, deleted, target.retention);
        END IF;
        summary := summary || pg_catalog.jsonb_build_object(target.table_name, deleted);
    END LOOP;
    RETURN pg_catalog.jsonb_build_object('deleted', summary);
END
$$;
ALTER FUNCTION pageperfect.trigger_cleanup(int) SET search_path = pg_catalog, pg_temp;
CREATE OR REPLACE FUNCTION pageperfect.replace_seeded_row() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- The UPDATE is built from the table's own column names, each quote_ident()ed, and the key
-- column the trigger names: @plpgsql_check_options: security_warnings = off
DECLARE
    key_column text := TG_ARGV[0];
    columns text;
BEGIN
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO columns
      FROM pg_attribute a
     WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
    EXECUTE format('UPDATE %I.%I AS t SET (%s) = (SELECT %s FROM (SELECT ($1).*) AS n) WHERE t.%I = ($1).%I',
                   TG_TABLE_SCHEMA, TG_TABLE_NAME, columns, columns, key_column, key_column)
        USING NEW;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
-- pgmq's two stubs, where schema pgmq is pageperfect's (not when pgmq itself owns it).
DO $do$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_depend d
                 JOIN pg_catalog.pg_proc p ON p.oid = d.objid AND d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                WHERE d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'pageperfect')
                  AND d.deptype = 'e' AND p.proname = 'create_partitioned'
                  AND p.pronamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = 'pgmq')) THEN
        EXECUTE $sql$CREATE OR REPLACE FUNCTION pgmq.create_partitioned(queue_name text, partition_interval text DEFAULT '10000',
                                                            retention_interval text DEFAULT '100000', premake integer DEFAULT 4)
RETURNS void
LANGUAGE plpgsql AS $$
-- pgmq's signature, refused whatever its arguments:
-- @plpgsql_check_options: extra_warnings = off
BEGIN
    RAISE EXCEPTION 'partitioned queues are not supported by pageperfect''s pgmq'
        USING ERRCODE = 'feature_not_supported',
              HINT = 'Use pgmq.create(); its retention settings keep the archive bounded.';
END
$$;$sql$;
        EXECUTE $sql$CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name text, partitioned boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
-- `partitioned` is pgmq's and means nothing here:
-- @plpgsql_check_options: extra_warnings = off
BEGIN
    RAISE WARNING 'drop_queue(queue_name, partitioned) is deprecated; use drop_queue(queue_name)';
    RETURN pageperfect.pgmq_drop_queue(queue_name);
END
$$;$sql$;
        ALTER FUNCTION pgmq.create_partitioned(text, text, text, int) SET search_path = pg_catalog, pg_temp;
        ALTER FUNCTION pgmq.drop_queue(text, boolean) SET search_path = pg_catalog, pg_temp;
    END IF;
END
$do$;

-- sql/finalize.sql: the API's descriptions, and every other function marked internal.
-- cron (pg_cron's names live in schema cron)
COMMENT ON FUNCTION pageperfect.schedule(text, text) IS 'Schedules an unnamed cron job for the caller; returns its jobid (cron.schedule)';
COMMENT ON FUNCTION pageperfect.schedule(text, text, text) IS 'Schedules the caller''s cron job job_name, or changes it if it exists; returns its jobid (cron.schedule)';
COMMENT ON FUNCTION pageperfect.schedule_in_database(text, text, text, text, text, boolean) IS 'Schedules a cron job that runs in another database, as another role for superusers (cron.schedule_in_database)';
COMMENT ON FUNCTION pageperfect.unschedule(bigint) IS 'Removes the caller''s cron job by id; its run history stays (cron.unschedule)';
COMMENT ON FUNCTION pageperfect.unschedule(text) IS 'Removes the caller''s cron job by name; its run history stays (cron.unschedule)';
COMMENT ON FUNCTION pageperfect.alter_job(bigint, text, text, text, text, boolean) IS 'Changes a cron job''s schedule, command, database, role or active flag (cron.alter_job)';
COMMENT ON FUNCTION pageperfect.alter_job_policy(text, interval, integer, interval, boolean, text, text, text) IS 'Sets a job''s timeout, attempts, retry backoff, time zone, overlap and missed-run policies; NULLs keep the current value';
COMMENT ON FUNCTION pageperfect.run_job_now(text) IS 'Queues a run of the caller''s job now, whatever its schedule; returns the runid';
COMMENT ON FUNCTION pageperfect.cancel_run(bigint) IS 'Cancels a queued or running run of one of the caller''s jobs; false when it had ended';
COMMENT ON FUNCTION pageperfect.toggle_cron_job(text, boolean) IS 'Turns the caller''s job on or off';
COMMENT ON FUNCTION pageperfect.next_runs(text, timestamp with time zone, integer, text) IS 'The next times a schedule fires after a time, in a time zone';
COMMENT ON FUNCTION pageperfect.validate_schedule(text) IS 'Raises pg_cron''s error, with the field at fault, unless the text is a valid schedule';
COMMENT ON FUNCTION pageperfect.validate_command(text) IS 'Raises an error unless the text is a command a job may run (not empty, within the size limit)';
COMMENT ON FUNCTION pageperfect.validate_timezone(text) IS 'Raises an error unless the text is an IANA time zone name (NULL passes)';
COMMENT ON FUNCTION pageperfect.manage_cron_jobs() IS 'The caller''s jobs, each with its next tick and its last run''s outcome';
COMMENT ON FUNCTION pageperfect.get_cron_job_status() IS 'One row: the caller''s jobs, active and failing, and their last and next runs';
COMMENT ON FUNCTION pageperfect.get_scheduler_health() IS 'A row per job (runs of the last day) and per worker; an extension row while library and SQL versions differ';
COMMENT ON FUNCTION pageperfect.job_runs(text, integer) IS 'The latest runs of the caller''s job, skipped ones included';
COMMENT ON FUNCTION pageperfect.worker_health() IS 'Each background worker with its status (healthy, stalled, down, standby) and heartbeat';
COMMENT ON FUNCTION pageperfect.extension_version_advice() IS 'NULL while the server''s library serves this database''s SQL version; otherwise what to run';
-- queues (pgmq's names live in schema pgmq)
COMMENT ON FUNCTION pageperfect.create_queue(text) IS 'Creates a queue owned by the caller (idempotent) (pgmq.create)';
COMMENT ON FUNCTION pageperfect.send(text, jsonb, integer, integer, jsonb) IS 'Sends a message, after a delay, with a priority and headers; returns its id (pgmq.send)';
COMMENT ON FUNCTION pageperfect.send_batch(text, jsonb[], integer, integer, jsonb[]) IS 'Sends messages in one call; returns their ids (pgmq.send_batch)';
COMMENT ON FUNCTION pageperfect.read(text, integer, integer, jsonb) IS 'Reads up to qty visible messages, highest priority then oldest, hiding them for vt seconds (pgmq.read)';
COMMENT ON FUNCTION pageperfect.read_with_poll(text, integer, integer, integer, integer, jsonb) IS 'Reads, waiting up to max_poll_seconds for a message; a committed send wakes it (pgmq.read_with_poll)';
COMMENT ON FUNCTION pageperfect.pop(text, integer) IS 'Reads and deletes up to qty messages at once (pgmq.pop)';
COMMENT ON FUNCTION pageperfect.delete(text, bigint) IS 'Deletes a message; false when there is none (pgmq.delete)';
COMMENT ON FUNCTION pageperfect.delete(text, bigint[]) IS 'Deletes messages; returns the ids deleted (pgmq.delete)';
COMMENT ON FUNCTION pageperfect.archive(text, bigint) IS 'Moves a message to the archive; false when there is none (pgmq.archive)';
COMMENT ON FUNCTION pageperfect.archive(text, bigint[]) IS 'Moves messages to the archive; returns the ids archived (pgmq.archive)';
COMMENT ON FUNCTION pageperfect.set_vt(text, bigint, integer) IS 'Makes a message visible again after vt seconds from now (pgmq.set_vt)';
COMMENT ON FUNCTION pageperfect.purge_queue(text) IS 'Deletes every message of the queue; returns how many (pgmq.purge_queue)';
COMMENT ON FUNCTION pageperfect.drop_queue(text) IS 'Drops the queue with its messages and archive (pgmq.drop_queue)';
COMMENT ON FUNCTION pageperfect.pause_queue(text) IS 'Reads return nothing until resume_queue; sends are still accepted';
COMMENT ON FUNCTION pageperfect.resume_queue(text) IS 'Ends pause_queue';
COMMENT ON FUNCTION pageperfect.set_dead_letter(text, integer, text) IS 'Moves a message read max_reads times to a dead-letter queue (or the archive) instead of reading it again';
COMMENT ON FUNCTION pageperfect.metrics(text) IS 'Length, oldest and newest message age and messages ever sent of one queue (pgmq.metrics)';
COMMENT ON FUNCTION pageperfect.metrics_all() IS 'metrics() of every queue the caller may use (pgmq.metrics_all)';
COMMENT ON FUNCTION pageperfect.list_queues() IS 'The queues the caller may use (pgmq.list_queues)';
-- jobs and the pipeline
COMMENT ON FUNCTION pageperfect.run_workflow(text, text[], boolean, integer, boolean) IS 'Starts the PagePerfect workflow on a URL for the caller; returns the job id';
COMMENT ON FUNCTION pageperfect.process_urls(integer, interval) IS 'Starts the workflow on the caller''s pages not processed for a while, at most lim of them';
COMMENT ON FUNCTION pageperfect.enqueue_job(text, text[], jsonb, integer, text[], boolean, text, interval) IS 'Queues a job of named stages for the caller, optionally unique by key; returns the job id';
COMMENT ON FUNCTION pageperfect.cancel_job(uuid) IS 'Cancels the caller''s job: its waiting stages end and a running one is not retried';
COMMENT ON FUNCTION pageperfect.retry_dead_letter(bigint) IS 'Runs a dead-lettered stage of the caller''s job again';
COMMENT ON FUNCTION pageperfect.list_dead_letters(boolean, integer) IS 'The caller''s dead letters, newest first';
COMMENT ON FUNCTION pageperfect.workflow_detail(uuid) IS 'One job with each stage''s status, attempts, error and times, and its draft';
COMMENT ON FUNCTION pageperfect.processor_status() IS 'Per stage: concurrency, queued, processing, waiting to retry, dead, completed in the last hour';
COMMENT ON FUNCTION pageperfect.execution_insights(timestamp with time zone, timestamp with time zone) IS 'Per stage over a time range: attempts, failures, throughput and latency percentiles';
COMMENT ON FUNCTION pageperfect.pause_stage(text) IS 'No work of the stage is claimed until resume_stage';
COMMENT ON FUNCTION pageperfect.resume_stage(text) IS 'Ends pause_stage';
COMMENT ON FUNCTION pageperfect.dbscan_cosine(real[], integer, double precision, integer) IS 'DBSCAN with cosine distance over n vectors of dims values; a label per vector (noise -1), as scikit-learn numbers them';
-- SEO insights
COMMENT ON FUNCTION pageperfect.content_decay(text, interval, integer) IS 'The caller''s pages of a property that lost clicks against their best window, split into demand, position and other';
COMMENT ON FUNCTION pageperfect.cannibalization(text, double precision, interval) IS 'Query clusters for which several of the caller''s pages compete, with what one strong page would get';
COMMENT ON FUNCTION pageperfect.link_suggestions(text, integer, double precision) IS 'Paragraphs of the owner''s other pages that could link to this page, with an anchor text';
COMMENT ON FUNCTION pageperfect.content_score(text) IS 'The page''s content score (0-100) with its coverage, opportunity, CTR and freshness parts';
COMMENT ON FUNCTION pageperfect.latest_content_scores(integer) IS 'Each of the caller''s pages with its latest content score and its latest draft''s scores, lowest first';
-- Search Console and the CTR curve
COMMENT ON FUNCTION pageperfect.set_gsc_credentials(text) IS 'Checks and stores the Search Console service account''s JSON key; returns its client_email';
COMMENT ON FUNCTION pageperfect.ingest_gsc(date, text[], date) IS 'Queues a Search Console ingestion (the recent days and every day not final yet, or one day); returns the job';
COMMENT ON FUNCTION pageperfect.import_gsc_csv(text, text) IS 'Loads a Search Console export file''s rows for a property; returns the rows loaded';
COMMENT ON FUNCTION pageperfect.search_console_sites() IS 'The Search Console properties whose data the caller may use';
COMMENT ON FUNCTION pageperfect.recalibrate_ctr(integer) IS 'Fits the CTR curve to the clicks of the last days and stores it; returns alpha, beta and the rows used';
COMMENT ON FUNCTION pageperfect.expected_ctr(double precision) IS 'The click-through rate the CTR curve expects at a position';
COMMENT ON FUNCTION pageperfect.set_cron_secret(text, text) IS 'Stores a salted PBKDF2 hash of a secret that callers of cron endpoints present';
COMMENT ON FUNCTION pageperfect.verify_cron_secret(text, text) IS 'Whether a presented secret matches the stored one, compared in constant time';
-- HTTP (pg_net's names live in schema net)
COMMENT ON FUNCTION pageperfect.http_get(text, jsonb, jsonb, integer, integer) IS 'Queues a GET sent after commit through the SSRF guard; returns the request id (net.http_get)';
COMMENT ON FUNCTION pageperfect.http_post(text, jsonb, jsonb, jsonb, integer, integer) IS 'Queues a POST with a JSON body; returns the request id (net.http_post)';
COMMENT ON FUNCTION pageperfect.http_delete(text, jsonb, jsonb, integer, jsonb, integer) IS 'Queues a DELETE; returns the request id (net.http_delete)';
COMMENT ON FUNCTION pageperfect.http_collect_response(bigint, boolean) IS 'The response of one of the caller''s requests, or why there is none yet (net.http_collect_response)';
-- the default jobs, monitoring and metrics
COMMENT ON FUNCTION pageperfect.initialize_scheduler() IS 'Creates the missing default jobs (automation, sweeper, monitoring, metrics, health, cleanup, Search Console, CTR)';
COMMENT ON FUNCTION pageperfect.trigger_content_automation(integer, interval) IS 'Starts the workflow for due pages (the content_pipeline_main job)';
COMMENT ON FUNCTION pageperfect.trigger_sweeper() IS 'Requeues the work of dead workers, fails overdue work and vanished runs; logs to sweeper_logs';
COMMENT ON FUNCTION pageperfect.trigger_monitoring() IS 'Opens, refreshes and resolves monitoring alerts, posting new ones to the webhook';
COMMENT ON FUNCTION pageperfect.trigger_metrics_collection(interval) IS 'Stores stage, queue and cron metrics in metrics_data';
COMMENT ON FUNCTION pageperfect.trigger_health_checks() IS 'Checks the database, queue, job engine, cron jobs and workers; stores the results in health_checks';
COMMENT ON FUNCTION pageperfect.trigger_cleanup(integer) IS 'Deletes what outlived its retention parameter in every table that grows; logs counts to cleanup_logs';
COMMENT ON FUNCTION pageperfect.metric_samples() IS 'The current value of every Prometheus metric the caller may see';
COMMENT ON FUNCTION pageperfect.cron_duration_buckets() IS 'The bucket bounds of the cron run duration histogram';
-- Every other function is internal.
DO $$
DECLARE
    routine regprocedure;
BEGIN
    FOR routine IN
        SELECT p.oid FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'pageperfect'::pg_catalog.regnamespace
           AND pg_catalog.obj_description(p.oid, 'pg_proc') IS NULL
    LOOP
        EXECUTE pg_catalog.format('COMMENT ON FUNCTION %s IS %L', routine,
                                  'Internal to pageperfect: not part of its API; it may change in any release');
    END LOOP;
END
$$;
