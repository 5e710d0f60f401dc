-- monitor API: the trigger_* functions the default cron jobs call, and initialize_scheduler()
-- that creates those jobs. Each trigger does its work at once and returns a jsonb summary.
-- They are for administrators (the jobs run as the superuser who created them).

-- Posting a new alert to the webhook is a stage (src/monitor/notify_alert.rs), so that the HTTP
-- call happens on a worker outside any transaction and a failed post is retried.
INSERT INTO pageperfect.stage_config (stage, position, max_attempts, retry_delay_seconds, concurrency, timeout_seconds)
VALUES ('notify_alert', NULL, 5, 10, 2, 60);

-- Starts the pipeline for the pages that are due (process_urls) and reports the queue.
CREATE FUNCTION pageperfect.trigger_content_automation(batch_size int DEFAULT 50, recrawl_after interval DEFAULT '2 days')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    started int;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 OR recrawl_after IS NULL OR recrawl_after < interval '0' THEN
        RAISE EXCEPTION 'batch_size must be at least 1 and recrawl_after not negative (got %, %)',
                        coalesce(batch_size::text, 'NULL'), coalesce(recrawl_after::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    started := pageperfect.process_urls(batch_size, recrawl_after);
    RETURN pg_catalog.jsonb_build_object(
        'workflows_started', started,
        'jobs', (SELECT coalesce(pg_catalog.jsonb_object_agg(s.status, s.n), '{}')
                   FROM (SELECT j.status, count(*) AS n FROM pageperfect.jobs j
                          WHERE j.status IN ('queued', 'processing', 'failed') GROUP BY j.status) s));
END
$$;

-- Puts work whose worker died back in the queue, fails work past its time limit (it is retried
-- or dead-lettered like any failure), fails cron runs whose process is gone while the scheduler
-- is down (a live scheduler settles its own runs), and logs what it did to sweeper_logs.
CREATE FUNCTION pageperfect.trigger_sweeper()
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

-- The conditions monitoring watches, each with a key that stays the same while it lasts.
CREATE FUNCTION pageperfect.current_alert_conditions()
RETURNS TABLE (alert_key text, alert_type text, severity text, message text, data jsonb)
LANGUAGE sql STABLE AS $$
    WITH settings AS (
        SELECT coalesce((SELECT (p.value #>> '{}')::float8 FROM pageperfect.parameters p WHERE p.name = 'alert_failure_rate'), 0.2) AS max_failure_rate,
               pg_catalog.make_interval(mins => coalesce((SELECT (p.value #>> '{}')::int FROM pageperfect.parameters p
                                                            WHERE p.name = 'stuck_after_minutes'), 30)) AS stuck_after
    ), attempts AS (
        -- Stage attempts and cron runs that ended in the last hour.
        SELECT 'pipeline' AS source, count(*) FILTER (WHERE e.event = 'failed') AS failed, count(*) AS total
          FROM pageperfect.job_events e
         WHERE e.event IN ('completed', 'failed') AND e.created_at > pg_catalog.now() - interval '1 hour'
        UNION ALL
        SELECT 'cron', count(*) FILTER (WHERE d.status = 'failed'), count(*)
          FROM pageperfect.job_run_details d
         WHERE d.status IN ('succeeded', 'failed') AND d.end_time > pg_catalog.now() - interval '1 hour'
    )
    SELECT 'failure_rate:' || a.source, 'failure_rate',
           CASE WHEN a.failed::float8 / a.total > 2 * s.max_failure_rate THEN 'critical' ELSE 'warning' END,
           pg_catalog.format('%s failure rate is %s%% over the last hour (%s of %s failed; the limit is %s%%)',
                             CASE a.source WHEN 'pipeline' THEN 'Pipeline stage' ELSE 'Cron job' END,
                             round(100.0 * a.failed / a.total), a.failed, a.total, round(100 * s.max_failure_rate::numeric)),
           pg_catalog.jsonb_build_object('failed', a.failed, 'total', a.total)
      FROM attempts a, settings s
     WHERE a.total >= 5 AND a.failed::float8 / a.total > s.max_failure_rate
    UNION ALL
    SELECT 'dead_letters', 'dead_letters', 'warning',
           pg_catalog.format('%s dead letter(s) in the last 24 hours, not retried; the latest: %s', count(*),
                             (pg_catalog.array_agg(coalesce(d.stage || ': ', '') || coalesce(d.error, d.reason) ORDER BY d.id DESC))[1]),
           pg_catalog.jsonb_build_object('count', count(*), 'latest_id', max(d.id))
      FROM pageperfect.dead_letters d
     WHERE d.retried_at IS NULL AND d.routed_at > pg_catalog.now() - interval '24 hours'
    HAVING count(*) > 0
    UNION ALL
    SELECT 'stuck_work', 'stuck_work', 'warning',
           pg_catalog.format('%s stage(s) and %s cron run(s) have been processing for more than %s',
                             w.stages, w.runs, (SELECT s.stuck_after FROM settings s)),
           pg_catalog.jsonb_build_object('stages', w.stages, 'runs', w.runs)
      FROM (SELECT (SELECT count(*) FROM pageperfect.job_stages st
                     WHERE st.status = 'processing' AND st.started_at < pg_catalog.now() - s.stuck_after) AS stages,
                   (SELECT count(*) FROM pageperfect.job_run_details d
                     WHERE d.status IN ('running', 'sending', 'connecting') AND d.start_time < pg_catalog.now() - s.stuck_after) AS runs
              FROM settings s) w
     WHERE w.stages + w.runs > 0
    UNION ALL
    SELECT 'worker_down:' || h.component, 'worker_down', 'critical',
           pg_catalog.format('Worker %s is %s (last heartbeat: %s)', h.component, h.status, coalesce(h.last_heartbeat::text, 'never')),
           pg_catalog.jsonb_build_object('component', h.component, 'status', h.status, 'pid', h.pid)
      FROM pageperfect.worker_health() h
     WHERE h.status <> 'healthy'
    UNION ALL
    SELECT 'worker_blocked:' || w.worker_name, 'worker_blocked', 'warning',
           pg_catalog.format('Worker %s was held up by another session''s lock at %s: %s (it retries; see pg_locks for the holder)',
                             w.worker_name, w.blocked_at, w.blocked_by),
           pg_catalog.jsonb_build_object('component', w.worker_name, 'blocked_at', w.blocked_at, 'error', w.blocked_by)
      FROM pageperfect.blocked_workers() w
    UNION ALL
    -- A site whose latest ingestion of a day failed (a later success for that day clears it).
    SELECT 'gsc_ingestion:' || g.site, 'gsc_ingestion_failed', 'warning',
           pg_catalog.format('Search Console ingestion of %s for %s failed: %s', g.site, g.for_date, g.error),
           pg_catalog.jsonb_build_object('site', g.site, 'for_date', g.for_date, 'job_id', g.job_id)
      FROM (SELECT DISTINCT ON (i.site) i.* FROM pageperfect.gsc_ingestions i
             WHERE i.finished_at > pg_catalog.now() - interval '24 hours'
             ORDER BY i.site, i.finished_at DESC, i.id DESC) g
     WHERE g.status = 'failed'
$$;

-- Opens an alert for each condition that newly holds (and queues its post to
-- pageperfect.alert_webhook_url once), refreshes the open ones that still hold, and resolves
-- the ones that no longer do.
CREATE FUNCTION pageperfect.trigger_monitoring()
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

-- Writes the numbers of the last `window` to metrics_data: per pipeline stage its attempts,
-- throughput, success rate and latency percentiles; per queue its depth and oldest message;
-- for cron, runs, failures and the lag from due time to start.
CREATE FUNCTION pageperfect.trigger_metrics_collection(window_length interval DEFAULT '30 minutes')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    collected_at timestamptz := pg_catalog.now();
    written bigint;
BEGIN
    IF window_length IS NULL OR window_length <= interval '0' THEN
        RAISE EXCEPTION 'window_length must be a positive interval (got %)', coalesce(window_length::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH stage_metrics AS (
        SELECT i.* FROM pageperfect.execution_insights(collected_at - window_length, collected_at) i
    ), cron_metrics AS (
        SELECT count(*) AS runs, count(*) FILTER (WHERE d.status = 'failed') AS failed,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.start_time - d.due_time) * 1000) AS lag_p50,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM d.start_time - d.due_time) * 1000) AS lag_p99
          FROM pageperfect.job_run_details d
         WHERE d.start_time >= collected_at - window_length AND d.start_time < collected_at
    ), rows_ AS (
        SELECT m.name, m.value, pg_catalog.jsonb_build_object('stage', s.stage) AS labels
          FROM stage_metrics s,
               LATERAL (VALUES ('stage_attempts', s.attempts::float8), ('stage_failures', s.failed::float8),
                               ('stage_throughput_per_minute', s.throughput_per_minute), ('stage_success_rate', s.success_rate),
                               ('stage_latency_p50_ms', s.latency_p50_ms), ('stage_latency_p95_ms', s.latency_p95_ms)) AS m (name, value)
        UNION ALL
        SELECT m.name, m.value, pg_catalog.jsonb_build_object('queue', q.queue_name)
          FROM pageperfect.metrics_all() q,
               LATERAL (VALUES ('queue_depth', q.queue_length::float8), ('queue_visible', q.queue_visible_length::float8),
                               ('queue_oldest_message_age_seconds', q.oldest_msg_age_sec::float8)) AS m (name, value)
        UNION ALL
        SELECT m.name, m.value, '{}'::jsonb
          FROM cron_metrics c,
               LATERAL (VALUES ('cron_runs', c.runs::float8), ('cron_failures', c.failed::float8),
                               ('cron_lag_p50_ms', c.lag_p50), ('cron_lag_p99_ms', c.lag_p99)) AS m (name, value)
    )
    INSERT INTO pageperfect.metrics_data (metric_name, value, labels, collected_at)
    SELECT r.name, r.value, r.labels || pg_catalog.jsonb_build_object('window_seconds', extract(epoch FROM window_length)::float8), collected_at
      FROM rows_ r;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN pg_catalog.jsonb_build_object('metrics_written', written, 'collected_at', collected_at,
                                         'window_seconds', extract(epoch FROM window_length)::float8);
END
$$;

-- Checks each component, times the check, and writes one health_checks row per component:
-- the database, the queue, the job engine, the cron jobs and every background worker.
CREATE FUNCTION pageperfect.trigger_health_checks()
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

-- One health_checks row; the response time is from `started` to now.
CREATE FUNCTION pageperfect.record_health(p_component text, p_status text, p_started timestamptz, p_details jsonb)
RETURNS void
LANGUAGE sql VOLATILE AS $$
    INSERT INTO pageperfect.health_checks (component, status, response_time_ms, details, checked_at)
    VALUES (p_component, p_status,
            extract(epoch FROM pg_catalog.clock_timestamp() - p_started) * 1000, p_details, pg_catalog.now())
$$;

-- Deletes what outlived its retention (parameters *_retention_days, run_details_per_job,
-- pg_net.ttl) in every table that grows, and logs per table what it deleted.
-- Pipeline worker 1 calls it every minute with max_rows_per_table (short transactions; only
-- tables where something went are logged); the nightly cron job calls it without a limit.
CREATE FUNCTION pageperfect.trigger_cleanup(max_rows_per_table int DEFAULT NULL)
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

-- Creates the default jobs that are missing (found ones keep their schedule: the operator may
-- have changed it) and lists all nine with what it did.
CREATE FUNCTION pageperfect.initialize_scheduler()
RETURNS TABLE (jobid bigint, job_name text, schedule text, command text, action text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    wanted record;
    found_id bigint;
BEGIN
    FOR wanted IN
        SELECT * FROM (VALUES
            (1, 'content_pipeline_main',            '*/5 * * * *',  'SELECT pageperfect.trigger_content_automation()'),
            (2, 'content_pipeline_sweeper',         '*/15 * * * *', 'SELECT pageperfect.trigger_sweeper()'),
            (3, 'content_pipeline_monitor',         '0 * * * *',    'SELECT pageperfect.trigger_monitoring()'),
            (4, 'content_pipeline_metrics',         '*/30 * * * *', 'SELECT pageperfect.trigger_metrics_collection()'),
            (5, 'content_pipeline_health',          '*/10 * * * *', 'SELECT pageperfect.trigger_health_checks()'),
            (6, 'content_pipeline_cleanup',         '0 2 * * *',    'SELECT pageperfect.trigger_cleanup()'),
            (7, 'pageperfect-cron-ingest-gsc',      '0 2 * * *',    'SELECT pageperfect.ingest_gsc()'),
            (8, 'pageperfect-cron-process-urls',    '0 * * * *',    'SELECT pageperfect.process_urls()'),
            (9, 'pageperfect-cron-recalibrate-ctr', '0 3 * * 0',    'SELECT pageperfect.recalibrate_ctr()'))
            AS d (ordinal, name, schedule, command)
        ORDER BY d.ordinal
    LOOP
        SELECT j.jobid INTO found_id FROM pageperfect.job j WHERE j.jobname = wanted.name AND j.username = CURRENT_USER;
        IF found_id IS NULL THEN
            found_id := pageperfect.schedule(wanted.name, wanted.schedule, wanted.command);
            action := 'created';
        ELSE
            action := 'exists';
        END IF;
        SELECT j.jobid, j.jobname, j.schedule, j.command INTO jobid, job_name, schedule, command
          FROM pageperfect.job j WHERE j.jobid = found_id;
        RETURN NEXT;
    END LOOP;
END
$$;

-- What operators watch from outside: views and one function for dashboards and Prometheus
-- (pageperfect-web reads them). Each shows the reader only its own rows.

-- Open alerts. Worker alerts concern every tenant; the others (failure rates, dead letters,
-- stuck work, Search Console ingestion) summarise every role's work, so only superusers see
-- them. A plain (security-barrier) view: it reads the table with its owner's rights and
-- filters on the reader, CURRENT_USER.
CREATE VIEW pageperfect.open_alerts WITH (security_barrier = true) AS
    SELECT a.id, a.alert_type, a.severity, a.message, a.created_at, a.updated_at
      FROM pageperfect.monitoring_alerts a
     WHERE a.status = 'open'
       AND (a.alert_type IN ('worker_down', 'worker_blocked')
            OR EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER AND r.rolsuper));

-- Each queue's depth as trigger_metrics_collection() sampled it (the default job
-- content_pipeline_metrics: every 30 minutes), for the queues the reader may use.
CREATE VIEW pageperfect.queue_backlog_history WITH (security_barrier = true) AS
    SELECT q.queue_name, m.collected_at, m.value::bigint AS depth
      FROM pageperfect.metrics_data m
      JOIN pageperfect.queues q ON q.queue_name = m.labels ->> 'queue'
     WHERE m.metric_name = 'queue_depth'
       AND pg_catalog.pg_has_role(CURRENT_USER, q.owner, 'USAGE');

GRANT SELECT ON pageperfect.open_alerts, pageperfect.queue_backlog_history TO pageperfect_user;

-- The run-duration histogram's upper bounds, in seconds.
CREATE FUNCTION pageperfect.cron_duration_buckets() RETURNS float8[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT '{0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,30,60,300,1800}'::float8[]
$$;

-- Every sample of pageperfect's Prometheus metrics that the caller may see, as (metric, labels,
-- value) rows; pageperfect-web writes them in the text exposition format. Counters count what
-- the kept history holds (retention deletes old runs and events, so they can go down: Prometheus
-- treats that as a reset). Cron jobs are labelled by name (or 'job <id>' when unnamed) and id.
CREATE FUNCTION pageperfect.metric_samples()
RETURNS TABLE (metric text, labels jsonb, value float8)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH jobs AS (
        SELECT j.jobid, coalesce(j.jobname, 'job ' || j.jobid) AS name, j.active FROM pageperfect.job j
    ), runs AS (
        SELECT d.jobid, coalesce(j.name, 'job ' || d.jobid) AS name, d.status,
               extract(epoch FROM d.end_time - d.start_time)::float8 AS duration
          FROM pageperfect.job_run_details d LEFT JOIN jobs j ON j.jobid = d.jobid
         WHERE d.status IN ('succeeded', 'failed', 'cancelled', 'skipped')
    ), timed AS (
        SELECT r.* FROM runs r WHERE r.status IN ('succeeded', 'failed') AND r.duration IS NOT NULL
    ), bounds AS (
        SELECT b.le, b.le::text AS le_text FROM unnest(pageperfect.cron_duration_buckets()) AS b (le)
        UNION ALL SELECT 'Infinity'::float8, '+Inf'
    ), latest AS (
        SELECT DISTINCT ON (d.jobid) d.jobid, extract(epoch FROM d.start_time - d.due_time)::float8 AS lag
          FROM pageperfect.job_run_details d
         WHERE d.start_time IS NOT NULL AND d.due_time IS NOT NULL
         ORDER BY d.jobid, d.runid DESC
    ), queues AS (
        SELECT * FROM pageperfect.metrics_all()
    )
    SELECT 'pageperfect_cron_runs_total', jsonb_build_object('job', r.name, 'jobid', r.jobid::text, 'status', r.status), count(*)::float8
      FROM runs r GROUP BY r.jobid, r.name, r.status
    UNION ALL
    SELECT 'pageperfect_cron_run_duration_seconds_bucket', jsonb_build_object('job', j.name, 'jobid', j.jobid::text, 'le', b.le_text),
           (SELECT count(*) FROM timed t WHERE t.jobid = j.jobid AND t.duration <= b.le)::float8
      FROM (SELECT DISTINCT t.jobid, t.name FROM timed t) j, bounds b
    UNION ALL
    SELECT 'pageperfect_cron_run_duration_seconds_sum', jsonb_build_object('job', t.name, 'jobid', t.jobid::text), sum(t.duration)
      FROM timed t GROUP BY t.jobid, t.name
    UNION ALL
    SELECT 'pageperfect_cron_run_duration_seconds_count', jsonb_build_object('job', t.name, 'jobid', t.jobid::text), count(*)::float8
      FROM timed t GROUP BY t.jobid, t.name
    UNION ALL
    SELECT 'pageperfect_cron_lag_seconds', jsonb_build_object('job', j.name, 'jobid', j.jobid::text), l.lag
      FROM latest l JOIN jobs j ON j.jobid = l.jobid
    UNION ALL
    SELECT 'pageperfect_cron_job_active', jsonb_build_object('job', j.name, 'jobid', j.jobid::text), CASE WHEN j.active THEN 1 ELSE 0 END
      FROM jobs j
    UNION ALL
    SELECT 'pageperfect_queue_messages', jsonb_build_object('queue', q.queue_name, 'state', s.state), s.n::float8
      FROM queues q,
           LATERAL (VALUES ('visible', q.queue_visible_length), ('invisible', q.queue_length - q.queue_visible_length)) AS s (state, n)
    UNION ALL
    SELECT 'pageperfect_queue_sent_messages_total', jsonb_build_object('queue', q.queue_name), q.total_messages::float8
      FROM queues q
    UNION ALL
    SELECT 'pageperfect_queue_oldest_message_age_seconds', jsonb_build_object('queue', q.queue_name), coalesce(q.oldest_msg_age_sec, 0)::float8
      FROM queues q
    UNION ALL
    SELECT 'pageperfect_stage_attempts_total', jsonb_build_object('stage', coalesce(e.stage, '?'), 'outcome', e.event), count(*)::float8
      FROM pageperfect.job_events e
     WHERE e.event IN ('completed', 'failed')
     GROUP BY e.stage, e.event
    UNION ALL
    SELECT 'pageperfect_stage_work_items', jsonb_build_object('stage', p.stage, 'state', s.state), s.n::float8
      FROM pageperfect.processor_status() p,
           LATERAL (VALUES ('queued', p.queued), ('processing', p.processing), ('waiting_retry', p.waiting_retry), ('dead', p.dead)) AS s (state, n)
    UNION ALL
    SELECT 'pageperfect_dead_letters', '{}'::jsonb, count(*)::float8
      FROM pageperfect.dead_letters d WHERE d.retried_at IS NULL
    UNION ALL
    SELECT 'pageperfect_worker_up', jsonb_build_object('worker', h.component), CASE WHEN h.status = 'healthy' THEN 1 ELSE 0 END
      FROM pageperfect.worker_health() h
    UNION ALL
    SELECT 'pageperfect_worker_heartbeat_age_seconds', jsonb_build_object('worker', h.component),
           extract(epoch FROM clock_timestamp() - h.last_heartbeat)::float8
      FROM pageperfect.worker_health() h WHERE h.last_heartbeat IS NOT NULL
    UNION ALL
    SELECT 'pageperfect_alerts_open', jsonb_build_object('severity', s.severity),
           (SELECT count(*) FROM pageperfect.open_alerts a WHERE a.severity = s.severity)::float8
      FROM (VALUES ('info'), ('warning'), ('critical')) AS s (severity)
$$;
