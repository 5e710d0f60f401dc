-- pg_cron's API as a migration written for pg_cron uses it: schedule (named and not), the same
-- name again, alter_job, unschedule by id and name, cron.job and cron.job_run_details, pg_cron's
-- error messages, and what another role may see and do. (The scheduler of this cluster works in
-- database postgres, so nothing here runs; tests/tests/scheduler.rs runs jobs.)
SET TimeZone = 'UTC';
\set VERBOSITY terse

SELECT cron.schedule('nightly-vacuum', '0 3 * * *', 'VACUUM') AS vacuum_job \gset
SELECT cron.schedule('*/5 * * * *', $$DELETE FROM events WHERE at < now() - interval '1 week'$$) AS unnamed_job \gset
SELECT jobname, schedule, command, nodename, database = current_database() AS here, username, active
  FROM cron.job ORDER BY jobid;

-- The same name again updates the job in place (same jobid).
SELECT cron.schedule('nightly-vacuum', '30 3 * * *', 'VACUUM ANALYZE') = :vacuum_job AS same_job;
SELECT jobname, schedule, command FROM cron.job WHERE jobid = :vacuum_job;

-- alter_job changes only what is given.
SELECT cron.alter_job(:vacuum_job, active := false);
SELECT cron.alter_job(job_id := :unnamed_job, schedule := '@hourly', command := 'SELECT 1');
SELECT jobname, schedule, command, active FROM cron.job ORDER BY jobid;
SELECT cron.alter_job(:vacuum_job);
SELECT cron.alter_job(424242, active := true);
SELECT cron.alter_job(:vacuum_job, schedule := '0 0 31 13 *');

-- Errors users depend on: bad schedules (nothing is written), missing jobs, NULLs.
SELECT cron.schedule('bad', '61 * * * *', 'SELECT 1');
SELECT cron.schedule('bad', 'every minute', 'SELECT 1');
SELECT count(*) AS bad_jobs FROM cron.job WHERE jobname = 'bad';
SELECT cron.schedule(NULL, '* * * * *', 'SELECT 1');
SELECT cron.schedule('x', '* * * * *', NULL);
SELECT cron.schedule(NULL::text, NULL::text) IS NULL AS strict_two_argument_form;
SELECT cron.unschedule(424242);
SELECT cron.unschedule('no-such-job');
SELECT cron.schedule_in_database('elsewhere', '* * * * *', 'SELECT 1', 'no_such_database');
SELECT cron.schedule_in_database('as-nobody', '* * * * *', 'SELECT 1', current_database(), 'no_such_role');

-- Roles: each sees and changes only its own jobs; only a superuser schedules for another role.
CREATE ROLE cron_alice LOGIN;
CREATE ROLE cron_bob LOGIN;
CREATE ROLE cron_nologin NOLOGIN;
GRANT USAGE ON SCHEMA cron TO cron_alice, cron_bob;
SELECT cron.schedule_in_database('for-alice', '0 * * * *', 'SELECT 2', current_database(), 'cron_alice') AS alice_job \gset
SELECT cron.schedule_in_database('for-nologin', '0 * * * *', 'SELECT 2', current_database(), 'cron_nologin');
SET ROLE cron_alice;
SELECT cron.schedule('mine', '15 * * * *', 'SELECT 3') AS alice_own_job \gset
SELECT jobname, username FROM cron.job ORDER BY jobid;
SELECT cron.unschedule(:vacuum_job);
SELECT cron.schedule_in_database('sneaky', '* * * * *', 'SELECT 4', current_database(), 'cron_bob');
SELECT cron.alter_job(:alice_job, active := false);
SET ROLE cron_bob;
SELECT count(*) AS bob_sees FROM cron.job;
SELECT cron.unschedule('mine');
SELECT cron.schedule('mine', '45 * * * *', 'SELECT 5') <> :alice_own_job AS bob_gets_his_own_job;
SELECT pageperfect.run_job_now('mine');
RESET ROLE;
GRANT EXECUTE ON FUNCTION cron.alter_job(bigint, text, text, text, text, boolean) TO cron_alice;
SET ROLE cron_alice;
SELECT cron.alter_job(:alice_job, active := false);
SELECT cron.alter_job(:alice_job, username := 'cron_bob');
SELECT cron.alter_job(:vacuum_job, active := true);
SELECT cron.unschedule('mine');
RESET ROLE;
SELECT jobname, username, active FROM cron.job ORDER BY jobid;

-- Beyond pg_cron: per-job policy, the job overview, and switching jobs on and off by name.
SELECT * FROM pageperfect.alter_job_policy('nightly-vacuum', timeout := '10 minutes', max_attempts := 3,
                                           retry_backoff := '30 seconds', catch_up := true);
SELECT * FROM pageperfect.alter_job_policy('nightly-vacuum', max_attempts := 0);
SELECT * FROM pageperfect.alter_job_policy('nightly-vacuum', timeout := '-1 second');
SELECT * FROM pageperfect.alter_job_policy('no-such-job', max_attempts := 2);
SELECT * FROM pageperfect.toggle_cron_job('nightly-vacuum', true);
SELECT * FROM pageperfect.toggle_cron_job('no-such-job', true);
SELECT job_name, schedule, active, last_run, next_run > now() AS next_run_ahead, last_status
  FROM pageperfect.manage_cron_jobs() ORDER BY jobid;
SELECT total_jobs, active_jobs, failed_jobs FROM pageperfect.get_cron_job_status();

SELECT cron.unschedule(jobid) FROM cron.job ORDER BY jobid;
DROP OWNED BY cron_alice, cron_bob;
DROP ROLE cron_alice, cron_bob, cron_nologin;
