-- finalize: the pg_cron compatibility schema, function privileges, removal of install-time
-- helpers, and the API's descriptions (public functions say what they do; the rest are marked
-- internal). Runs last.

-- pg_cron's names. They are built in a staging schema and renamed to `cron` only when no such
-- schema exists; when pg_cron already owns `cron`, the staging copy is dropped again and the
-- pageperfect.* names are the way in.
CREATE SCHEMA pageperfect_cron_staging;
CREATE VIEW pageperfect_cron_staging.job WITH (security_invoker = true) AS
    SELECT jobid, schedule, command, nodename, nodeport, database, username, active, jobname
      FROM pageperfect.job;
CREATE VIEW pageperfect_cron_staging.job_run_details WITH (security_invoker = true) AS
    SELECT jobid, runid, job_pid, database, username, command, status, return_message, start_time, end_time
      FROM pageperfect.job_run_details;
-- pg_cron's functions, backed by the same C symbols as their pageperfect.* twins.
CREATE FUNCTION pageperfect_cron_staging.schedule(schedule text, command text) RETURNS bigint
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'schedule_unnamed_wrapper';
CREATE FUNCTION pageperfect_cron_staging.schedule(job_name text, schedule text, command text) RETURNS bigint
    LANGUAGE c AS 'MODULE_PATHNAME', 'schedule_named_wrapper';
CREATE FUNCTION pageperfect_cron_staging.schedule_in_database(job_name text, schedule text, command text,
        database text, username text DEFAULT NULL, active boolean DEFAULT true) RETURNS bigint
    LANGUAGE c AS 'MODULE_PATHNAME', 'schedule_in_database_wrapper';
CREATE FUNCTION pageperfect_cron_staging.unschedule(job_id bigint) RETURNS boolean
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'unschedule_by_id_wrapper';
CREATE FUNCTION pageperfect_cron_staging.unschedule(job_name text) RETURNS boolean
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'unschedule_by_name_wrapper';
CREATE FUNCTION pageperfect_cron_staging.alter_job(job_id bigint, schedule text DEFAULT NULL,
        command text DEFAULT NULL, database text DEFAULT NULL, username text DEFAULT NULL,
        active boolean DEFAULT NULL) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'alter_job_wrapper';
-- As in pg_cron, an administrator decides who may run jobs in other databases or alter them.
-- Roles read run history but do not delete it: a DELETE holding a running job's row would stall
-- the scheduler's update of it (cleanup deletes old runs).
REVOKE ALL ON FUNCTION pageperfect_cron_staging.alter_job(bigint, text, text, text, text, boolean),
    pageperfect_cron_staging.schedule_in_database(text, text, text, text, text, boolean) FROM PUBLIC;
GRANT SELECT ON pageperfect_cron_staging.job, pageperfect_cron_staging.job_run_details TO PUBLIC;
GRANT USAGE ON SCHEMA pageperfect_cron_staging TO pageperfect_user;

