-- Per-job scheduling policy beyond pg_cron: a time zone per job (daylight saving gaps and repeats
-- handled once), what a tick does while the previous run goes on (overlap), and what happens to
-- ticks missed while the server was down (missed_runs).
SET TimeZone = 'UTC';
SET pageperfect.timezone = 'UTC';

-- One schedule in two zones across their spring changes (New York on 8 March, Berlin on 29
-- March 2026): 02:30 does not exist on those days, so that run comes once at 03:00 local.
SELECT pageperfect.next_runs('30 2 * * *', '2026-03-07 12:00+00', 3, 'America/New_York') AS new_york;
SELECT pageperfect.next_runs('30 2 * * *', '2026-03-28 12:00+00', 3, 'Europe/Berlin') AS berlin;
-- In autumn 01:30 happens twice in New York: one run, at the first.
SELECT pageperfect.next_runs('30 1 * * *', '2026-10-31 12:00+00', 2, 'America/New_York') AS new_york_autumn;
SELECT pageperfect.next_runs('30 1 * * *', '2026-10-31 12:00+00', 1, 'Mars/Olympus_Mons');

SELECT cron.schedule('noon-utc', '0 12 * * *', 'SELECT 1') > 0 AS scheduled;
SELECT cron.schedule('noon-tokyo', '0 12 * * *', 'SELECT 1') > 0 AS scheduled;
SELECT jobid > 0 AS ok, timezone, overlap, missed_runs
  FROM pageperfect.alter_job_policy('noon-tokyo', timezone => 'Asia/Tokyo', overlap => 'queue_one', missed_runs => 'all');
-- Each job's next run is noon in its own zone.
SELECT job_name, extract(hour FROM next_run AT TIME ZONE 'UTC') AS utc_hour,
       extract(hour FROM next_run AT TIME ZONE 'Asia/Tokyo') AS tokyo_hour
  FROM pageperfect.manage_cron_jobs() WHERE job_name LIKE 'noon-%' ORDER BY job_name;
-- catch_up is the old spelling of missed_runs: true is once.
SELECT catch_up, missed_runs FROM pageperfect.alter_job_policy('noon-utc', catch_up => true);
SELECT catch_up, missed_runs FROM pageperfect.alter_job_policy('noon-utc', missed_runs => 'skip');
-- '' goes back to pageperfect.timezone.
SELECT timezone IS NULL AS follows_the_setting FROM pageperfect.alter_job_policy('noon-tokyo', timezone => '');

-- Bad values are refused with SQLSTATE 22023 and nothing changes.
\set VERBOSITY terse
SELECT * FROM pageperfect.alter_job_policy('noon-utc', timezone => 'Mars/Olympus_Mons');
SELECT * FROM pageperfect.alter_job_policy('noon-utc', overlap => 'sometimes');
SELECT * FROM pageperfect.alter_job_policy('noon-utc', missed_runs => 'some');
SELECT * FROM pageperfect.alter_job_policy('noon-utc', catch_up => false, missed_runs => 'all');
UPDATE pageperfect.job SET timezone = 'Nowhere/Special' WHERE jobname = 'noon-utc';
SELECT jobname, timezone, overlap, missed, catch_up FROM pageperfect.job WHERE jobname LIKE 'noon-%' ORDER BY jobname;
SELECT cron.unschedule('noon-utc'), cron.unschedule('noon-tokyo');
