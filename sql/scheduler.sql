-- scheduler: cron jobs and their runs (pg_cron's cron.job and cron.job_run_details, plus policy).

CREATE TABLE pageperfect.job (
    jobid         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schedule      text NOT NULL,
    command       text NOT NULL,
    nodename      text NOT NULL DEFAULT 'localhost',
    nodeport      int  NOT NULL DEFAULT pg_catalog.current_setting('port')::int,
    database      text NOT NULL DEFAULT pg_catalog.current_database(),
    username      text NOT NULL DEFAULT CURRENT_USER,
    active        boolean NOT NULL DEFAULT true,
    jobname       text,
    -- Beyond pg_cron (pageperfect.alter_job_policy):
    timeout       interval CHECK (timeout > interval '0'),
    max_attempts  int NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),
    retry_backoff interval NOT NULL DEFAULT interval '10 seconds' CHECK (retry_backoff >= interval '0'),
    -- Ticks missed while the scheduler was down: none run (skip), the latest runs once (once),
    -- or each runs in turn (all, at most the parameter max_missed_runs, the latest ones).
    missed        text NOT NULL DEFAULT 'skip' CHECK (missed IN ('skip', 'once', 'all')),
    catch_up      boolean GENERATED ALWAYS AS (missed <> 'skip') STORED,
    -- A tick that comes while the previous run goes on: counted and dropped (skip), run once
    -- when that run ends (queue_one, pg_cron's way), or that run is cancelled (cancel_previous).
    overlap       text NOT NULL DEFAULT 'skip' CHECK (overlap IN ('skip', 'queue_one', 'cancel_previous')),
    -- The IANA time zone of the schedule; NULL: the setting pageperfect.timezone.
    timezone      text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- Ticks that came while the job's previous run was still going: counted here, not logged
    -- as one job_run_details row each.
    skipped_runs    bigint NOT NULL DEFAULT 0,
    last_skipped_at timestamptz,
    CONSTRAINT jobname_username_uniq UNIQUE (jobname, username)
);

-- No foreign key to job: like pg_cron, the history outlives unschedule.
CREATE TABLE pageperfect.job_run_details (
    runid          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    jobid          bigint NOT NULL,
    job_pid        int,
    database       text,
    username       text,
    command        text,
    status         text NOT NULL CHECK (status IN
                       ('starting', 'running', 'sending', 'connecting', 'succeeded', 'failed', 'skipped', 'cancelled')),
    return_message text,
    start_time     timestamptz,
    end_time       timestamptz,
    -- Beyond pg_cron: when the run was due, which attempt it is, why it ran, and the
    -- backend start time that, with job_pid, tells whether the run's process is still alive.
    due_time       timestamptz,
    attempt        int NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    run_reason     text NOT NULL DEFAULT 'schedule' CHECK (run_reason IN ('schedule', 'manual', 'retry', 'catch_up', 'restart')),
    backend_start  timestamptz
);
CREATE INDEX job_run_details_jobid_idx ON pageperfect.job_run_details (jobid, runid DESC);
CREATE INDEX job_run_details_active_idx ON pageperfect.job_run_details (status)
    WHERE status IN ('starting', 'running', 'sending', 'connecting');
CREATE INDEX job_run_details_start_time_idx ON pageperfect.job_run_details (start_time);

-- The WAL timeline the scheduler last started on: a higher one means this server was promoted
-- from a standby since, and the runs it finds unfinished were going on the old primary.
CREATE TABLE pageperfect.scheduler_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    timeline  int NOT NULL
);

-- The older design's name for the same rows.
CREATE VIEW pageperfect.task_schedule WITH (security_invoker = true) AS
    SELECT * FROM pageperfect.job_run_details;

-- pg_cron's visibility: a role sees (and, through the functions, changes) only its own jobs.
ALTER TABLE pageperfect.job ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_owner ON pageperfect.job USING (username = CURRENT_USER);
ALTER TABLE pageperfect.job_run_details ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_run_details_owner ON pageperfect.job_run_details USING (username = CURRENT_USER);
GRANT SELECT ON pageperfect.job TO PUBLIC;
GRANT SELECT ON pageperfect.job_run_details TO PUBLIC;
GRANT SELECT ON pageperfect.task_schedule TO PUBLIC;

-- The job runs as a superuser (pageperfect.enable_superuser_jobs = off keeps such jobs from running).
CREATE FUNCTION pageperfect.runs_as_superuser(j pageperfect.job) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = j.username AND r.rolsuper)
$$;
