-- scheduler: the management views over jobs and runs (pageperfect's own; pg_cron has none).
-- The write functions (schedule, unschedule, alter_job, ...) are in src/scheduler/api.rs.

-- Bad cron text and over-long commands are refused however they reach the table (functions or
-- a superuser's INSERT).
CREATE FUNCTION pageperfect.job_check() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pageperfect.validate_schedule(NEW.schedule);
    PERFORM pageperfect.validate_command(NEW.command);
    PERFORM pageperfect.validate_timezone(NEW.timezone);
    RETURN NEW;
END
$$;
CREATE TRIGGER job_check BEFORE INSERT OR UPDATE OF schedule, command, timezone ON pageperfect.job
    FOR EACH ROW EXECUTE FUNCTION pageperfect.job_check();

-- A superuser's direct INSERT/UPDATE/DELETE on the job table reaches the scheduler at commit too.
CREATE FUNCTION pageperfect.job_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pageperfect.wake_scheduler();
    RETURN NULL;
END
$$;
-- The scheduler's own counter updates (skipped_runs) do not wake it.
CREATE TRIGGER job_changed AFTER INSERT OR DELETE OR TRUNCATE ON pageperfect.job
    FOR EACH STATEMENT EXECUTE FUNCTION pageperfect.job_changed();
CREATE TRIGGER job_updated AFTER UPDATE OF schedule, command, nodename, nodeport, database, username, active,
        jobname, timeout, max_attempts, retry_backoff, missed, overlap, timezone ON pageperfect.job
    FOR EACH STATEMENT EXECUTE FUNCTION pageperfect.job_changed();

-- Each job with its next tick and its last run's outcome.
CREATE FUNCTION pageperfect.manage_cron_jobs()
RETURNS TABLE (jobid bigint, job_name text, schedule text, command text, active boolean,
               last_run timestamptz, next_run timestamptz, last_status text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT j.jobid, j.jobname, j.schedule, j.command, j.active,
           r.start_time, CASE WHEN j.active THEN (SELECT n FROM pageperfect.next_runs(j.schedule, now(), 1, j.timezone) n) END, r.status
      FROM pageperfect.job j
      LEFT JOIN LATERAL (SELECT d.start_time, d.status FROM pageperfect.job_run_details d
                          WHERE d.jobid = j.jobid AND d.status <> 'skipped'
                          ORDER BY d.runid DESC LIMIT 1) r ON true
     ORDER BY j.jobid
$$;

-- One summary row: how many jobs, how many active, how many whose last run failed.
CREATE FUNCTION pageperfect.get_cron_job_status()
RETURNS TABLE (total_jobs bigint, active_jobs bigint, failed_jobs bigint,
               last_run timestamptz, next_run timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*), count(*) FILTER (WHERE active), count(*) FILTER (WHERE last_status = 'failed'),
           max(last_run), min(next_run)
      FROM pageperfect.manage_cron_jobs()
$$;

-- A row per job (its runs over the last 24 hours) and a row per worker (its heartbeat).
CREATE FUNCTION pageperfect.get_scheduler_health()
RETURNS TABLE (component text, status text, last_run timestamptz, next_run timestamptz,
               error_count bigint, success_rate numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(m.job_name, 'job ' || m.jobid),
           CASE WHEN NOT m.active THEN 'inactive'
                WHEN m.last_status = 'failed' THEN 'failing'
                ELSE 'healthy' END,
           m.last_run, m.next_run, coalesce(s.failed, 0),
           round(100.0 * s.succeeded / nullif(s.succeeded + s.failed, 0), 1)
      FROM pageperfect.manage_cron_jobs() m
      LEFT JOIN LATERAL (SELECT count(*) FILTER (WHERE d.status = 'succeeded') AS succeeded,
                                count(*) FILTER (WHERE d.status = 'failed') AS failed
                           FROM pageperfect.job_run_details d
                          WHERE d.jobid = m.jobid AND d.end_time > now() - interval '24 hours') s ON true
    UNION ALL
    SELECT h.component, h.status, h.last_heartbeat, NULL, NULL, NULL
      FROM pageperfect.worker_health() h
    UNION ALL
    -- Only while the server's library does not serve this database's SQL version: what to run.
    SELECT 'extension', a.advice, NULL, NULL, NULL, NULL
      FROM pageperfect.extension_version_advice() AS a (advice)
     WHERE a.advice IS NOT NULL
$$;

-- A job's most recent runs, newest first (the caller's job of that name: row-level security on
-- job and job_run_details). Unlike get_scheduler_health, skipped runs are listed too.
CREATE FUNCTION pageperfect.job_runs(job_name text, max_runs int DEFAULT 20)
RETURNS TABLE (runid bigint, status text, return_message text, run_reason text, attempt int,
               due_time timestamptz, start_time timestamptz, end_time timestamptz, duration_seconds float8)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_job bigint;
BEGIN
    IF max_runs IS NULL OR max_runs < 1 OR max_runs > 1000 THEN
        RAISE EXCEPTION 'max_runs must be between 1 and 1000 (got %)', coalesce(max_runs::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT j.jobid INTO found_job FROM pageperfect.job j WHERE j.jobname = job_runs.job_name ORDER BY j.jobid LIMIT 1;
    IF found_job IS NULL THEN
        RAISE EXCEPTION 'could not find valid entry for job ''%''', job_name USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY
        SELECT d.runid, d.status, d.return_message, d.run_reason, d.attempt, d.due_time, d.start_time, d.end_time,
               extract(epoch FROM d.end_time - d.start_time)::float8
          FROM pageperfect.job_run_details d
         WHERE d.jobid = found_job
         ORDER BY d.runid DESC
         LIMIT max_runs;
END
$$;
