-- What CREATE EXTENSION installs, and that DROP EXTENSION removes all of it.
\set VERBOSITY terse
SELECT nspname FROM pg_namespace WHERE nspname IN ('pageperfect', 'cron', 'net', 'pageperfect_cron_staging', 'pageperfect_net_staging') ORDER BY 1;
SELECT c.relname, c.relkind, c.relpersistence
  FROM pg_class c
 WHERE c.relnamespace = 'pageperfect'::regnamespace AND c.relkind IN ('r', 'v')
 ORDER BY 1;
SELECT relname, relkind FROM pg_class WHERE relnamespace = 'cron'::regnamespace ORDER BY 1;
SELECT p.oid::regprocedure AS pg_net_function FROM pg_proc p WHERE p.pronamespace = 'net'::regnamespace ORDER BY 1;
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = 'pageperfect_user';
-- The install-time helpers are gone.
SELECT proname FROM pg_proc WHERE pronamespace = 'pageperfect'::regnamespace ORDER BY 1;
-- The API: \df+ describes every public function; every other one is marked internal. The
-- internal ones a role may run are the helpers behind the cron, net and pgmq schemas.
SELECT count(*) AS undescribed FROM pg_proc WHERE pronamespace = 'pageperfect'::regnamespace AND obj_description(oid, 'pg_proc') IS NULL;
SELECT count(*) AS public_functions FROM pg_proc
 WHERE pronamespace = 'pageperfect'::regnamespace AND obj_description(oid, 'pg_proc') NOT LIKE 'Internal to pageperfect%';
SELECT p.oid::regprocedure AS internal_but_callable FROM pg_proc p
 WHERE p.pronamespace = 'pageperfect'::regnamespace AND obj_description(p.oid, 'pg_proc') LIKE 'Internal to pageperfect%'
   AND has_function_privilege('pageperfect_user', p.oid, 'EXECUTE')
 ORDER BY p.oid::regprocedure::text;

-- The workers of this cluster attach to database "postgres", not here: health says so.
SELECT component, status, last_run IS NULL AS never_seen FROM pageperfect.get_scheduler_health();

-- Round trip.
DROP EXTENSION pageperfect;
SELECT nspname FROM pg_namespace WHERE nspname IN ('pageperfect', 'cron', 'net');
SELECT count(*) AS leftover_relations FROM pg_class WHERE relname IN ('jobs', 'job_run_details', 'queue_messages');
CREATE EXTENSION pageperfect;
SELECT count(*) AS tables FROM pg_tables WHERE schemaname = 'pageperfect';

-- With a schema "cron" already there (pg_cron installed), pageperfect leaves it alone, says so,
-- and its own pageperfect.* names carry the data.
DROP EXTENSION pageperfect;
CREATE SCHEMA cron;
CREATE TABLE cron.job (jobid bigint);
CREATE EXTENSION pageperfect;
SELECT relname FROM pg_class WHERE relnamespace = 'cron'::regnamespace ORDER BY 1;
SELECT to_regclass('pageperfect.job') AS job, to_regclass('pageperfect.job_run_details') AS run_details;
SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pageperfect%' ORDER BY 1;
DROP EXTENSION pageperfect;
SELECT count(*) AS foreign_cron_schema_kept FROM pg_namespace WHERE nspname = 'cron';
DROP SCHEMA cron CASCADE;
-- The same for pgmq: a schema "pgmq" of its own is left alone.
CREATE SCHEMA pgmq;
CREATE FUNCTION pgmq.send(queue_name text, msg jsonb) RETURNS SETOF bigint LANGUAGE sql AS 'SELECT 42::bigint';
CREATE EXTENSION pageperfect;
SELECT pgmq.send('q', '{}') AS the_real_pgmq_answers;
DROP EXTENSION pageperfect;
DROP SCHEMA pgmq CASCADE;
CREATE EXTENSION pageperfect;
SELECT relname FROM pg_class WHERE relnamespace = 'cron'::regnamespace ORDER BY 1;
SELECT count(*) AS pgmq_functions FROM pg_proc WHERE pronamespace = 'pgmq'::regnamespace;

-- Status columns refuse values outside their state machine.
INSERT INTO pageperfect.jobs (url, status) VALUES ('https://example.com/', 'paused');
INSERT INTO pageperfect.job_run_details (jobid, status) VALUES (1, 'done');
WITH job AS (INSERT INTO pageperfect.jobs (url) VALUES ('https://example.com/') RETURNING id)
INSERT INTO pageperfect.job_stages (job_id, stage, position, status, max_attempts, retry_delay_seconds)
SELECT id, 'submit_crawl', 1, 'waiting', 1, 1 FROM job;
-- The default pipeline (stages without a position are test-only builds' extras).
SELECT stage, position, max_attempts, retry_delay_seconds, concurrency, timeout_seconds, per_host_limit
  FROM pageperfect.stage_config WHERE position IS NOT NULL ORDER BY position;