-- What a role may run: only superusers run a pageperfect.* function not named here (the
-- engine's transitions, the trigger_* jobs, Search Console writes, secrets, alter_job, …).
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA pageperfect FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- cron
    pageperfect.schedule(text, text), pageperfect.schedule(text, text, text),
    pageperfect.unschedule(bigint), pageperfect.unschedule(text),
    pageperfect.alter_job_policy(text, interval, int, interval, boolean, text, text, text), pageperfect.run_job_now(text), pageperfect.cancel_run(bigint),
    pageperfect.toggle_cron_job(text, boolean), pageperfect.next_runs(text, timestamptz, int, text),
    pageperfect.validate_timezone(text),
    pageperfect.validate_schedule(text), pageperfect.validate_command(text), pageperfect.manage_cron_jobs(), pageperfect.get_cron_job_status(),
    pageperfect.get_scheduler_health(), pageperfect.extension_version_advice(), pageperfect.worker_health(), pageperfect.job_runs(text, int),
    -- queues
    pageperfect.create_queue(text), pageperfect.send(text, jsonb, int, int, jsonb), pageperfect.send_batch(text, jsonb[], int, int, jsonb[]),
    pageperfect.read(text, int, int, jsonb), pageperfect.read_with_poll(text, int, int, int, int, jsonb), pageperfect.pop(text, int),
    pageperfect.delete(text, bigint), pageperfect.delete(text, bigint[]),
    pageperfect.archive(text, bigint), pageperfect.archive(text, bigint[]), pageperfect.set_vt(text, bigint, int),
    pageperfect.purge_queue(text), pageperfect.drop_queue(text), pageperfect.metrics(text),
    pageperfect.pause_queue(text), pageperfect.resume_queue(text), pageperfect.set_dead_letter(text, int, text),
    pageperfect.metrics_all(), pageperfect.list_queues(), pageperfect.queue_must_allow(text, name),
    -- pgmq's schema (sql/pgmq.sql) over the same functions
    pageperfect.pgmq_seconds_until(timestamptz), pageperfect.pgmq_validate_queue_name(text),
    pageperfect.pgmq_send_batch(text, jsonb[], jsonb[], int), pageperfect.pgmq_queues(), pageperfect.pgmq_drop_queue(text),
    pageperfect.check_seconds(text, int),
    -- jobs and the pipeline
    pageperfect.enqueue_job(text, text[], jsonb, int, text[], boolean, text, interval), pageperfect.retry_dead_letter(bigint),
    pageperfect.cancel_job(uuid),
    pageperfect.run_workflow(text, text[], boolean, int, boolean), pageperfect.process_urls(int, interval),
    pageperfect.processor_status(), pageperfect.execution_insights(timestamptz, timestamptz),
    pageperfect.list_dead_letters(boolean, int), pageperfect.workflow_detail(uuid),
    -- SEO insights (each as its caller: only the caller's pages and Search Console properties)
    pageperfect.content_decay(text, interval, int), pageperfect.cannibalization(text, float8, interval),
    pageperfect.link_suggestions(text, int, float8), pageperfect.content_score(text),
    pageperfect.search_console_sites(), pageperfect.latest_content_scores(int),
    -- dashboards and Prometheus (pageperfect-web)
    pageperfect.metric_samples(), pageperfect.cron_duration_buckets(),
    pageperfect.dbscan_cosine(real[], int, float8, int), pageperfect.expected_ctr(float8),
    -- the Search Console / queue / cron functions above are for pageperfect_user only
    pageperfect.http_collect_response(bigint, boolean)
TO pageperfect_user;
-- Durable HTTP is for every role, as pg_net's functions are: each request is its caller's, and
-- the gate (queue_http_request) applies the SSRF guard and the time and in-flight limits. The
-- net.* functions call these, so every role may also find names in schema pageperfect (it gets
-- no other right there: each function, table and view keeps its own grants).
GRANT USAGE ON SCHEMA pageperfect TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    pageperfect.http_get(text, jsonb, jsonb, int, int), pageperfect.http_post(text, jsonb, jsonb, jsonb, int, int),
    pageperfect.http_delete(text, jsonb, jsonb, int, jsonb, int), pageperfect.net_collect_response(bigint, boolean),
    pageperfect.queue_http_request(text, text, jsonb, jsonb, bytea, int, int), pageperfect.wake_pipeline_workers(),
    pageperfect.pipeline_workers_up(), pageperfect.urlencode(text), pageperfect.url_with_params(text, text[])
TO PUBLIC;

CREATE FUNCTION pageperfect.adopt_compat_schema(staging text, target text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = target) THEN
        EXECUTE format('DROP SCHEMA %I CASCADE', staging);
        -- CREATE EXTENSION raises client_min_messages to WARNING while its script runs, which
        -- would swallow this NOTICE; lower it for the rest of the script (it is restored after).
        PERFORM pg_catalog.set_config('client_min_messages', 'notice', true);
        RAISE NOTICE 'schema "%" already exists (another extension owns it), so pageperfect leaves it alone; use the same objects in schema pageperfect', target;
    ELSE
        EXECUTE format('ALTER SCHEMA %I RENAME TO %I', staging, target);
    END IF;
END
$$;
SELECT pageperfect.adopt_compat_schema('pageperfect_cron_staging', 'cron');
SELECT pageperfect.adopt_compat_schema('pageperfect_net_staging', 'net');
SELECT pageperfect.adopt_compat_schema('pageperfect_pgmq_staging', 'pgmq');

DROP FUNCTION pageperfect.adopt_compat_schema(text, text);
DROP FUNCTION pageperfect.scope_rows_to_parent(text[], text, text, text);

-- Every function of the extension resolves names through pg_catalog and pg_temp only (pg_temp
-- last, and never for functions or operators), whoever calls it with whatever search_path: a
-- caller's schemas cannot plant an operator, function or type into them.
--
-- Except the queue's hot path: these run inside the queue functions' as_owner, whose
-- search_path is pinned already, or for superusers, and every name, operator and type in them is
-- schema-qualified instead. A SET clause on each would save and restore the settings once more
-- per call (and per nested call): batch-1 send/read/delete went from 0.60 to 0.68 of plain SQL
-- without them. pg_regress/sql/privileges.sql calls each with a hostile search_path.
-- The same goes for the queue's Rust gates (src/queue/gate.rs): they resolve no name before
-- as_owner pins the search_path, and a SET clause on them cost a second save and restore of
-- every setting per call.
DO $$
DECLARE
    routine regprocedure;
BEGIN
    FOR routine IN
        SELECT p.oid FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid
                                     AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e'
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pageperfect'
         WHERE p.prokind IN ('f', 'p')
           AND NOT EXISTS (SELECT FROM pg_catalog.unnest(p.proconfig) c WHERE c LIKE 'search\_path=%')
           AND p.oid <> ALL (ARRAY[
                   'pageperfect.queue_must_allow(text, name)', 'pageperfect.check_seconds(text, int)',
                   'pageperfect.queue_readable(text, name)',
                   'pageperfect.push_messages(text, jsonb[], float8, int, jsonb[])', 'pageperfect.check_send(name, text, jsonb[], int, jsonb[])',
                   'pageperfect.send_for(name, text, jsonb, int, int, jsonb)', 'pageperfect.send_batch_for(name, text, jsonb[], int, int, jsonb[])',
                   'pageperfect.read_for(name, text, int, int, jsonb)', 'pageperfect.pop_for(name, text, int)',
                   'pageperfect.delete_for(name, text, bigint)', 'pageperfect.delete_batch_for(name, text, bigint[])',
                   'pageperfect.archive_for(name, text, bigint)', 'pageperfect.archive_batch_for(name, text, bigint[])',
                   'pageperfect.set_vt_for(name, text, bigint, int)',
                   'pageperfect.send(text, jsonb, int, int, jsonb)', 'pageperfect.send_batch(text, jsonb[], int, int, jsonb[])',
                   'pageperfect.read(text, int, int, jsonb)', 'pageperfect.read_with_poll(text, int, int, int, int, jsonb)',
                   'pageperfect.pop(text, int)', 'pageperfect.delete(text, bigint)', 'pageperfect.delete(text, bigint[])',
                   'pageperfect.archive(text, bigint)', 'pageperfect.archive(text, bigint[])',
                   'pageperfect.set_vt(text, bigint, int)']::pg_catalog.regprocedure[])
    LOOP
        EXECUTE pg_catalog.format('ALTER ROUTINE %s SET search_path = pg_catalog, pg_temp', routine);
    END LOOP;
END
$$;

-- The API. Each public function says what it does in \df+ (COMMENT ON FUNCTION); every other
-- function in schema pageperfect is marked internal: it serves the public ones, the workers or
-- the compatibility schemas, and may change in any release. The grants above say who may call
-- what; docs/sql-api.md has the examples.
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
