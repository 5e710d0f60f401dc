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

DROP FUNCTION pageperfect.adopt_compat_schema(text, text);
DROP FUNCTION pageperfect.scope_rows_to_parent(text[], text, text);
