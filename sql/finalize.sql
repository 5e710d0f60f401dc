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
REVOKE ALL ON FUNCTION pageperfect_cron_staging.alter_job(bigint, text, text, text, text, boolean),
    pageperfect_cron_staging.schedule_in_database(text, text, text, text, text, boolean),
    pageperfect.alter_job(bigint, text, text, text, text, boolean),
    pageperfect.schedule_in_database(text, text, text, text, text, boolean) FROM PUBLIC;

-- Writing Search Console data, the CTR curve, credentials and cron secrets is for administrators.
REVOKE ALL ON FUNCTION pageperfect.import_gsc_csv(text, text), pageperfect.recalibrate_ctr(int),
    pageperfect.refresh_gsc_keywords(text), pageperfect.set_cron_secret(text, text),
    pageperfect.ingest_gsc(date, text[]), pageperfect.set_gsc_credentials(text) FROM PUBLIC;

GRANT SELECT ON pageperfect_cron_staging.job TO PUBLIC;
GRANT SELECT, DELETE ON pageperfect_cron_staging.job_run_details TO PUBLIC;
GRANT USAGE ON SCHEMA pageperfect_cron_staging TO pageperfect_user;

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

DROP FUNCTION pageperfect.adopt_compat_schema(text, text);
DROP FUNCTION pageperfect.scope_rows_to_parent(text[], text, text);
