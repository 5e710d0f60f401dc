-- finalize: the pg_cron compatibility schema, function privileges, and removal of install-time
-- helpers. Runs last.

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
